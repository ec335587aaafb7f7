//! Rows written straight into `runs`, `checkpoints` and `coverage`, for states a real run cannot
//! reach in a test's time: a pipeline whose last success was years ago, a backfill left part done
//! with a gap in its coverage. Everything else a test shows comes from real runs.

use rusqlite::{params, Connection};

/// A finished run of `pipeline` on `scope` by a process that no longer exists.
pub fn stage_run(
    conn: &Connection,
    pipeline: &str,
    scope: &str,
    outcome: &str,
    (started_at, finished_at): (&str, &str),
    error: Option<&str>,
) {
    let command = if scope == "live" { "sync" } else { "backfill" };
    conn.execute(
        "INSERT INTO runs (pipeline, command, scope, pid, started_at, finished_at, outcome, error) \
         VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7)",
        params![pipeline, command, scope, started_at, finished_at, outcome, error],
    )
    .expect("stage a run");
}

/// A track's checkpoint and its finished ranges.
pub struct StagedTrack<'a> {
    pub pipeline: &'a str,
    pub scope: &'a str,
    pub range: Option<(&'a str, &'a str)>,
    pub watermark: Option<&'a str>,
    pub window: Option<(&'a str, &'a str)>,
    pub covered: &'a [(&'a str, &'a str)],
}

pub fn stage_track(conn: &Connection, t: &StagedTrack) {
    conn.execute(
        "INSERT INTO checkpoints (pipeline, scope, range_start, range_end, watermark, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![
            t.pipeline,
            t.scope,
            t.range.map(|r| r.0),
            t.range.map(|r| r.1),
            t.watermark,
        ],
    )
    .expect("stage a checkpoint");
    if let Some((start, end)) = t.window {
        conn.execute(
            "INSERT INTO track_windows (pipeline, scope, window_start, window_end, cursor) \
             VALUES (?1, ?2, ?3, ?4, '0')",
            params![t.pipeline, t.scope, start, end],
        )
        .expect("stage a window in progress");
    }
    for (start, end) in t.covered {
        conn.execute(
            "INSERT INTO coverage (pipeline, scope, range_start, range_end) VALUES (?1, ?2, ?3, ?4)",
            params![t.pipeline, t.scope, start, end],
        )
        .expect("stage a covered range");
    }
}
