//! The HTTP plumbing every simulator shares: bind-then-serve on the current runtime, request
//! parameters from the query string and a form body, and JSON answers.
//!
//! Invariants: the listener is bound before [`serve`] returns, so a client started afterwards never
//! races the server; dropping the [`Server`] stops it; and every request that reaches the server
//! is handled (so counted by its simulator), whether or not its client still waits for the answer.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::task::JoinHandle;

/// A running server task; aborted on drop.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` now, then serves `router` over HTTP/1 on a task of the current tokio runtime.
///
/// Connections are half-closable: a request read only after its client stopped sending (a client
/// that gave up on its timeout while the server, loaded, had not read it yet) is still handled —
/// and counted by the handler — as an upstream's application server would. hyper's default, which
/// `axum::serve` keeps, drops such a request unhandled when it finds the end of the stream right
/// behind it on a connection it was already reading, so a request the client sent (and counted)
/// went uncounted here.
pub(crate) async fn serve(router: Router, addr: SocketAddr) -> std::io::Result<Server> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.half_close(true);
        // Serving only ends when the task is aborted.
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // One client's failed handshake, or the process out of descriptors: never spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let connection = http1.serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(router.clone()),
            );
            // A connection's end, however it comes (the client gone, a reset), is its own affair.
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    Ok(Server { addr, task })
}

/// A request's parameters: the query string, then (for a form POST) the body; a later value of
/// the same name wins, as in PHP. Decoding is lossy, never failing.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn new(query: Option<&str>, headers: &HeaderMap, body: &Bytes) -> Params {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/x-www-form-urlencoded"));
        if is_form {
            pairs.extend(
                form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())),
            );
        }
        Params(pairs)
    }

    /// The last value of `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of `name`, treating an empty value as absent (as PHP's `empty()` would).
    pub(crate) fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.trim().is_empty())
    }

    /// Every parameter name once, sorted by its bytes, with its last value (what [`Params::get`]
    /// gives): what a TOP signature is computed over.
    pub(crate) fn sorted(&self) -> std::collections::BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// `k=v&…` for a violation line, leaving out the parameters named in `hide` (secrets).
    pub(crate) fn echo(&self, hide: &[&str]) -> String {
        self.0
            .iter()
            .filter(|(k, _)| !hide.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// An HTTP 200 answer with a JSON body.
pub(crate) fn json(body: Vec<u8>) -> Response {
    json_with_status(StatusCode::OK, body)
}

/// An answer with the given status and a JSON body.
pub(crate) fn json_with_status(status: StatusCode, body: Vec<u8>) -> Response {
    with_type(status, "application/json; charset=utf-8", body)
}

/// An answer with the given status, content type and body (Content-Length set from the body).
pub(crate) fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
