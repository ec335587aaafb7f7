//! The request budget of one pipeline: how often (`max_rps`) and how many at once its requests may
//! go upstream, shared by every request that pipeline makes in one process, backing off together
//! when upstream says "too many".
//!
//! Every attempt takes a [`BudgetPermit`] before it is sent and gives it back once its answer is
//! read. A permit is granted only when three things hold at once:
//! - **a free slot:** fewer requests are in flight than the current *limit*. The limit starts at
//!   the configured concurrency; a rate-limited answer (HTTP 429, or a body-level rate-limit code)
//!   halves it (never below 1), and it stays there for [`HOLD`] after the last such answer, then
//!   grows back by one per streak of `limit` successes in a row. Answers to requests sent before a
//!   cut do not cut again: they tell of the old load, not the new one.
//! - **no pause:** upstream's `Retry-After` holds back *every* request of the pipeline, not only
//!   the one it answered, until it has passed (at most [`MAX_PAUSE`]).
//! - **the rate:** with `max_rps` set, two permits are never granted closer than
//!   [`spacing`]`(max_rps)` apart, less a timer's late wake-up ([`LATE_WAKE`]) that never adds
//!   up. This is a token bucket holding at most one token, on purpose: a bucket of N tokens that
//!   starts full lets N requests out at once and N more as it refills, up to 2N−1 in one second.
//!   With a bucket of one, any k permits in a row span more than (k−1) spacings less 10 ms; a
//!   spacing is (1 + [`JITTER_SLACK`]) ÷ max_rps, so max_rps + 1 permits span more than 1.04 s,
//!   and no one-second window (half-open, as upstream counts) holds more than max_rps of them
//!   (⌈max_rps⌉ for a fractional rate ≥ 1; never two within 1 ÷ max_rps below 1). The 40 ms to
//!   spare keep that true as upstream sees it when one request's trip takes longer than another's.
//!
//! Waiting is cancellable, holds no lock across an await, and never panics; a permit dropped
//! without a verdict (a cancelled or failed attempt) just frees its slot. [`Budgets`] keeps one
//! budget per pipeline for the whole process, and the daemon's `/metrics` reads their counters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a halved limit stays halved after the last rate-limited answer before it may grow.
pub const HOLD: Duration = Duration::from_secs(30);

/// The longest `Retry-After` the whole pipeline waits for: a stuck upstream should show in the
/// runs' outcomes, not in a pipeline asleep for a day. (The attempt that met it gives up by its own
/// retry count.)
pub const MAX_PAUSE: Duration = Duration::from_secs(600);

/// How much longer than `1 / max_rps` the spacing between two requests is: 5%, so that
/// `max_rps + 1` requests span 1.05 s (less [`LATE_WAKE`]) and any one-second window upstream
/// sees holds at most `max_rps` of them even when the first's trip took up to 40 ms longer than
/// the last's (a fresh connection, a busy machine). It costs 5% of the rate.
pub const JITTER_SLACK: f64 = 0.05;

/// How late a timer may wake and still count as on time. Tokio's timers tick by the millisecond
/// and a busy machine wakes a task later still (measured here: 0.9 ms typical, 2 ms at the 90th
/// percentile, 5 ms at worst); were each permit's lateness added to the next spacing, the rate
/// would sag by that much. A permit granted less than this late is counted as granted when due,
/// so two permits may be up to this much closer than [`spacing`], but never more: each next one
/// is due a spacing after the earlier of (when this one was due, when it was granted), so any k
/// permits in a row span more than (k−1) spacings less this.
pub const LATE_WAKE: Duration = Duration::from_millis(10);

/// The least time between two requests' starts for `max_rps`: `(1 + JITTER_SLACK) / max_rps`,
/// at most an hour (a rate that low is a config mistake, not a reason to overflow).
pub fn spacing(max_rps: f64) -> Duration {
    let seconds = (1.0 + JITTER_SLACK) / max_rps;
    if seconds.is_finite() && seconds >= 0.0 {
        Duration::from_secs_f64(seconds.min(3600.0))
    } else {
        Duration::from_secs(3600)
    }
}

/// A budget's counters, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetStats {
    /// Requests sent and not yet answered.
    pub in_flight: u32,
    /// How many may be in flight now (the configured concurrency, or less after rate limiting).
    pub limit: u32,
    /// Permits that were not granted at once (for the rate, a slot, or a pause).
    pub waits: u64,
    /// Time those permits waited, in total.
    pub waited: Duration,
}

/// One pipeline's budget. Share it with `Arc`; see the module doc for what it guarantees.
#[derive(Debug)]
pub struct RequestBudget {
    max_rps: Option<f64>,
    concurrency: u32,
    /// `spacing(max_rps)`; `None` when the rate is not limited.
    spacing: Option<Duration>,
    state: Mutex<State>,
    /// Woken when a slot frees or the limit grows: waiters look again.
    freed: Notify,
}

#[derive(Debug)]
struct State {
    in_flight: u32,
    limit: u32,
    /// The earliest the next permit may be granted, by the rate.
    next_grant: Option<Instant>,
    /// No permit before this: the latest `Retry-After`.
    paused_until: Option<Instant>,
    /// When the limit was last halved.
    last_cut: Option<Instant>,
    /// The limit may not grow before this.
    hold_until: Option<Instant>,
    /// Successes in a row since the last rate-limited answer or growth.
    streak: u32,
    waits: u64,
    waited: Duration,
}

/// What keeps a waiter from its permit right now.
enum Blocked {
    /// Every slot is taken: wait for one to free.
    Full,
    /// A slot is free; the rate or a pause allows the next permit at this instant.
    Until(Instant),
}

