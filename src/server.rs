//! The daemon's HTTP server (the status page `/`, `/api/status`, `/metrics`, `/healthz`): our own
//! accept loop over hyper, so that no client can hold the server, or the process's file
//! descriptors, by connecting and then sending nothing or half a request. The descriptors matter
//! beyond this server: SQLite and the upstream clients of the same process need them.
//!
//! What it keeps, with the figures of [`Limits::DAEMON`]:
//! - A request's headers must arrive within `header_read_timeout` of the connection opening or of
//!   the previous response; hyper closes the connection otherwise (this also ends idle keep-alive
//!   connections). A request's headers may take at most `max_header_bytes`.
//! - At most `max_connections` connections are open. A client that comes at the cap makes the
//!   server close the *oldest connection with no request in flight* (connected and silent, half a
//!   request sent, or idle between keep-alive requests): so a new scraper is served even while
//!   idle clients fill the cap — refusing new clients instead would let idle ones lock every
//!   scraper out — and a request in flight is never cut off. When every connection has a request
//!   in flight, the new client waits, accepted, until one of them ends. A request is in flight
//!   from the moment hyper hands it over until hyper has taken all of its response body.
//! - An accept error never ends the loop or makes it spin: one client's (reset, aborted) is
//!   skipped; the process's (out of descriptors, of memory) is logged at most once a minute and
//!   followed by a short pause.
//! - On `stop` it stops accepting, closes the connections with no request in flight, lets the
//!   others finish their request (for at most `shutdown_grace`), and returns.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How far a client may push the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// hyper's read buffer per connection, which bounds a request's headers (at least 8 KiB).
    pub max_header_bytes: usize,
    /// How long `stop` waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The daemon's: a local Prometheus sends one short request per scrape and needs a couple of
    /// connections; 64 open connections stay far below the 1024 descriptors a systemd service gets.
    pub const DAEMON: Limits = Limits {
        max_connections: 64,
        header_read_timeout: Duration::from_secs(10),
        max_header_bytes: 16 * 1024,
        shutdown_grace: Duration::from_secs(5),
    };
}

/// The pause after an accept error that is the process's rather than one client's.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about such errors.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` within `limits` until `stop` fires.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    let connections = Arc::new(Connections::default());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    let mut tasks = JoinSet::new();
    let mut accept_errors = AcceptErrors::default();
    let mut next_id: u64 = 0;
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_one_clients(&e) => {
                tracing::debug!(error = %e, "metrics server: a client's connection failed before it was accepted");
                continue;
            }
            Err(e) => {
                accept_errors.note(&e, Instant::now());
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        if !make_room(&connections, limits.max_connections, &stop).await {
            break;
        }
        next_id += 1;
        let conn = connections.open(next_id);
        tasks.spawn(serve_connection(
            builder.clone(),
            stream,
            router.clone(),
            conn,
            connections.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close_all_idle();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::debug!("metrics server: requests still in flight after the grace period; dropped");
    }
}

/// Waits until a new connection fits under `max`: closes the oldest idle connection when at the
/// cap, and when none is idle waits for a request or a connection to end. False when `stop` fires.
async fn make_room(connections: &Connections, max: usize, stop: &CancellationToken) -> bool {
    loop {
        let changed = connections.changed.notified();
        tokio::pin!(changed);
        // Registered before looking, so an end that comes between the look and the wait is seen.
        changed.as_mut().enable();
        if connections.count() < max.max(1) || connections.close_oldest_idle() {
            return true;
        }
        tokio::select! {
            _ = stop.cancelled() => return false,
            _ = changed => {}
        }
    }
}

async fn serve_connection(
    builder: http1::Builder,
    stream: TcpStream,
    router: Router,
    conn: Arc<Conn>,
    connections: Arc<Connections>,
    stop: CancellationToken,
) {
    let app = TowerToHyperService::new(router);
    let service = {
        let (conn, connections) = (conn.clone(), connections.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_flight = conn.begin(&connections);
            let app = app.clone();
            async move {
                let Some(in_flight) = in_flight else {
                    // Chosen to be closed just as this request arrived: it is dropped with the
                    // connection, as if it had come a moment later.
                    return Ok::<_, Infallible>(closing());
                };
                let response = match app.call(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok(response.map(|body| TrackedBody {
                    inner: body,
                    _in_flight: Some(in_flight),
                }))
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "metrics server: connection ended");
                }
                break;
            }
            // Chosen to make room (or at stop) while no request was in flight: dropping the
            // connection closes its socket and cuts nothing off.
            _ = conn.close.cancelled() => break,
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    connections.ended(conn.id);
}

/// The answer to a request that arrived on a connection already chosen to be closed.
fn closing() -> Response<TrackedBody> {
    let mut response = Response::new(TrackedBody {
        inner: Body::from("closing\n"),
        _in_flight: None,
    });
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// The open connections by accept order, oldest first.
#[derive(Default)]
struct Connections {
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
    /// Notified when a connection ends or its last request in flight does: room may have appeared.
    changed: Notify,
}

/// One open connection.
struct Conn {
    id: u64,
    /// Requests in flight, or [`CLOSING`] once the connection has been chosen to be closed.
    in_flight: AtomicUsize,
    /// Fired to make the connection's task drop it.
    close: CancellationToken,
}

const CLOSING: usize = usize::MAX;

impl Connections {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // The map stays consistent whatever panicked while holding it: every change is one call.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open(&self, id: u64) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id,
            in_flight: AtomicUsize::new(0),
            close: CancellationToken::new(),
        });
        self.lock().insert(id, conn.clone());
        conn
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    fn ended(&self, id: u64) {
        self.lock().remove(&id);
        self.changed.notify_waiters();
    }

    /// Closes the oldest connection with no request in flight; false when every one has one.
    fn close_oldest_idle(&self) -> bool {
        let mut open = self.lock();
        let Some(id) = open.values().find(|c| c.try_close()).map(|c| c.id) else {
            return false;
        };
        open.remove(&id);
        true
    }

    fn close_all_idle(&self) {
        self.lock().retain(|_, c| !c.try_close());
    }
}

impl Conn {
    /// Marks it closing and tells its task, if no request is in flight; in one step, so a request
    /// can never begin on a connection being closed.
    fn try_close(&self) -> bool {
        let idle = self
            .in_flight
            .compare_exchange(0, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if idle {
            self.close.cancel();
        }
        idle
    }

    /// A request begins; `None` when the connection is already closing.
    fn begin(self: &Arc<Self>, connections: &Arc<Connections>) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n != CLOSING).then_some(n + 1)
            })
            .ok()?;
        Some(InFlight {
            conn: self.clone(),
            connections: connections.clone(),
        })
    }
}

