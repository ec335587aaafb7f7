//! Fault injection shared by every simulator: what can go wrong between ordersync and an upstream.
//!
//! [`Faults`] says how often each fault happens; a [`FaultInjector`] draws, per request, from a
//! ChaCha RNG seeded with `Faults::seed`, so a given sequence of requests meets the same faults
//! every time, and counts what it injected. Exactly one of the answer-replacing faults (5xx, 429,
//! body-level rate limit, body-level transient error, truncated body, malformed body) applies at
//! most per request, chosen by one draw against the cumulative probabilities in that order; only
//! when none applies does a second draw decide whether the (real) answer is slow. A faulted answer
//! is never a rule violation.
//!
//! The body-level transient error exists only for sources that document such a code (miaoyouquan's
//! `-1`), so its probability is not a field of [`Faults`] (whose literals are written out in full by
//! ordersync's tests) but set per injector with [`FaultInjector::set_body_transient`]; it stays 0
//! for the others, whose sequence of faults is therefore exactly what it was before it existed.
//!
//! What each fault sends (the source's own words come from its [`SourceBodies`]):
//! - [`Fault::ServerError`]: HTTP 502 or 503 (even odds), `text/html` nginx-style error page.
//! - [`Fault::TooManyRequests`]: HTTP 429, header `Retry-After: <retry_after_secs>`, and the source's
//!   JSON for it if it has one, else a `text/html` body.
//! - [`Fault::BodyRateLimit`]: HTTP 200 with the source's own rate-limit JSON (the simulator supplies it).
//! - [`Fault::BodyTransient`]: HTTP 200 with the source's own "failed, try again" JSON.
//! - [`Fault::Truncated`]: HTTP 200, the real JSON answer cut to its first half (at a byte, possibly
//!   inside a UTF-8 sequence), `Content-Length` equal to the bytes actually sent.
//! - [`Fault::Malformed`]: HTTP 200, `text/html` body `<html>upstream error</html>`.
//! - [`Fault::Slow`]: the real answer, after sleeping `slow_ms`.

use std::sync::Mutex;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::http;

/// How often each fault happens, as probabilities per request (0 = never, 1 = always).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// HTTP 502/503 with an HTML body.
    pub p_5xx: f64,
    /// HTTP 429 with `Retry-After: retry_after_secs`.
    pub p_429: f64,
    pub retry_after_secs: u64,
    /// HTTP 200 with the source's body-level rate-limit code.
    pub p_body_rate_limit: f64,
    /// HTTP 200, the real JSON body cut off in the middle.
    pub p_truncated: f64,
    /// HTTP 200, a body that is not JSON.
    pub p_malformed: f64,
    /// Sleep `slow_ms` before giving the real answer.
    pub p_slow: f64,
    pub slow_ms: u64,
    /// Seeds the injector's RNG.
    pub seed: u64,
}

/// One injected fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this 5xx status and an HTML page.
    ServerError(u16),
    /// Answer 429 with this `Retry-After`.
    TooManyRequests { retry_after_secs: u64 },
    /// Answer 200 with the source's rate-limit body.
    BodyRateLimit,
    /// Answer 200 with the source's transient-error body.
    BodyTransient,
    /// Answer with the real body cut in half.
    Truncated,
    /// Answer 200 with a non-JSON body.
    Malformed,
    /// Sleep this many milliseconds, then answer for real.
    Slow { ms: u64 },
}

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub server_error: u64,
    pub too_many_requests: u64,
    pub body_rate_limit: u64,
    pub body_transient: u64,
    pub truncated: u64,
    pub malformed: u64,
    pub slow: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.server_error
            + self.too_many_requests
            + self.body_rate_limit
            + self.body_transient
            + self.truncated
            + self.malformed
            + self.slow
    }

    fn count(&mut self, fault: Fault) {
        let slot = match fault {
            Fault::ServerError(_) => &mut self.server_error,
            Fault::TooManyRequests { .. } => &mut self.too_many_requests,
            Fault::BodyRateLimit => &mut self.body_rate_limit,
            Fault::BodyTransient => &mut self.body_transient,
            Fault::Truncated => &mut self.truncated,
            Fault::Malformed => &mut self.malformed,
            Fault::Slow { .. } => &mut self.slow,
        };
        *slot += 1;
    }
}

/// Decides per request which fault, if any, applies; thread-safe, deterministic per request sequence.
pub struct FaultInjector {
    inner: Mutex<Inner>,
}

struct Inner {
    faults: Faults,
    /// Probability of [`Fault::BodyTransient`]; 0 unless the source set it.
    p_body_transient: f64,
    rng: ChaCha8Rng,
    counts: FaultCounts,
    /// When each [`Fault::TooManyRequests`] was decided, and its `Retry-After`.
    too_many_requests_at: Vec<(std::time::Instant, std::time::Duration)>,
}