impl RequestBudget {
    /// A budget letting `concurrency` requests (at least 1) be in flight at once, at most
    /// `max_rps` a second (`None`: no rate limit; a value that is not a positive number is taken as
    /// one request an hour rather than trusted).
    pub fn new(max_rps: Option<f64>, concurrency: u32) -> RequestBudget {
        let concurrency = concurrency.max(1);
        RequestBudget {
            max_rps,
            concurrency,
            spacing: max_rps.map(spacing),
            state: Mutex::new(State {
                in_flight: 0,
                limit: concurrency,
                next_grant: None,
                paused_until: None,
                last_cut: None,
                hold_until: None,
                streak: 0,
                waits: 0,
                waited: Duration::ZERO,
            }),
            freed: Notify::new(),
        }
    }

    /// The settings it was made with: `(max_rps, concurrency)`.
    pub fn settings(&self) -> (Option<f64>, u32) {
        (self.max_rps, self.concurrency)
    }

    /// Waits for a slot, the rate and any pause, then takes a permit for one request; `None` when
    /// `cancel` fires first (nothing is taken then).
    pub async fn acquire(&self, cancel: &CancellationToken) -> Option<BudgetPermit<'_>> {
        let asked = Instant::now();
        let mut waited = false;
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            // Registered before looking, so a slot freed between the look and the wait still wakes us.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let blocked = {
                let mut s = self.lock();
                let now = Instant::now();
                match s.blocked(now) {
                    None => {
                        s.in_flight += 1;
                        // The next is due a spacing after this one was: after when it was due, if
                        // it came less than LATE_WAKE after that (so sleeps that end a little late
                        // do not add up into a slower rate), else after now.
                        let base = match s.next_grant {
                            Some(due) if now - due < LATE_WAKE => due,
                            _ => now,
                        };
                        s.next_grant = self.spacing.map(|d| base + d);
                        if waited {
                            s.waits += 1;
                            s.waited += now - asked;
                        }
                        return Some(BudgetPermit {
                            budget: self,
                            sent: now,
                        });
                    }
                    Some(b) => b,
                }
            };
            waited = true;
            let until = match blocked {
                Blocked::Full => None,
                Blocked::Until(t) => Some(t),
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                _ = &mut freed => {}
                _ = sleep_until(until) => {}
            }
        }
    }

    pub fn stats(&self) -> BudgetStats {
        let s = self.lock();
        BudgetStats {
            in_flight: s.in_flight,
            limit: s.limit,
            waits: s.waits,
            waited: s.waited,
        }
    }

    /// A poisoned lock still holds consistent counters (no code panics while holding it).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// What keeps a permit from being granted at `now`; `None` when nothing does.
    fn blocked(&self, now: Instant) -> Option<Blocked> {
        if self.in_flight >= self.limit {
            return Some(Blocked::Full);
        }
        let ready = self.next_grant.max(self.paused_until)?;
        (ready > now).then_some(Blocked::Until(ready))
    }
}

async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One request's hold on its pipeline's budget: a slot, given back when the permit is dropped.
/// Say how the answer went with [`succeeded`](Self::succeeded) or
/// [`rate_limited`](Self::rate_limited); any other end (error, cancellation) just drops it.
#[derive(Debug)]
pub struct BudgetPermit<'a> {
    budget: &'a RequestBudget,
    /// When the permit was granted, that is when the request went out.
    sent: Instant,
}

impl BudgetPermit<'_> {
    /// The answer was good: one more in the streak that lets a halved limit grow back.
    pub fn succeeded(self) {
        let mut s = self.budget.lock();
        s.streak += 1;
        let held = s.hold_until.is_some_and(|t| Instant::now() < t);
        if !held && s.limit < self.budget.concurrency && s.streak >= s.limit {
            s.limit += 1;
            s.streak = 0;
        }
    }

    /// Upstream said "too many": halve the limit (unless an answer to a later request already
    /// did), hold it down for [`HOLD`], and pause every request of the pipeline for `retry_after`.
    pub fn rate_limited(self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let mut s = self.budget.lock();
        s.streak = 0;
        if s.last_cut.is_none_or(|cut| self.sent >= cut) {
            s.limit = (s.limit / 2).max(1);
            s.last_cut = Some(now);
        }
        s.hold_until = Some(now + HOLD);
        if let Some(d) = retry_after {
            let until = now + d.min(MAX_PAUSE);
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        }
    }
}

impl Drop for BudgetPermit<'_> {
    fn drop(&mut self) {
        let mut s = self.budget.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.budget.freed.notify_waiters();
    }
}

/// The budgets of one process, one per pipeline name, made on first use and shared from then on
/// by every run of that pipeline (a daemon's live sync and rescan, parallel windows).
#[derive(Debug, Clone, Default)]
pub struct Budgets(Arc<Mutex<HashMap<String, Arc<RequestBudget>>>>);

impl Budgets {
    /// The budget of `pipeline`. A pipeline asked for with other settings than its budget has
    /// (only a new config can do that) gets a new budget; runs still holding the old one finish
    /// under it.
    pub fn get(
        &self,
        pipeline: &str,
        max_rps: Option<f64>,
        concurrency: u32,
    ) -> Arc<RequestBudget> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(pipeline) {
            Some(b) if b.settings() == (max_rps, concurrency.max(1)) => b.clone(),
            _ => {
                let b = Arc::new(RequestBudget::new(max_rps, concurrency));
                map.insert(pipeline.to_string(), b.clone());
                b
            }
        }
    }

    /// Every budget's counters, by pipeline name.
    pub fn stats(&self) -> Vec<(String, BudgetStats)> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = map.iter().map(|(k, b)| (k.clone(), b.stats())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests;