/// A request in flight on its connection, until dropped.
struct InFlight {
    conn: Arc<Conn>,
    connections: Arc<Connections>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.connections.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request in flight until hyper has taken all of it (or dropped
/// it with the connection).
struct TrackedBody {
    inner: Body,
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an accept error is one client's (it gave up or was reset before we took it), not the
/// process's: the next accept may well succeed at once.
fn is_one_clients(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// The process's accept errors (no descriptors, no memory): the first is logged, then at most one
/// line per [`ACCEPT_ERROR_LOG_EVERY`] with the count since the last.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    since_logged: u64,
}

impl AcceptErrors {
    /// Counts one; true when it was logged.
    fn note(&mut self, e: &std::io::Error, now: Instant) -> bool {
        self.since_logged += 1;
        let due = self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_ERROR_LOG_EVERY);
        if due {
            tracing::warn!(
                error = %e,
                failures = self.since_logged,
                "metrics server cannot accept connections; pausing briefly between tries"
            );
            self.last_logged = Some(now);
            self.since_logged = 0;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Semaphore;

    /// `/held` answers only once the test releases it; `entered` counts requests that reached it.
    struct Held {
        entered: Arc<Semaphore>,
        release: Arc<Semaphore>,
    }

    /// A server on a loopback port with `/healthz` and `/held`.
    async fn start(limits: Limits) -> (u16, Held, CancellationToken, tokio::task::JoinHandle<()>) {
        let held = Held {
            entered: Arc::new(Semaphore::new(0)),
            release: Arc::new(Semaphore::new(0)),
        };
        let (entered, release) = (held.entered.clone(), held.release.clone());
        let router = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route(
                "/held",
                get(move || {
                    let (entered, release) = (entered.clone(), release.clone());
                    async move {
                        entered.add_permits(1);
                        if let Ok(permit) = release.acquire().await {
                            permit.forget();
                        }
                        "held\n"
                    }
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, limits, stop.clone()));
        (port, held, stop, server)
    }

    /// A connection whose `/held` request the server is handling.
    async fn busy_connection(port: u16, held: &Held) -> TcpStream {
        let mut s = connect(port).await;
        send(&mut s, "/held").await;
        if let Ok(permit) = held.entered.acquire().await {
            permit.forget();
        }
        s
    }

    fn limits(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 8 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }

    async fn connect(port: u16) -> TcpStream {
        TcpStream::connect(("127.0.0.1", port)).await.unwrap()
    }

    async fn send(s: &mut TcpStream, path: &str) {
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    }

    /// Everything until the server closes (bounded, so a server that never closes fails the test).
    async fn read_all(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the server did not close the connection within 10 s")
            .unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get_text(port: u16, path: &str) -> String {
        let mut s = connect(port).await;
        send(&mut s, path).await;
        read_all(&mut s).await
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room_for_a_new_client() {
        let (port, _held, stop, server) = start(limits(3)).await;
        let mut oldest = connect(port).await;
        let mut half_sent = connect(port).await;
        half_sent.write_all(b"GET /heal").await.unwrap();
        let mut third = connect(port).await;
        let answer = get_text(port, "/healthz").await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
            "{answer:?}"
        );
        assert_eq!(
            read_all(&mut oldest).await,
            "",
            "the oldest idle one is closed"
        );
        // At the cap again: the next oldest, with half a request, goes next.
        let _fourth = connect(port).await;
        let answer = get_text(port, "/healthz").await;
        assert!(answer.ends_with("ok\n"), "{answer:?}");
        assert_eq!(read_all(&mut half_sent).await, "");
        // The third is still open: it answers a request.
        send(&mut third, "/healthz").await;
        assert!(read_all(&mut third).await.ends_with("ok\n"));
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_in_flight_is_never_closed_to_make_room() {
        let (port, held, stop, server) = start(limits(2)).await;
        let mut busy = busy_connection(port, &held).await;
        let mut idle = connect(port).await;
        // At the cap: the busy connection is the oldest, the idle one is closed instead.
        let answer = get_text(port, "/healthz").await;
        assert!(answer.ends_with("ok\n"), "{answer:?}");
        assert_eq!(read_all(&mut idle).await, "");
        held.release.add_permits(1);
        let answer = read_all(&mut busy).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("held\n"),
            "{answer:?}"
        );
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn with_every_connection_busy_a_new_client_is_served_once_one_ends() {
        let (port, held, stop, server) = start(limits(1)).await;
        let mut busy = busy_connection(port, &held).await;
        let waiting = tokio::spawn(async move { get_text(port, "/healthz").await });
        held.release.add_permits(1);
        assert!(read_all(&mut busy).await.ends_with("held\n"));
        let answer = waiting.await.unwrap();
        assert!(answer.ends_with("ok\n"), "{answer:?}");
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_whose_request_headers_do_not_arrive_in_time_is_closed() {
        let (port, _held, stop, server) = start(Limits {
            header_read_timeout: Duration::from_millis(200),
            ..limits(4)
        })
        .await;
        let mut half_sent = connect(port).await;
        half_sent
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: t")
            .await
            .unwrap();
        assert_eq!(read_all(&mut half_sent).await, "");
        let mut silent = connect(port).await;
        assert_eq!(read_all(&mut silent).await, "");
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn stop_closes_idle_connections_finishes_requests_in_flight_and_returns() {
        let (port, held, stop, server) = start(limits(4)).await;
        let mut idle = connect(port).await;
        idle.write_all(b"GET /hea").await.unwrap();
        let mut busy = busy_connection(port, &held).await;
        stop.cancel();
        assert_eq!(read_all(&mut idle).await, "");
        held.release.add_permits(1);
        assert!(read_all(&mut busy).await.ends_with("held\n"));
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returns after stop")
            .unwrap();
        assert!(
            TcpStream::connect(("127.0.0.1", port)).await.is_err(),
            "still listening after stop"
        );
    }

    #[test]
    fn process_accept_errors_are_logged_once_a_minute() {
        let mut errors = AcceptErrors::default();
        let emfile = std::io::Error::from_raw_os_error(24);
        let t0 = Instant::now();
        assert!(errors.note(&emfile, t0));
        assert!(!errors.note(&emfile, t0 + Duration::from_secs(1)));
        assert!(!errors.note(&emfile, t0 + Duration::from_secs(59)));
        assert!(errors.note(&emfile, t0 + Duration::from_secs(60)));
        assert!(!is_one_clients(&emfile));
        assert!(!is_one_clients(&std::io::Error::from_raw_os_error(23)));
        assert!(is_one_clients(&std::io::Error::from(
            std::io::ErrorKind::ConnectionAborted
        )));
    }
}
