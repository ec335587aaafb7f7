//! The status page as one HTML document: inline CSS and SVG, no script, no external asset, and a
//! `<meta http-equiv="refresh">` so that a tab left open keeps itself current.
//!
//! Invariant: every text that came from the database or the config goes through [`escape`], in
//! element content and in attribute values alike. The page shows pipelines, runs, counts, times,
//! run errors (already scrubbed of secrets when stored) and daily sums; never an order, a row of
//! `rejected_rows`, an endpoint or an auth value, so neither a secret nor a customer's data can
//! reach it.

use std::fmt::Write as _;

use chrono::Duration;

use super::charts::{self, Measure, OUTCOMES};
use super::{Snapshot, DAILY_REFRESH};
use crate::health::HealthState;
use crate::status::{human_lag, PipelineStatus, TrackStatus};
use crate::timefmt;

/// Seconds between reloads of the page.
pub const REFRESH_SECS: u32 = 30;
/// Days in the orders and GMV charts.
pub const CHART_DAYS: i64 = 30;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in element content and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC", sans-serif; margin: 0; color: #212121; background: #fafafa; }
header { background: #263238; color: #eceff1; padding: 12px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 2px 0 0; color: #b0bec5; }
header a { color: #80cbc4; }
main { padding: 8px 24px 24px; max-width: 1200px; }
h2 { font-size: 17px; margin: 22px 0 8px; }
table { border-collapse: collapse; background: #fff; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e6e6e6; vertical-align: top; }
th { font-weight: 600; color: #455a64; background: #f5f5f5; }
table.facts th { background: none; width: 130px; }
table.tracks, table.overview { width: 100%; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; color: #fff; font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.badge.ok { background: #2e7d32; } .badge.failing { background: #c62828; }
.badge.stale { background: #ef6c00; } .badge.off { background: #78909c; }
.counts .badge { margin-right: 6px; }
section.pipeline { background: #fff; border: 1px solid #e0e0e0; border-left: 6px solid #78909c; border-radius: 4px; padding: 4px 16px 14px; margin: 14px 0; }
section.pipeline.ok { border-left-color: #2e7d32; } section.pipeline.failing { border-left-color: #c62828; }
section.pipeline.stale { border-left-color: #ef6c00; }
section.pipeline h2 small { color: #757575; font-weight: normal; }
.reason { margin: 2px 0 10px; color: #424242; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
.error { color: #b71c1c; white-space: pre-wrap; word-break: break-word; }
.gap { color: #c62828; font-weight: 600; }
.rejected { color: #e65100; font-weight: 600; }
.muted { color: #757575; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #555; }
svg text.lane { font-size: 12px; fill: #212121; }
svg text.none { font-style: italic; fill: #9e9e9e; }
svg.coverage { width: 300px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.charts figure { margin: 0; background: #fff; border: 1px solid #e0e0e0; padding: 8px; width: 480px; max-width: 100%; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px; border-radius: 2px; }
.timeline-box { background: #fff; border: 1px solid #e0e0e0; padding: 8px; }
footer { color: #757575; padding: 0 24px 24px; }
"#;

/// The whole page.
pub fn page(s: &Snapshot) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>ordersync status</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>ordersync status</h1>
<p>As of <span class="mono">{now}</span> Beijing time · reloads every {REFRESH_SECS} s · the same facts as JSON: <a href="/api/status">/api/status</a> · <a href="/metrics">/metrics</a></p>
</header>
<main>
"#,
        now = timefmt::fmt_seconds(s.now),
    );
    // What an operator takes in at a glance first; each pipeline's details below.
    overview(&mut out, &s.pipelines);
    timeline(&mut out, s);
    daily(&mut out, s);
    if !s.pipelines.is_empty() {
        out.push_str(
            r#"<h2 id="details">Pipelines in detail</h2><p class="muted">Failing first, then stale, ok and off.</p>"#,
        );
    }
    let mut details: Vec<&PipelineStatus> = s.pipelines.iter().collect();
    details.sort_by_key(|p| attention(p.health.state));
    for p in details {
        pipeline(&mut out, p, s);
    }
    out.push_str(
        r#"</main>
<footer>Read-only. Times are Beijing time; money is shown in yuan (stored as fen). Health: <b>failing</b> when the latest live run failed or was abandoned; <b>stale</b> when no live run has succeeded since the schedule came due twice (or ever); <b>off</b> when not scheduled.</footer>
</body>
</html>
"#,
    );
    out
}

/// The order of the detailed sections: what needs an operator first.
fn attention(state: HealthState) -> u8 {
    match state {
        HealthState::Failing => 0,
        HealthState::Stale => 1,
        HealthState::Ok => 2,
        HealthState::Off => 3,
    }
}

fn badge(state: HealthState) -> String {
    format!(r#"<span class="badge {0}">{0}</span>"#, state.as_str())
}

fn anchor(name: &str) -> String {
    format!("pipeline-{}", escape(name))
}

fn lag_text(p: &PipelineStatus) -> String {
    p.lag_seconds.map_or_else(|| "—".into(), human_lag)
}

/// The counts by health and a one-row-per-pipeline table.
fn overview(out: &mut String, all: &[PipelineStatus]) {
    out.push_str(r#"<h2>Pipelines</h2><p class="counts">"#);
    for state in [
        HealthState::Ok,
        HealthState::Failing,
        HealthState::Stale,
        HealthState::Off,
    ] {
        let n = all.iter().filter(|p| p.health.state == state).count();
        if n > 0 {
            let _ = write!(
                out,
                r#"<span class="badge {0}">{n} {0}</span>"#,
                state.as_str()
            );
        }
    }
    if all.is_empty() {
        out.push_str("No pipelines configured.");
    }
    out.push_str("</p>\n");
    if all.is_empty() {
        return;
    }
    out.push_str(
        r#"<table class="overview"><thead><tr><th>Pipeline</th><th>Source</th><th>Health</th><th>Watermark lag</th><th>Last run</th><th>Rejected rows</th></tr></thead><tbody>"#,
    );
    for p in all {
        let last = p.last_run.as_ref().map_or_else(
            || "never".to_string(),
            |r| {
                format!(
                    "{} · {}",
                    escape(&r.outcome),
                    escape(r.finished_at.as_deref().unwrap_or(&r.started_at))
                )
            },
        );
        let _ = write!(
            out,
            r##"<tr class="{state}" data-pipeline="{name}"><td><a href="#{anchor}">{name}</a></td><td>{source}</td><td>{badge}</td><td>{lag}</td><td>{last}</td><td>{rejected}</td></tr>"##,
            state = p.health.state.as_str(),
            name = escape(&p.pipeline),
            anchor = anchor(&p.pipeline),
            source = escape(p.source.as_deref().unwrap_or("not in config")),
            badge = badge(p.health.state),
            lag = lag_text(p),
            rejected = rejected_text(p),
        );
    }
    out.push_str("</tbody></table>\n");
}

fn rejected_text(p: &PipelineStatus) -> String {
    if p.rejected_open > 0 {
        format!(
            r#"<span class="rejected">{} open</span>"#,
            charts::group_digits(p.rejected_open)
        )
    } else {
        "none".into()
    }
}

/// One pipeline's section: health and reason, the facts of `status`, and its tracks.
fn pipeline(out: &mut String, p: &PipelineStatus, s: &Snapshot) {
    let name = escape(&p.pipeline);
    let _ = write!(
        out,
        r#"<section class="pipeline {state}" id="{anchor}" data-pipeline="{name}" data-health="{state}">
<h2>{name} <small>{source}{disabled}</small> {badge}</h2>
<p class="reason">{reason}</p>
<table class="facts">
"#,
        state = p.health.state.as_str(),
        anchor = anchor(&p.pipeline),
        source = escape(p.source.as_deref().unwrap_or("not in config")),
        disabled = if p.enabled == Some(false) {
            ", disabled"
        } else {
            ""
        },
        badge = badge(p.health.state),
        reason = escape(&p.health.reason),
    );
    let watermark = match &p.watermark {
        Some(w) => format!(
            r#"<span class="mono">{}</span> (lag {})"#,
            escape(w),
            lag_text(p)
        ),
        None => r#"<span class="muted">none yet</span>"#.into(),
    };
    let _ = writeln!(out, "<tr><th>Live watermark</th><td>{watermark}</td></tr>");
    let last_run = match &p.last_run {
        Some(r) => {
            let took = r
                .finished_at
                .as_deref()
                .and_then(timefmt::parse_user_time)
                .zip(timefmt::parse_user_time(&r.started_at))
                .map(|(end, start)| format!(" (took {})", human_lag((end - start).num_seconds())))
                .unwrap_or_default();
            format!(
                r#"<b>{outcome}</b> · {command} {scope} · <span class="mono">{start}</span> → <span class="mono">{end}</span>{took}<br>{seen} rows seen, {changed} changed, {rejected} rejected, {requests} requests"#,
                outcome = escape(&r.outcome),
                command = escape(&r.command),
                scope = escape(&r.scope),
                start = escape(&r.started_at),
                end = escape(r.finished_at.as_deref().unwrap_or("still running")),
                seen = charts::group_digits(r.rows_seen),
                changed = charts::group_digits(r.rows_changed),
                rejected = charts::group_digits(r.rows_rejected),
                requests = charts::group_digits(r.requests),
            )
        }
        None => r#"<span class="muted">never</span>"#.into(),
    };
    let _ = writeln!(out, "<tr><th>Last run</th><td>{last_run}</td></tr>");
    for r in &p.running {
        let _ = writeln!(
            out,
            r#"<tr><th>Running now</th><td>{command} {scope} since <span class="mono">{start}</span> on <span class="mono">{worker}</span></td></tr>"#,
            command = escape(&r.command),
            scope = escape(&r.scope),
            start = escape(&r.started_at),
            worker = escape(&r.worker),
        );
    }
    let error = match &p.last_error {
        Some(e) => format!(r#"<code class="error">{}</code>"#, escape(e)),
        None => r#"<span class="muted">none</span>"#.into(),
    };
    let _ = writeln!(out, "<tr><th>Last error</th><td>{error}</td></tr>");
    let rejected = if p.rejected_open > 0 {
        format!(
            r#"{} — list them with <code>ordersync rejects {name}</code>"#,
            rejected_text(p)
        )
    } else {
        "none open".into()
    };
    let _ = writeln!(out, "<tr><th>Rejected rows</th><td>{rejected}</td></tr>");
    if let Some(r) = &p.last_rescan {
        let _ = writeln!(
            out,
            r#"<tr><th>Last rescan</th><td><b>{outcome}</b> · <span class="mono">{start}</span> → <span class="mono">{end}</span><br>{missed} orders changed that live syncs had missed ({percent}% of {seen} rows re-read)</td></tr>"#,
            outcome = escape(&r.run.outcome),
            start = escape(&r.run.started_at),
            end = escape(r.run.finished_at.as_deref().unwrap_or("still running")),
            missed = charts::group_digits(r.missed),
            percent = r.missed_percent,
            seen = charts::group_digits(r.run.rows_seen),
        );
    }
    out.push_str("</table>\n");
    if p.tracks.is_empty() {
        out.push_str(r#"<p class="muted">No track yet: it has never synced.</p>"#);
    } else {
        out.push_str(
            r#"<table class="tracks"><thead><tr><th>Track</th><th>State</th><th>Coverage</th><th>Finished ranges and gaps</th></tr></thead><tbody>"#,
        );
        for t in &p.tracks {
            track(out, p, t, s);
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>\n");
}

/// One track of any scope (`live`, a backfill, a rescan, …): its state, bar, ranges and gaps.
fn track(out: &mut String, p: &PipelineStatus, t: &TrackStatus, s: &Snapshot) {
    let watermark = t.watermark.as_deref().map_or_else(
        || "nothing yet".to_string(),
        |w| format!(r#"<span class="mono">{}</span>"#, escape(w)),
    );
    let mut state = match charts::progress(t) {
        None => format!("watermark {watermark}"),
        Some(_) if t.finished => "finished".to_string(),
        Some(done) => format!(
            "<b>in progress</b>, {:.0}% covered, done up to {watermark}",
            done * 100.0
        ),
    };
    if t.scope == "live" && p.lag_seconds.is_some() {
        let _ = write!(state, " (lag {})", lag_text(p));
    }
    if let Some(w) = &t.in_progress {
        let _ = write!(
            state,
            r#"<br>window in progress <span class="mono">{}</span>"#,
            escape(w)
        );
    }
    let mut ranges = String::new();
    for [a, b] in &t.covered {
        let _ = write!(
            ranges,
            r#"<div class="covered mono">covered {} .. {}</div>"#,
            escape(a),
            escape(b)
        );
    }
    for [a, b] in &t.gaps {
        let _ = write!(
            ranges,
            r#"<div class="gap mono">GAP {} .. {}</div>"#,
            escape(a),
            escape(b)
        );
    }
    if ranges.is_empty() {
        ranges.push_str(r#"<span class="muted">nothing finished yet</span>"#);
    }
    let _ = write!(
        out,
        r#"<tr class="track" data-scope="{scope}"><td class="mono">{scope}</td><td>{state}</td><td>{bar}</td><td>{ranges}</td></tr>"#,
        scope = escape(&t.scope),
        bar = charts::coverage_bar(t, s.now).unwrap_or_default(),
    );
}

fn timeline(out: &mut String, s: &Snapshot) {
    out.push_str(r#"<h2 id="timeline">Runs in the last 24 hours</h2><div class="timeline-box">"#);
    let names: Vec<String> = s.pipelines.iter().map(|p| p.pipeline.clone()).collect();
    out.push_str(&charts::timeline(&names, &s.runs, s.now));
    out.push_str(r#"<p class="legend">"#);
    for (outcome, colour) in OUTCOMES {
        let _ = write!(
            out,
            r#"<span><i style="background:{colour}"></i>{outcome}</span>"#
        );
    }
    out.push_str(
        r#"<span class="muted">Upper strip: live runs; lower strip: backfills and other tracks. Hover a mark for its times.</span></p></div>"#,
    );
}

fn daily(out: &mut String, s: &Snapshot) {
    let today = s.now.date();
    let first = today - Duration::days(CHART_DAYS - 1);
    let _ = write!(
        out,
        r#"<h2 id="daily">Orders and GMV per day, last {CHART_DAYS} days</h2><p class="muted">From <code>daily_summary</code>: days by payment time (else creation time), {first} to today (dashed: today so far), as read at {read_at} (at most every {refresh} minutes). GMV counts orders that were paid.</p>"#,
        read_at = timefmt::fmt_seconds(s.daily_read_at),
        refresh = DAILY_REFRESH.as_secs() / 60,
    );
    if s.daily.is_empty() {
        out.push_str(r#"<p class="muted">No orders in these days.</p>"#);
        return;
    }
    out.push_str(r#"<div class="charts">"#);
    for (measure, caption) in [
        (Measure::Orders, "Orders per day"),
        (Measure::GmvYuan, "GMV per day (yuan)"),
    ] {
        let _ = write!(
            out,
            "<figure><figcaption>{caption}</figcaption>{}</figure>",
            charts::daily(&s.daily, today, CHART_DAYS, measure)
        );
    }
    out.push_str(r#"</div><p class="legend">"#);
    for (source, colour) in charts::sources(&s.daily) {
        let _ = write!(
            out,
            r#"<span><i style="background:{colour}"></i>{}</span>"#,
            escape(&source)
        );
    }
    out.push_str("</p>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(escape("订单 ok"), "订单 ok");
    }
}
