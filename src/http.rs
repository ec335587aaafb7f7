//! One HTTP client for every upstream, with retries that know transient from fatal.
//!
//! [`Http::fetch`] sends a request, hands the answer to the source's parser and retries what is
//! worth retrying — connect errors, timeouts, 5xx, HTTP 429, and whatever the parser classes as
//! transient or rate-limited (body codes, truncated or malformed bodies) — with exponential backoff
//! and jitter (the `backoff` crate), honouring `Retry-After`, up to `max_retries`. A fatal answer
//! stops at once: any other 4xx, and any 3xx (redirects are never followed). Each attempt goes
//! out under the pipeline's [`RequestBudget`] (its rate and in-flight limit), which every
//! rate-limited answer slows down for the whole pipeline.
//!
//! Bounded by design: one answer costs at most `max_body` bytes of memory. The body is read chunk
//! by chunk (inflated chunks, for a gzip answer) and given up as `body_too_large` (transient) the
//! moment it would pass the cap — or before reading, when its `Content-Length` already does — and
//! the per-request `timeout` covers the whole body, so one that never ends ends there. Nothing
//! it logs or returns contains a secret: URLs go through the [`Redactor`], and so does every
//! upstream error, code and message.

use std::collections::BTreeMap;
use std::time::Duration;

use backoff::backoff::Backoff;
use reqwest::Method;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::budget::RequestBudget;
use crate::bytesize;
use crate::redact::Redactor;

/// What an upstream said, classified by the source that knows its codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Worth asking again: network trouble, 5xx, malformed or truncated body, "try again" codes.
    #[error("upstream code {code}: {message}")]
    Transient { code: String, message: String },
    /// Asked too often: wait (`retry_after` when upstream says how long) and ask again.
    #[error("upstream code {code}: {message} (rate limited)")]
    RateLimited {
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Asking again will not help: bad key, no permission, quota gone, bad parameter.
    #[error("upstream code {code}: {message}")]
    Fatal { code: String, message: String },
}

impl UpstreamError {
    pub fn transient(code: impl Into<String>, message: impl Into<String>) -> Self {
        UpstreamError::Transient {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> Self {
        UpstreamError::Fatal {
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            UpstreamError::Transient { code, .. }
            | UpstreamError::RateLimited { code, .. }
            | UpstreamError::Fatal { code, .. } => code,
        }
    }

    /// The error with every secret hidden in all it carries from upstream: the code as well as the
    /// message (an upstream may echo the key it was sent in either).
    fn scrubbed(self, r: &Redactor) -> Self {
        match self {
            UpstreamError::Transient { code, message } => UpstreamError::Transient {
                code: r.scrub(&code),
                message: r.scrub(&message),
            },
            UpstreamError::RateLimited {
                code,
                message,
                retry_after,
            } => UpstreamError::RateLimited {
                code: r.scrub(&code),
                message: r.scrub(&message),
                retry_after,
            },
            UpstreamError::Fatal { code, message } => UpstreamError::Fatal {
                code: r.scrub(&code),
                message: r.scrub(&message),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(serde_json::Value),
}

/// A request as a source builds it.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

/// How a fetch retries, and what one attempt may cost.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial: Duration,
    pub max_interval: Duration,
    /// The whole of one attempt: connecting, sending, and reading the body to its end.
    pub timeout: Duration,
    /// The most bytes one answer's body may have, on the wire and, for a gzip answer, inflated.
    pub max_body: u64,
}

/// One pipeline's terms with its upstream, as a fetch needs them: how it retries, what it hides
/// (its secrets), and the request budget its attempts go out under (shared by all its requests).
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    pub retry: &'a RetryPolicy,
    pub redactor: &'a Redactor,
    pub budget: &'a RequestBudget,
}

/// Why a fetch ended without a page.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Fatal(UpstreamError),
    #[error("gave up after {attempts} attempts, last: {last}")]
    GaveUp { attempts: u32, last: UpstreamError },
    #[error("interrupted by shutdown")]
    Cancelled,
}

impl FetchError {
    pub fn upstream(&self) -> Option<&UpstreamError> {
        match self {
            FetchError::Fatal(e) | FetchError::GaveUp { last: e, .. } => Some(e),
            FetchError::Cancelled => None,
        }
    }
}

/// The parsed value, and how many HTTP requests it took.
#[derive(Debug)]
pub struct Fetched<T> {
    pub value: T,
    pub requests: u32,
}

/// `Retry-After` larger than this is treated as this: a stuck pipeline should say so, not sleep a
/// day. The same cap as the pause it imposes on the whole pipeline through its budget.
const MAX_RETRY_AFTER: Duration = crate::budget::MAX_PAUSE;

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Http, reqwest::Error> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("ordersync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            // A redirect would take the request, keys in its query string included, wherever the
            // upstream says: a 3xx is an error instead (see `redirect_error`).
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Http { client })
    }

