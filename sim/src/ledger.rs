//! What every simulator counts about the requests it serves: all of them (and when each arrived),
//! the refused ones (one readable line each) and the faults it injected; the hostile answer it is
//! told to give instead of any other ([`Hostile`]); and the [`Simulator`] accessors reading and
//! setting them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::response::Response;

use crate::faults::{FaultCounts, FaultInjector, Faults};
use crate::hostile::Hostile;
use crate::poison::{Poison, Poisoner};

/// One simulator's counters and its fault injector, shared with its request handlers.
pub struct Ledger {
    pub(crate) injector: FaultInjector,
    /// The orders whose rows are served spoiled.
    pub(crate) poison: Poisoner,
    requests: AtomicU64,
    /// When each request arrived, in order: what a rate limit upstream would count.
    arrivals: Mutex<Vec<Instant>>,
    violations: Mutex<Vec<String>>,
    hostile: Mutex<Option<Hostile>>,
}

impl Ledger {
    pub(crate) fn new(faults: Faults) -> Ledger {
        Ledger {
            injector: FaultInjector::new(faults),
            poison: Poisoner::default(),
            requests: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            hostile: Mutex::new(None),
        }
    }

    /// The hostile answer to give this request (whose query string is `query`) instead of any
    /// other, while one is set: a handler returns it right after counting the request.
    pub(crate) fn hostile_answer(&self, query: Option<&str>) -> Option<Response> {
        let mode = lock(&self.hostile).clone()?;
        Some(mode.answer(query))
    }

    /// Counts a request that reached the server and returns its number, from 1.
    pub(crate) fn next_request(&self) -> u64 {
        let mut arrivals = lock(&self.arrivals);
        arrivals.push(Instant::now());
        self.requests.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records a refused request as one line (the caller leaves its secrets out).
    pub(crate) fn violation(&self, line: String) {
        lock(&self.violations).push(line);
    }
}

/// What a test, the demo or the benchmark reads from any simulator.
pub trait Simulator {
    /// The simulator's counters.
    fn ledger(&self) -> &Ledger;

    /// One readable line per refused (rule-breaking) request, in arrival order:
    /// `request N: <what was wrong> [<parameters without secrets>]`.
    fn violations(&self) -> Vec<String> {
        lock(&self.ledger().violations).clone()
    }

    /// Requests received, faulted, forced and refused ones included.
    fn requests(&self) -> u64 {
        self.ledger().requests.load(Ordering::SeqCst)
    }

    /// When each request arrived (its handler started), in arrival order.
    fn arrivals(&self) -> Vec<Instant> {
        lock(&self.ledger().arrivals).clone()
    }

    /// The most requests that arrived in any one second (any half-open `[t, t + 1 s)`): what an
    /// upstream limiting requests a second would count.
    fn max_requests_in_any_second(&self) -> usize {
        most_in_any_window(&self.arrivals(), Duration::from_secs(1))
    }

    /// When each HTTP 429 was answered, with the `Retry-After` it carried.
    fn too_many_requests_at(&self) -> Vec<(Instant, Duration)> {
        self.ledger().injector.too_many_requests_at()
    }

    /// Faults injected so far (all kinds, slow answers included).
    fn faults_injected(&self) -> u64 {
        self.ledger().injector.total()
    }

    /// Per-kind counts of the faults injected so far.
    fn fault_counts(&self) -> FaultCounts {
        self.ledger().injector.counts()
    }

    /// New fault probabilities from the next request on (the fault RNG is reseeded with `faults.seed`).
    fn set_faults(&self, faults: Faults) {
        self.ledger().injector.set(faults);
    }

    /// From the next answer on, `order_id`'s row is served spoiled by `poison` (see
    /// [`crate::poison`]); `None` serves it sound again. The ground truth does not change.
    fn poison(&self, order_id: &str, poison: Option<Poison>) {
        self.ledger().poison.set(order_id, poison);
    }

    /// From the next request on, answer every request with `mode` (see [`Hostile`]) instead of
    /// anything else, until set back to `None`.
    fn set_hostile(&self, mode: Option<Hostile>) {
        *lock(&self.ledger().hostile) = mode;
    }
}

/// The most of `instants` (in any order) within any half-open window `[t, t + span)`.
pub fn most_in_any_window(instants: &[Instant], span: Duration) -> usize {
    let mut sorted = instants.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut first = 0;
    for last in 0..sorted.len() {
        while sorted[last] - sorted[first] >= span {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// A poisoned lock still holds usable data: a panicking handler must not wedge the simulator.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_window_is_counted_half_open() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let second = Duration::from_secs(1);
        assert_eq!(most_in_any_window(&[], second), 0);
        assert_eq!(most_in_any_window(&[at(5)], second), 1);
        // 0 and 1000 are a second apart: never in one window; 999 is.
        assert_eq!(most_in_any_window(&[at(1000), at(0), at(500)], second), 2);
        assert_eq!(most_in_any_window(&[at(0), at(500), at(999)], second), 3);
        let burst: Vec<Instant> = (0..10).map(|i| at(2000 + i)).collect();
        let all = [vec![at(0), at(1500)], burst].concat();
        assert_eq!(most_in_any_window(&all, second), 11);
    }
}
