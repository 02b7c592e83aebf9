//! The accept loop every listener of the stack runs (functions and the embedded gateway alike), with the bounds a
//! flood of idle or slow clients needs and that `axum::serve` cannot set:
//!
//! - a **header timeout**: a connection that has not sent a request's headers within it is closed. hyper restarts
//!   the same timer after every answer, so it also bounds how long a keep-alive connection may sit idle;
//! - a **connection cap**: at most `max_connections` are open. A new connection over the cap closes the oldest idle
//!   one (no request in flight: an idle keep-alive, or a client that has not finished its headers), as nginx reuses
//!   its idle connections; when every connection is busy, accepting waits (the kernel's backlog holds the rest);
//! - a **body deadline**: a request's whole body must arrive within `body_timeout` of its headers, or the answer is
//!   408 (a per-read timeout would let a client trickle one byte at a time for ever).
//!
//! Per request this costs two atomic stores and no allocation: the deadline's timer is only made when a body is not
//! already in hand, and the 408 flag lives in the connection's state, which HTTP/1 uses for one request at a time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::Service as _;

use crate::error::ErrorResponse;

/// Bounds on the connections one listener keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's headers, and how long a keep-alive connection may stay idle.
    pub header_timeout: Duration,
    /// How long a request's whole body may take to arrive after its headers; zero means no limit.
    pub body_timeout: Duration,
    /// Connections open at once (at least 1).
    pub max_connections: usize,
}

/// Headers within 10 s, as the OpenFaaS watchdog's default read timeout.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Well under the usual 20,000-descriptor limit, leaving room for the function's own outgoing connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: Duration::from_secs(60),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// One open connection, as the accept loop and the connection's requests see it.
struct Connection {
    /// Set while a request is being answered: a busy connection is not closed to make room.
    busy: AtomicBool,
    /// Set once it was asked to close (to make room, or on shutdown), so it is asked only once.
    closing: AtomicBool,
    /// Set when the current request's body missed its deadline: the answer becomes 408.
    body_late: AtomicBool,
    close: Notify,
}

/// Every open connection, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// Notified when the last connection closes.
    empty: Notify,
}

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Connection>>> {
        self.open.lock().expect("connection registry lock")
    }

    fn add(&self) -> (u64, Arc<Connection>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            busy: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            body_late: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.open().insert(id, connection.clone());
        (id, connection)
    }

    fn remove(&self, id: u64) {
        let mut open = self.open();
        open.remove(&id);
        if open.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// Asks the oldest idle connection to close; `false` when every connection is busy or already closing.
    fn close_oldest_idle(&self) -> bool {
        let open = self.open();
        let idle = open.values().find(|c| !c.busy.load(Ordering::Acquire) && !c.closing.load(Ordering::Acquire));
        idle.is_some_and(|connection| {
            connection.closing.store(true, Ordering::Release);
            connection.close.notify_one();
            true
        })
    }

    /// Asks every connection to finish what it is answering and close.
    fn close_all(&self) {
        for connection in self.open().values() {
            connection.closing.store(true, Ordering::Release);
            connection.close.notify_one();
        }
    }

    fn is_empty(&self) -> bool {
        self.open().is_empty()
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes, then lets every connection finish the
/// request it is answering and waits for them to close.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset before it was accepted: the listener itself is fine.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(slot) = make_room(&registry, &slots, &mut shutdown).await else { break };
        let (id, connection) = registry.add();
        let app = app.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            serve_connection(stream, app, connection, limits).await;
            registry.remove(id);
            drop(slot);
        });
    }
    drop(listener);
    registry.close_all();
    while !registry.is_empty() {
        let emptied = registry.empty.notified();
        if registry.is_empty() {
            break;
        }
        // A connection may close between the check and the wait: look again now and then.
        let _ = tokio::time::timeout(Duration::from_millis(100), emptied).await;
    }
    Ok(())
}

/// A slot for one more connection: at once under the cap; otherwise the oldest idle connection is closed to make
/// room, or, when all are busy, this waits for one to close. `None` when the server is shutting down.
async fn make_room(
    registry: &Registry,
    slots: &Arc<Semaphore>,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        registry.close_oldest_idle();
        tokio::select! {
            () = shutdown.as_mut() => return None,
            slot = slots.clone().acquire_owned() => return slot.ok(),
            // A busy connection may have become idle meanwhile: try again.
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Serves one connection until the client closes it, a timeout closes it, or it is asked to close.
async fn serve_connection(stream: TcpStream, app: Router, connection: Arc<Connection>, limits: ConnectionLimits) {
    let _ = stream.set_nodelay(true);
    let service = ConnectionService { app, connection: connection.clone(), body_timeout: limits.body_timeout };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let serving = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(serving);
    tokio::select! {
        _ = serving.as_mut() => return,
        () = connection.close.notified() => {}
    }
    // Idle: closes at once; answering: finishes this answer, then closes.
    serving.as_mut().graceful_shutdown();
    let _ = serving.await;
}

/// Hands a connection's requests to the router, marking the connection busy and bounding the body's arrival.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    connection: Arc<Connection>,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        self.connection.busy.store(true, Ordering::Release);
        let deadline = (!self.body_timeout.is_zero()).then(|| Instant::now() + self.body_timeout);
        let connection = self.connection.clone();
        let request = request.map(|body| match deadline {
            Some(deadline) => Body::new(DeadlineBody { inner: body, deadline, timer: None, connection }),
            None => Body::new(body),
        });
        Answer { inner: self.app.clone().call(request), connection: self.connection.clone() }
    }
}

pin_project_lite::pin_project! {
    /// The router's answer; a 408 instead when the request's body missed its deadline.
    struct Answer {
        #[pin]
        inner: RouteFuture<std::convert::Infallible>,
        connection: Arc<Connection>,
    }
}

impl Future for Answer {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        this.connection.busy.store(false, Ordering::Release);
        if !this.connection.body_late.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Ok(response));
        }
        let mut late =
            ErrorResponse::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time").into_response();
        // The rest of the body is still on its way: this connection cannot carry another request.
        late.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        Poll::Ready(Ok(late))
    }
}

/// Why a body stopped: its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// A request body that must be complete by `deadline`.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made the first time the body is not ready, so bodies that come with their headers cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    connection: Arc<Connection>,
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        this.connection.body_late.store(true, Ordering::Release);
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