impl FaultInjector {
    pub fn new(faults: Faults) -> FaultInjector {
        FaultInjector {
            inner: Mutex::new(Inner {
                rng: ChaCha8Rng::seed_from_u64(faults.seed),
                faults,
                p_body_transient: 0.0,
                counts: FaultCounts::default(),
                too_many_requests_at: Vec::new(),
            }),
        }
    }

    /// Replaces the probabilities and reseeds the RNG with `faults.seed`; counts and the
    /// body-transient probability are kept.
    pub fn set(&self, faults: Faults) {
        let mut inner = self.lock();
        inner.rng = ChaCha8Rng::seed_from_u64(faults.seed);
        inner.faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Sets the probability of [`Fault::BodyTransient`] (only for a source that has such a code);
    /// the RNG is not reseeded.
    pub fn set_body_transient(&self, p: f64) {
        self.lock().p_body_transient = p;
    }

    pub fn body_transient(&self) -> f64 {
        self.lock().p_body_transient
    }

    /// The fault for the next request, if any (counted).
    pub fn decide(&self) -> Option<Fault> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let f = &inner.faults;
        let draw: f64 = inner.rng.random();
        let mut edge = 0.0;
        let mut fault = None;
        for (p, candidate) in [
            (f.p_5xx, Kind::ServerError),
            (f.p_429, Kind::TooManyRequests),
            (f.p_body_rate_limit, Kind::BodyRateLimit),
            (inner.p_body_transient, Kind::BodyTransient),
            (f.p_truncated, Kind::Truncated),
            (f.p_malformed, Kind::Malformed),
        ] {
            edge += probability(p);
            if draw < edge {
                fault = Some(candidate);
                break;
            }
        }
        let fault = match fault {
            Some(Kind::ServerError) => Some(Fault::ServerError(if inner.rng.random_bool(0.5) {
                502
            } else {
                503
            })),
            Some(Kind::TooManyRequests) => Some(Fault::TooManyRequests {
                retry_after_secs: f.retry_after_secs,
            }),
            Some(Kind::BodyRateLimit) => Some(Fault::BodyRateLimit),
            Some(Kind::BodyTransient) => Some(Fault::BodyTransient),
            Some(Kind::Truncated) => Some(Fault::Truncated),
            Some(Kind::Malformed) => Some(Fault::Malformed),
            None => {
                let slow: f64 = inner.rng.random();
                (slow < probability(f.p_slow)).then_some(Fault::Slow { ms: f.slow_ms })
            }
        };
        if let Some(fault) = fault {
            inner.counts.count(fault);
        }
        if let Some(Fault::TooManyRequests { retry_after_secs }) = fault {
            let retry_after = std::time::Duration::from_secs(retry_after_secs);
            inner
                .too_many_requests_at
                .push((std::time::Instant::now(), retry_after));
        }
        fault
    }

    /// When each HTTP 429 so far was decided (the answer goes out at once), and its `Retry-After`.
    pub fn too_many_requests_at(&self) -> Vec<(std::time::Instant, std::time::Duration)> {
        self.lock().too_many_requests_at.clone()
    }

    pub fn counts(&self) -> FaultCounts {
        self.lock().counts
    }

