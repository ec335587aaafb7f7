//! A pipeline's health in one word with its reason — `ok`, `failing`, `stale` or `off` — decided
//! from its live runs and its schedule, for `status` and the status page.
//!
//! The rules, in order (the first that applies wins):
//! - `off`: the pipeline is disabled, or only the database knows it; `run` does not schedule it.
//! - `failing`: the latest finished live run failed, or was abandoned (its process died).
//! - `stale`: no live run has succeeded yet, or the schedule has come due at least twice since the
//!   last successful live run finished: the runs of two ticks in a row did not succeed, or did not
//!   happen (the daemon is down, or a run takes longer than two intervals). Counting ticks rather
//!   than multiplying one interval keeps an irregular schedule (weekdays only) from going stale over
//!   a weekend, and the second tick leaves the first tick's run its whole interval to finish.
//! - `ok`: otherwise. A run that was interrupted (shutdown) is neither; only its effect on
//!   staleness counts.
//!
//! Pure: the caller reads the runs (`store::report::live_runs`) and gives the time.

use chrono::NaiveDateTime;
use serde::Serialize;

use crate::config::next_tick;
use crate::config::Pipeline;
use crate::store::report::LiveRuns;
use crate::timefmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Ok,
    Stale,
    Failing,
    Off,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ok => "ok",
            HealthState::Stale => "stale",
            HealthState::Failing => "failing",
            HealthState::Off => "off",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub state: HealthState,
    /// One sentence an operator reads next to the state, with absolute Beijing times.
    pub reason: String,
}

impl Health {
    fn new(state: HealthState, reason: impl Into<String>) -> Health {
        Health {
            state,
            reason: reason.into(),
        }
    }
}

