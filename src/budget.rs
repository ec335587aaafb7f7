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
mod tests {
    use super::*;

    /// Takes `n` permits one after another, each released at once, and returns when each was granted.
    async fn grants(budget: &RequestBudget, n: usize) -> Vec<Instant> {
        let cancel = CancellationToken::new();
        let mut at = Vec::new();
        for _ in 0..n {
            let permit = budget.acquire(&cancel).await.expect("not cancelled");
            at.push(Instant::now());
            permit.succeeded();
        }
        at
    }

    /// The most instants in any half-open window `[t, t + span)`.
    fn most_in_any(at: &[Instant], span: Duration) -> usize {
        let mut sorted = at.to_vec();
        sorted.sort();
        let mut most = 0;
        let mut first = 0;
        for last in 0..sorted.len() {
            while sorted[last] - sorted[first] >= span {
                first += 1;
            }
            most = most.max(last - first + 1);
        }
        most
    }

    #[tokio::test(start_paused = true)]
    async fn no_one_second_window_holds_more_than_max_rps_even_from_a_standing_start() {
        for max_rps in [1.0, 3.0, 20.0, 50.0, 2.5] {
            let budget = RequestBudget::new(Some(max_rps), 1);
            let at = grants(&budget, 200).await;
            let most = most_in_any(&at, Duration::from_secs(1));
            assert!(
                most as f64 <= f64::ceil(max_rps),
                "{max_rps} rps: {most} in one second"
            );
            // ... with the 40 ms to spare the slack promises, for the network's jitter.
            assert!(
                most_in_any(&at, Duration::from_millis(1040)) as f64 <= f64::ceil(max_rps),
                "{max_rps} rps"
            );
            // And no slower than the slack: timers wake on the millisecond, late, yet 200 requests
            // take 199 spacings, give or take a millisecond; the lateness does not add up.
            let took = at[199] - at[0];
            let due = spacing(max_rps) * 199;
            let ms = Duration::from_millis(1);
            assert!(
                took + ms > due && took < due + ms,
                "{max_rps} rps: {took:?} for {due:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn timers_that_wake_late_neither_slow_the_rate_nor_bunch_requests() {
        // Paused time wakes a sleeper exactly when due; a real timer wakes up to a few ms late.
        // Played here by coming back for each permit 0–8 ms after it was due (paused time still
        // rounds a sleep up to the next millisecond).
        let max_rps = 20.0;
        let budget = RequestBudget::new(Some(max_rps), 1);
        let cancel = CancellationToken::new();
        let mut at = Vec::new();
        let mut lcg: u64 = 16;
        for _ in 0..400 {
            let permit = budget.acquire(&cancel).await.expect("permit");
            at.push(Instant::now());
            permit.succeeded();
            let due = budget.lock().next_grant.expect("a rate");
            lcg = lcg
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let late = Duration::from_micros((lcg >> 33) % 8_000);
            tokio::time::sleep_until(due + late).await;
        }
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] > spacing(max_rps) - LATE_WAKE);
        }
        assert!(most_in_any(&at, Duration::from_millis(1040)) <= 20);
        // The lateness did not add up: 400 permits took 399 spacings and one lateness at most.
        let took = at[399] - at[0];
        let due = spacing(max_rps) * 399;
        assert!(
            took >= due && took < due + LATE_WAKE,
            "{took:?} for {due:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_that_starts_full_would_have_let_a_burst_through() {
        // The first request goes at once; the second waits a whole spacing, even after a long idle
        // spell: no credit is saved up for a burst.
        let budget = RequestBudget::new(Some(10.0), 1);
        let first = grants(&budget, 1).await[0];
        tokio::time::sleep(Duration::from_secs(60)).await;
        let idle = grants(&budget, 3).await;
        assert!(idle[0] - first >= Duration::from_secs(60));
        assert_eq!(idle[1] - idle[0], spacing(10.0));
        assert_eq!(idle[2] - idle[1], spacing(10.0));
        // Waits are counted: the two that had to wait for the rate, for a spacing each.
        let stats = budget.stats();
        assert_eq!(stats.waits, 2);
        assert_eq!(stats.waited, spacing(10.0) * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_rate_is_half_a_request_a_second() {
        let budget = RequestBudget::new(Some(0.5), 1);
        let at = grants(&budget, 4).await;
        assert_eq!(at[3] - at[0], Duration::from_secs_f64(2.1) * 3);
        assert_eq!(most_in_any(&at, Duration::from_secs(2)), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_max_rps_nothing_waits() {
        let budget = RequestBudget::new(None, 1);
        let at = grants(&budget, 100).await;
        assert_eq!(at[99], at[0]);
        assert_eq!(budget.stats().waits, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_are_held_to_the_limit_and_counted_in_flight() {
        let budget = Arc::new(RequestBudget::new(None, 3));
        let cancel = CancellationToken::new();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(budget.acquire(&cancel).await.expect("a free slot"));
        }
        assert_eq!(budget.stats().in_flight, 3);
        // A fourth waits for a slot...
        let waiter = {
            let (budget, cancel) = (budget.clone(), cancel.clone());
            tokio::spawn(async move {
                let p = budget.acquire(&cancel).await;
                p.map(|_| Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "a fourth request went out");
        // ... and goes as soon as one is answered.
        let answered = Instant::now();
        drop(held.pop());
        let granted = waiter.await.expect("task").expect("not cancelled");
        assert_eq!(granted, answered);
        let stats = budget.stats();
        assert_eq!((stats.in_flight, stats.waits), (2, 1));
        assert_eq!(stats.waited, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_holds_back_every_request_of_the_pipeline() {
        let budget = Arc::new(RequestBudget::new(None, 8));
        let cancel = CancellationToken::new();
        let answered = budget.acquire(&cancel).await.expect("permit");
        let paused_at = Instant::now();
        answered.rate_limited(Some(Duration::from_secs(3)));
        let mut others = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (budget, cancel) = (budget.clone(), cancel.clone());
            others.spawn(async move {
                let p = budget.acquire(&cancel).await.expect("permit");
                let at = Instant::now();
                drop(p);
                at
            });
        }
        while let Some(at) = others.join_next().await {
            assert_eq!(at.expect("task") - paused_at, Duration::from_secs(3));
        }
        // A longer Retry-After than the cap pauses for the cap only.
        budget
            .acquire(&cancel)
            .await
            .expect("permit")
            .rate_limited(Some(Duration::from_secs(86_400)));
        let from = Instant::now();
        drop(budget.acquire(&cancel).await);
        assert_eq!(from.elapsed(), MAX_PAUSE);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiting_halves_the_limit_once_per_load_then_it_grows_back_after_the_hold() {
        let budget = RequestBudget::new(None, 8);
        let cancel = CancellationToken::new();
        // Eight in flight, all answered 429: one cut, not three (8 → 4, not 8 → 1).
        let mut eight = Vec::new();
        for _ in 0..8 {
            eight.push(budget.acquire(&cancel).await.expect("permit"));
        }
        tokio::time::advance(Duration::from_millis(10)).await;
        for p in eight {
            p.rate_limited(None);
        }
        assert_eq!(budget.stats().limit, 4);
        // A request sent after the cut and limited again cuts again: 4 → 2 → 1, never 0.
        for want in [2, 1, 1] {
            budget
                .acquire(&cancel)
                .await
                .expect("permit")
                .rate_limited(None);
            assert_eq!(budget.stats().limit, want);
        }
        // Successes during the hold do not grow it.
        tokio::time::advance(HOLD - Duration::from_secs(1)).await;
        for _ in 0..20 {
            budget.acquire(&cancel).await.expect("permit").succeeded();
        }
        assert_eq!(budget.stats().limit, 1);
        // After it, one more per streak of `limit` successes, up to the configured 8.
        tokio::time::advance(Duration::from_secs(1)).await;
        let mut seen = vec![];
        for _ in 0..40 {
            budget.acquire(&cancel).await.expect("permit").succeeded();
            seen.push(budget.stats().limit);
        }
        seen.dedup();
        assert_eq!(seen, [2, 3, 4, 5, 6, 7, 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_limit_holds_back_new_requests_until_enough_are_answered() {
        let budget = Arc::new(RequestBudget::new(None, 4));
        let cancel = CancellationToken::new();
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(budget.acquire(&cancel).await.expect("permit"));
        }
        held.pop().expect("four").rate_limited(None); // limit 2, three still in flight
        let waiter = {
            let (budget, cancel) = (budget.clone(), cancel.clone());
            tokio::spawn(async move { budget.acquire(&cancel).await.is_some() })
        };
        drop(held.pop()); // two in flight: still full
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(held.pop()); // one in flight: a slot under the limit of 2
        assert!(waiter.await.expect("task"));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_a_wait_takes_nothing() {
        let budget = Arc::new(RequestBudget::new(Some(1.0), 1));
        let cancel = CancellationToken::new();
        let first = budget.acquire(&cancel).await.expect("permit");
        let waiter = {
            let (budget, cancel) = (budget.clone(), cancel.clone());
            tokio::spawn(async move { budget.acquire(&cancel).await.is_none() })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        assert!(waiter.await.expect("task"), "a cancelled wait got a permit");
        drop(first);
        assert_eq!(budget.stats().in_flight, 0);
        // Already cancelled: nothing is granted, even with a slot free and no rate to wait for.
        let free = RequestBudget::new(None, 1);
        assert!(free.acquire(&cancel).await.is_none());
        assert_eq!(free.stats().in_flight, 0);
    }

    #[test]
    fn a_pipeline_keeps_one_budget_until_its_settings_change() {
        let budgets = Budgets::default();
        let a = budgets.get("ve", Some(20.0), 1);
        assert!(Arc::ptr_eq(&a, &budgets.get("ve", Some(20.0), 1)));
        assert!(!Arc::ptr_eq(&a, &budgets.get("dm", Some(20.0), 1)));
        let changed = budgets.get("ve", Some(5.0), 1);
        assert!(!Arc::ptr_eq(&a, &changed));
        let names: Vec<String> = budgets.stats().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["dm", "ve"]);
    }

    #[test]
    fn spacing_survives_any_rate() {
        assert_eq!(spacing(20.0), Duration::from_secs_f64(1.05 / 20.0));
        for nonsense in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
            let d = spacing(nonsense);
            assert!(d <= Duration::from_secs(3600), "{nonsense}: {d:?}");
        }
    }
}