    /// All faults injected so far.
    pub fn total(&self) -> u64 {
        self.counts().total()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    ServerError,
    TooManyRequests,
    BodyRateLimit,
    BodyTransient,
    Truncated,
    Malformed,
}

/// A probability clamped to [0, 1]; NaN counts as 0.
fn probability(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

/// What a source says, in its own JSON, for the faults that carry its words.
#[derive(Clone, Copy, Debug)]
pub struct SourceBodies<'a> {
    /// The body-level rate-limit answer, sent with HTTP 200.
    pub rate_limit: &'a [u8],
    /// The body-level transient-error answer, sent with HTTP 200; `None` for a source without one
    /// (its injector never draws [`Fault::BodyTransient`]).
    pub transient: Option<&'a [u8]>,
    /// The body sent with HTTP 429; `None`: an HTML page.
    pub too_many_requests: Option<&'a [u8]>,
}

impl<'a> SourceBodies<'a> {
    /// A source whose only words are its rate-limit body (HTTP 429 then carries an HTML page).
    pub fn rate_limit_only(rate_limit: &'a [u8]) -> SourceBodies<'a> {
        SourceBodies {
            rate_limit,
            transient: None,
            too_many_requests: None,
        }
    }
}

/// The answer for a fault that replaces the real one (5xx, 429, body-level rate limit or transient
/// error, malformed); `None` for [`Fault::Truncated`] and [`Fault::Slow`], which need the real
/// answer first, and for [`Fault::BodyTransient`] when the source has no transient body.
pub fn canned(fault: Fault, bodies: &SourceBodies<'_>) -> Option<Response> {
    match fault {
        Fault::ServerError(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let reason = status.canonical_reason().unwrap_or("Server Error");
            let page = format!(
                "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
                code = status.as_u16()
            );
            Some(http::with_type(status, "text/html", page.into_bytes()))
        }
        Fault::TooManyRequests { retry_after_secs } => {
            let mut resp = match bodies.too_many_requests {
                Some(body) => http::json_with_status(StatusCode::TOO_MANY_REQUESTS, body.to_vec()),
                None => http::with_type(
                    StatusCode::TOO_MANY_REQUESTS,
                    "text/html",
                    b"<html><body><h1>429 Too Many Requests</h1></body></html>".to_vec(),
                ),
            };
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            Some(resp)
        }
        Fault::BodyRateLimit => Some(http::json(bodies.rate_limit.to_vec())),
        Fault::BodyTransient => bodies.transient.map(|body| http::json(body.to_vec())),
        Fault::Malformed => Some(http::with_type(
            StatusCode::OK,
            "text/html",
            b"<html>upstream error</html>".to_vec(),
        )),
        Fault::Truncated | Fault::Slow { .. } => None,
    }
}

/// The real JSON answer cut to its first half (HTTP 200, `Content-Length` = bytes sent).
pub fn truncated(mut body: Vec<u8>) -> Response {
    body.truncate(body.len() / 2);
    http::json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(faults: Faults, n: usize) -> Vec<Option<Fault>> {
        let inj = FaultInjector::new(faults);
        (0..n).map(|_| inj.decide()).collect()
    }

    #[test]
    fn no_faults_by_default() {
        let inj = FaultInjector::new(Faults::default());
        assert!((0..1000).all(|_| inj.decide().is_none()));
        assert_eq!(inj.total(), 0);
    }

    #[test]
    fn same_seed_same_faults_and_rates_roughly_right() {
        let faults = Faults {
            p_5xx: 0.1,
            p_429: 0.1,
            retry_after_secs: 7,
            p_truncated: 0.1,
            p_slow: 0.5,
            slow_ms: 3,
            seed: 11,
            ..Faults::default()
        };
        let a = draws(faults.clone(), 5000);
        assert_eq!(a, draws(faults.clone(), 5000));
        let inj = FaultInjector::new(faults);
        for _ in 0..5000 {
            inj.decide();
        }
        let c = inj.counts();
        for (n, expected) in [
            (c.server_error, 500.0),
            (c.too_many_requests, 500.0),
            (c.truncated, 500.0),
            (c.slow, 0.5 * 3500.0),
        ] {
            assert!((n as f64 - expected).abs() < expected * 0.2, "{c:?}");
        }
        assert_eq!(c.body_rate_limit + c.body_transient + c.malformed, 0);
        assert_eq!(c.total(), inj.total());
        assert!(a.contains(&Some(Fault::TooManyRequests {
            retry_after_secs: 7
        })));
        assert!(a.contains(&Some(Fault::ServerError(502))));
        assert!(a.contains(&Some(Fault::ServerError(503))));
    }

    #[test]
    fn certain_fault_always_applies_and_nonsense_probabilities_are_clamped() {
        let always = Faults {
            p_malformed: 1.0,
            ..Faults::default()
        };
        assert!(draws(always, 100)
            .iter()
            .all(|f| *f == Some(Fault::Malformed)));
        let nonsense = Faults {
            p_5xx: f64::NAN,
            p_429: -3.0,
            p_truncated: 7.0,
            ..Faults::default()
        };
        assert!(draws(nonsense, 100)
            .iter()
            .all(|f| *f == Some(Fault::Truncated)));
    }

    #[test]
    fn body_transient_takes_its_slot_and_leaves_other_sequences_alone() {
        let faults = Faults {
            p_5xx: 0.2,
            p_truncated: 0.2,
            seed: 3,
            ..Faults::default()
        };
        let plain = draws(faults.clone(), 2000);
        let inj = FaultInjector::new(faults.clone());
        inj.set_body_transient(0.0);
        assert_eq!((0..2000).map(|_| inj.decide()).collect::<Vec<_>>(), plain);

        let inj = FaultInjector::new(faults);
        inj.set_body_transient(0.3);
        for _ in 0..2000 {
            inj.decide();
        }
        let c = inj.counts();
        assert!(c.body_transient.abs_diff(600) < 120, "{c:?}");
        assert!(c.server_error.abs_diff(400) < 80, "{c:?}");
        assert_eq!(c.total(), c.server_error + c.body_transient + c.truncated);
        inj.set(Faults::default());
        assert_eq!(inj.body_transient(), 0.3, "kept across set()");
        let always = FaultInjector::new(Faults::default());
        always.set_body_transient(1.0);
        assert!((0..50).all(|_| always.decide() == Some(Fault::BodyTransient)));
    }
}