/// The health of a pipeline (`None` when only the database knows it) whose live runs are `runs`.
pub fn assess(pipeline: Option<&Pipeline>, runs: &LiveRuns, now: NaiveDateTime) -> Health {
    let Some(p) = pipeline else {
        return Health::new(HealthState::Off, "not in the config: nothing runs it");
    };
    if !p.enabled {
        return Health::new(
            HealthState::Off,
            "disabled in the config: `ordersync run` does not schedule it",
        );
    }
    if let Some(last) = &runs.last_finished {
        let when = last.finished_at.as_deref().unwrap_or("an unknown time");
        let in_a_row = if runs.failed_in_a_row > 1 {
            format!(
                " ({} live runs in a row have not succeeded)",
                runs.failed_in_a_row
            )
        } else {
            String::new()
        };
        match last.outcome.as_str() {
            "failed" => {
                return Health::new(
                    HealthState::Failing,
                    format!("the last live run failed at {when}{in_a_row}"),
                )
            }
            "abandoned" => {
                return Health::new(
                    HealthState::Failing,
                    format!(
                        "the last live run was abandoned at {when}: its process ended without finishing it{in_a_row}"
                    ),
                )
            }
            _ => {}
        }
    }
    let Some(ok_text) = runs.last_ok_finished_at.as_deref() else {
        return Health::new(HealthState::Stale, "no live run has succeeded yet");
    };
    let Some(ok_at) = timefmt::parse_user_time(ok_text) else {
        return Health::new(
            HealthState::Stale,
            format!("the last successful live run has an unreadable finish time ({ok_text})"),
        );
    };
    let first = next_tick(&p.schedule, ok_at);
    let second = first.and_then(|t| next_tick(&p.schedule, t));
    match (first, second) {
        (Some(first), Some(second)) if second <= now => Health::new(
            HealthState::Stale,
            format!(
                "no successful live run since {ok_text}, though the schedule ({}) came due at {} and again at {}",
                p.schedule.text,
                timefmt::fmt_seconds(first),
                timefmt::fmt_seconds(second)
            ),
        ),
        _ => Health::new(
            HealthState::Ok,
            format!("the last successful live run finished at {ok_text}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::report::FinishedRun;

    fn t(s: &str) -> NaiveDateTime {
        timefmt::parse_user_time(s).unwrap()
    }

    fn pipeline(schedule: &str) -> Pipeline {
        let text = format!(
            "[[pipeline]]\nname = \"p\"\nsource = \"veapi\"\nstart = \"2024-01-01\"\nschedule = \"{schedule}\"\n[pipeline.auth]\nvekey = \"k\"\n"
        );
        let config = crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        config.pipelines[0].clone()
    }

    fn runs(last: Option<(&str, &str)>, ok: Option<&str>, failed: i64) -> LiveRuns {
        LiveRuns {
            last_finished: last.map(|(outcome, at)| FinishedRun {
                outcome: outcome.into(),
                finished_at: Some(at.into()),
            }),
            last_ok_finished_at: ok.map(str::to_string),
            failed_in_a_row: failed,
        }
    }

    #[test]
    fn two_ticks_without_a_good_run_make_a_pipeline_stale() {
        let p = pipeline("*/10 * * * *");
        let r = runs(
            Some(("ok", "2024-03-04 10:01:00")),
            Some("2024-03-04 10:01:00"),
            0,
        );
        let at = |now| assess(Some(&p), &r, t(now));
        assert_eq!(at("2024-03-04 10:19:59").state, HealthState::Ok);
        let stale = at("2024-03-04 10:20:00");
        assert_eq!(stale.state, HealthState::Stale);
        assert!(
            stale.reason.contains("2024-03-04 10:10:00")
                && stale.reason.contains("2024-03-04 10:20:00"),
            "{stale:?}"
        );
    }

    #[test]
    fn a_weekday_schedule_is_not_stale_over_the_weekend() {
        // Mon-Fri at 09:00; the last run Friday morning; Monday 08:59 is fine, Tuesday 09:00 is not.
        let p = pipeline("0 9 * * 1-5");
        let r = runs(
            Some(("interrupted", "2024-03-08 18:00:00")),
            Some("2024-03-08 09:05:00"),
            0,
        );
        assert_eq!(
            assess(Some(&p), &r, t("2024-03-11 08:59:00")).state,
            HealthState::Ok
        );
        assert_eq!(
            assess(Some(&p), &r, t("2024-03-12 09:00:00")).state,
            HealthState::Stale
        );
    }

    #[test]
    fn the_latest_failure_makes_a_pipeline_failing_whatever_succeeded_before() {
        let p = pipeline("*/10 * * * *");
        let now = t("2024-03-04 10:11:00");
        let failed = runs(
            Some(("failed", "2024-03-04 10:10:05")),
            Some("2024-03-04 10:01:00"),
            3,
        );
        let h = assess(Some(&p), &failed, now);
        assert_eq!(h.state, HealthState::Failing);
        assert!(
            h.reason.contains("10:10:05") && h.reason.contains("3 live runs in a row"),
            "{h:?}"
        );
        let abandoned = runs(Some(("abandoned", "2024-03-04 10:10:05")), None, 1);
        let h = assess(Some(&p), &abandoned, now);
        assert_eq!(h.state, HealthState::Failing);
        assert!(h.reason.contains("abandoned"), "{h:?}");
    }

    #[test]
    fn never_succeeded_is_stale_and_unscheduled_is_off() {
        let p = pipeline("*/10 * * * *");
        let now = t("2024-03-04 10:11:00");
        let h = assess(Some(&p), &LiveRuns::default(), now);
        assert_eq!(h.state, HealthState::Stale);
        assert_eq!(
            assess(None, &LiveRuns::default(), now).state,
            HealthState::Off
        );
        let mut disabled = p.clone();
        disabled.enabled = false;
        let failed = runs(Some(("failed", "2024-03-04 10:10:05")), None, 1);
        assert_eq!(
            assess(Some(&disabled), &failed, now).state,
            HealthState::Off
        );
    }
}
