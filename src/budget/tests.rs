//! The request budget's tests: spacing, halving on rate limits, growing back, pauses.

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