    /// Sends the request `build` makes until `parse` accepts an answer, a fatal error comes,
    /// retries run out, or `cancel` fires (only between attempts: a request in flight is not
    /// abandoned half-read). Every attempt first takes a permit of the pipeline's budget (its
    /// rate, its in-flight limit, any pause a `Retry-After` imposed on the whole pipeline), holds
    /// it until its answer is read and parsed, and tells the budget when the answer was a
    /// rate-limited one. The request is built anew for every attempt, once its permit is in hand,
    /// so what depends on the time it is sent (TOP's signed `timestamp`, refused ten minutes on) is
    /// as fresh on a retry, or after a wait, as on the first try; an error building it is fatal.
    /// The error carries how many requests were made; every failed attempt is tallied in `errors`
    /// by upstream code.
    pub async fn fetch<T>(
        &self,
        build: impl Fn() -> Result<HttpRequest, UpstreamError>,
        upstream: &Upstream<'_>,
        cancel: &CancellationToken,
        errors: &mut BTreeMap<String, u64>,
        parse: impl Fn(u16, &[u8]) -> Result<T, UpstreamError>,
    ) -> Result<Fetched<T>, (FetchError, u32)> {
        let Upstream {
            retry: policy,
            redactor,
            budget,
        } = *upstream;
        let mut backoff = backoff::ExponentialBackoff {
            initial_interval: policy.initial,
            current_interval: policy.initial,
            randomization_factor: 0.5,
            multiplier: 2.0,
            max_interval: policy.max_interval,
            max_elapsed_time: None,
            ..Default::default()
        };
        let mut attempts: u32 = 0;
        loop {
            let Some(permit) = budget.acquire(cancel).await else {
                return Err((FetchError::Cancelled, attempts));
            };
            let req = build().map_err(|e| (FetchError::Fatal(e.scrubbed(redactor)), attempts))?;
            let shown_url = redactor.url(&req.url);
            attempts += 1;
            tracing::trace!(url = %shown_url, attempt = attempts, "request");
            let outcome = self.attempt(&req, policy, &parse).await;
            let err = match outcome {
                Ok(value) => {
                    permit.succeeded();
                    return Ok(Fetched {
                        value,
                        requests: attempts,
                    });
                }
                Err(e) => e.scrubbed(redactor),
            };
            match &err {
                UpstreamError::RateLimited { retry_after, .. } => permit.rate_limited(*retry_after),
                _ => drop(permit),
            }
            *errors.entry(err.code().to_string()).or_default() += 1;
            let wait = match &err {
                UpstreamError::Fatal { .. } => {
                    tracing::debug!(url = %shown_url, error = %err, "fatal upstream answer");
                    return Err((FetchError::Fatal(err), attempts));
                }
                UpstreamError::RateLimited {
                    retry_after: Some(d),
                    ..
                } => {
                    // Honour the server's wait, plus a little jitter so pipelines don't stampede.
                    let jitter = backoff.next_backoff().unwrap_or(policy.initial) / 4;
                    (*d).min(MAX_RETRY_AFTER) + jitter
                }
                _ => backoff.next_backoff().unwrap_or(policy.max_interval),
            };
            if attempts > policy.max_retries {
                return Err((
                    FetchError::GaveUp {
                        attempts,
                        last: err,
                    },
                    attempts,
                ));
            }
            tracing::debug!(url = %shown_url, error = %err, wait_ms = wait.as_millis() as u64, attempt = attempts, "retrying");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Err((FetchError::Cancelled, attempts)),
            }
        }
    }

    async fn attempt<T>(
        &self,
        req: &HttpRequest,
        policy: &RetryPolicy,
        parse: &impl Fn(u16, &[u8]) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        let mut builder = self
            .client
            .request(req.method.clone(), req.url.clone())
            .timeout(policy.timeout);
        for (name, value) in &req.headers {
            // Our headers carry credentials (damaijia's token): marked sensitive, so neither
            // reqwest's nor hyper's debug output ever prints them.
            let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                UpstreamError::fatal("config", format!("the {name} header is not valid text"))
            })?;
            value.set_sensitive(true);
            builder = builder.header(*name, value);
        }
        if let Body::Json(v) = &req.body {
            builder = builder
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(v).unwrap_or_default());
        }
        let resp = builder.send().await.map_err(network_error)?;
        let status = resp.status();
        if status.is_redirection() {
            let location = resp.headers().get(reqwest::header::LOCATION);
            return Err(redirect_error(status, &req.url, location));
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.as_u16() == 429 {
            return Err(UpstreamError::RateLimited {
                code: "HTTP 429".into(),
                message: "too many requests".into(),
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(UpstreamError::transient(
                format!("HTTP {}", status.as_u16()),
                status.canonical_reason().unwrap_or("server error"),
            ));
        }
        let body = read_body(resp, policy).await;
        if status.is_client_error() {
            let parsed = body.and_then(|body| parse(status.as_u16(), &body).map(|_| ()));
            return Err(client_error(status, parsed));
        }
        parse(status.as_u16(), &body?)
    }
}

/// An answer's body, refused as soon as it is known to pass `max_body` bytes: from its
/// `Content-Length` before reading, else while reading. Chunks come inflated from reqwest's gzip
/// decoder (which hides the wire length), so for a gzip answer the cap is on inflated bytes; its
/// wire bytes are at most those plus a few bytes of framing per deflate block, and a stream padded
/// out with empty blocks is stopped by the timeout, which covers the whole body.
async fn read_body(
    mut resp: reqwest::Response,
    policy: &RetryPolicy,
) -> Result<Vec<u8>, UpstreamError> {
    let max = policy.max_body;
    let raise = "raise max_body for this pipeline if upstream really sends that much";
    let declared = resp.content_length();
    if let Some(len) = declared.filter(|len| *len > max) {
        return Err(UpstreamError::transient(
            "body_too_large",
            format!(
                "answer declares {} in its Content-Length, more than max_body ({}); {raise}",
                bytesize::show(len),
                bytesize::show(max)
            ),
        ));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let cut_off = |e: reqwest::Error| match e.is_timeout() {
        true => UpstreamError::transient(
            "timeout",
            format!(
                "the answer did not end within the timeout ({:?})",
                policy.timeout
            ),
        ),
        false => network_error(e),
    };
    while let Some(chunk) = resp.chunk().await.map_err(cut_off)? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(UpstreamError::transient(
                "body_too_large",
                format!(
                    "answer is larger than max_body ({}); {raise}",
                    bytesize::show(max)
                ),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A 3xx answer is fatal: nothing is sent where it points. The error names the status and the
/// target's host (and port) only — never the `Location` itself, which may carry our own query
/// string, key included, back to us.
fn redirect_error(
    status: reqwest::StatusCode,
    from: &Url,
    location: Option<&reqwest::header::HeaderValue>,
) -> UpstreamError {
    let target = location
        .and_then(|l| l.to_str().ok())
        .and_then(|l| from.join(l).ok())
        .and_then(|to| {
            let host = to.host_str()?.to_string();
            Some(match to.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        });
    let message = match target {
        Some(host) => format!(
            "HTTP {} redirects to host {host}; redirects are not followed (the request and its key would go with it)",
            status.as_u16()
        ),
        None => format!(
            "HTTP {} redirects to a location that cannot be read; redirects are not followed",
            status.as_u16()
        ),
    };
    UpstreamError::fatal("redirect", message)
}

/// An HTTP 4xx (429 aside) is fatal whatever its body says — an HTML login page is not worth
/// asking again. The source's own fatal code is kept when it recognised one in the body
/// (miaoyouquan documents 401, 403 and 405 there); anything else is `HTTP <status>`.
fn client_error(status: reqwest::StatusCode, parsed: Result<(), UpstreamError>) -> UpstreamError {
    match parsed {
        Err(own @ UpstreamError::Fatal { .. }) => own,
        _ => UpstreamError::fatal(
            format!("HTTP {}", status.as_u16()),
            status.canonical_reason().unwrap_or("client error"),
        ),
    }
}

/// reqwest errors print the URL (with its query string): strip it before anything sees the text.
fn network_error(e: reqwest::Error) -> UpstreamError {
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "network"
    };
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    UpstreamError::transient(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn a_redirect_names_its_status_and_target_host_only() {
        let from = Url::parse("http://api.example.cn/douke/csj_ordersearch?vekey=K").unwrap();
        let location = |l: &str| reqwest::header::HeaderValue::from_str(l).unwrap();
        let e = redirect_error(
            reqwest::StatusCode::FOUND,
            &from,
            Some(&location(
                "http://user:pw@10.1.2.3:8080/steal?vekey=K&size=50",
            )),
        );
        assert_eq!(e.code(), "redirect");
        let shown = e.to_string();
        assert!(
            shown.contains("HTTP 302") && shown.contains("host 10.1.2.3:8080"),
            "{shown}"
        );
        for hidden in ["vekey", "K&", "steal", "user", "pw"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        // A relative Location stays on the same host; none at all is still fatal.
        let e = redirect_error(
            reqwest::StatusCode::MOVED_PERMANENTLY,
            &from,
            Some(&location("/elsewhere?vekey=K")),
        );
        assert!(e.to_string().contains("host api.example.cn;"), "{e}");
        let e = redirect_error(reqwest::StatusCode::TEMPORARY_REDIRECT, &from, None);
        assert!(matches!(e, UpstreamError::Fatal { .. }) && e.to_string().contains("HTTP 307"));
    }

    #[test]
    fn a_4xx_is_fatal_whatever_its_body_and_keeps_a_fatal_code_the_source_read() {
        let unauthorized = reqwest::StatusCode::UNAUTHORIZED;
        let own = UpstreamError::fatal("401", "IP没有添加白名单");
        assert_eq!(client_error(unauthorized, Err(own.clone())), own);
        for parsed in [
            Err(UpstreamError::transient(
                "malformed",
                "HTTP 401 body is not JSON",
            )),
            Err(UpstreamError::RateLimited {
                code: "10009".into(),
                message: "limited".into(),
                retry_after: None,
            }),
            Ok(()),
        ] {
            assert_eq!(
                client_error(unauthorized, parsed),
                UpstreamError::fatal("HTTP 401", "Unauthorized")
            );
        }
    }

    #[test]
    fn scrubbing_hides_a_secret_in_the_code_as_well_as_the_message() {
        let key = Secret::new("K3y-echoed");
        let r = Redactor::new([&key]);
        for e in [
            UpstreamError::fatal("K3y-echoed", "bad key K3y-echoed"),
            UpstreamError::transient("x K3y-echoed", "K3y-echoed"),
            UpstreamError::RateLimited {
                code: "K3y-echoed".into(),
                message: "slow down, K3y-echoed".into(),
                retry_after: Some(Duration::from_secs(3)),
            },
        ] {
            let shown = e.scrubbed(&r);
            assert!(
                !format!("{shown} {shown:?}").contains("K3y-echoed"),
                "{shown:?}"
            );
            assert!(shown.code().contains("***"), "{shown:?}");
        }
    }
}
