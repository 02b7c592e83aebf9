//! The accept loop every listener of the stack runs (functions and the embedded gateway alike), with the bounds a
//! flood of idle or slow clients needs and that `axum::serve` cannot set:
//!
//! - a **header timeout**: a connection that has not sent a request's headers within it is closed. hyper restarts
//!   the same timer after every answer, so it also bounds how long a keep-alive connection may sit idle;
//! - a **connection cap**: at most `max_connections` are open. A new connection over the cap takes the slot of the
//!   oldest one with no request in hand: first those waiting for a head (an idle keep-alive, a client that has not
//!   finished its headers), then those whose body is still arriving. That connection is dropped, not shut down
//!   gracefully (which would wait out its header or body timeout), so the accept loop never waits on a slow
//!   client. A connection is safe for its first [`NEW_CONNECTION_GRACE`], so a burst cannot close one whose head
//!   is in but not yet read; accepting waits only for that, or when every connection is answering (the kernel's
//!   backlog holds the rest);
//! - a **body deadline**: a request's whole body must arrive within `body_timeout` of its headers, or the answer is
//!   408 (a per-read timeout would let a client trickle one byte at a time for ever);
//! - a **head buffer bound** ([`MAX_HEAD_BYTES`]), so thousands of trickled heads cost little memory each.
//!
//! Per request this costs a few atomic stores and one small allocation (the answer's body wrapper): the deadline's
//! timer is only made when a body is not already in hand, and the phase and the 408 flag live in the connection's
//! state, which HTTP/1 uses for one request at a time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
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

/// Where a connection is in its current exchange; only [`Phase::Answering`] is never cut to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Waiting for a request's head: a new connection, a keep-alive between requests, or a client still sending
    /// its headers. Nothing of a request is in hand, so dropping the connection loses nothing.
    Waiting = 0,
    /// The head is in and the body is still arriving: the handler cannot have acted on a request it has not had.
    Receiving = 1,
    /// The body is complete (or was never read): the handler is working, or its answer is being written.
    Answering = 2,
}

/// Why a connection was asked to close.
const CLOSE_NONE: u8 = 0;
/// To make room for a new one: dropped at once unless it is answering.
const CLOSE_FOR_ROOM: u8 = 1;
/// The server is stopping: dropped at once only while waiting; a request already under way is finished.
const CLOSE_FOR_SHUTDOWN: u8 = 2;

/// One open connection, as the accept loop and the connection's requests see it.
struct Connection {
    /// A [`Phase`], written only by the connection's own task.
    phase: AtomicU8,
    /// Why it was asked to close (`CLOSE_*`), set once, so it is asked only once.
    closing: AtomicU8,
    /// Set when the current request's body missed its deadline: the answer becomes 408.
    body_late: AtomicBool,
    close: Notify,
    /// When it was accepted: a connection younger than [`NEW_CONNECTION_GRACE`] is not closed to make room.
    opened: Instant,
    /// Its slot under the cap. Taken by whoever closes it to make room, so the new connection gets the slot at
    /// once instead of after the old one's task has run; otherwise given back when the task ends.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Connection {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Waiting,
            1 => Phase::Receiving,
            _ => Phase::Answering,
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Marks it closing for `reason`; `false` when it already was.
    fn ask_to_close(&self, reason: u8) -> bool {
        let asked = self.closing.compare_exchange(CLOSE_NONE, reason, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if asked {
            self.close.notify_one();
        }
        asked
    }
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

    fn add(&self, slot: OwnedSemaphorePermit) -> (u64, Arc<Connection>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            phase: AtomicU8::new(Phase::Waiting as u8),
            closing: AtomicU8::new(CLOSE_NONE),
            body_late: AtomicBool::new(false),
            close: Notify::new(),
            opened: Instant::now(),
            slot: Mutex::new(Some(slot)),
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

    /// Closes the oldest connection waiting for a request's head, else the oldest still receiving a body, and
    /// hands over its slot. `None` when every connection is answering, already closing or too new to judge.
    fn close_oldest_idle(&self) -> Option<OwnedSemaphorePermit> {
        let open = self.open();
        let settled = Instant::now().checked_sub(NEW_CONNECTION_GRACE);
        let open_in = |phase: Phase| {
            open.values()
                .find(|c| c.closing.load(Ordering::Acquire) == CLOSE_NONE && c.phase() == phase)
                .filter(|c| settled.is_some_and(|settled| c.opened <= settled))
        };
        let oldest = open_in(Phase::Waiting).or_else(|| open_in(Phase::Receiving))?;
        oldest.ask_to_close(CLOSE_FOR_ROOM);
        let slot = oldest.slot.lock().expect("connection slot lock").take();
        slot
    }

    /// Asks every connection to finish what it is answering and close.
    fn close_all(&self) {
        for connection in self.open().values() {
            connection.ask_to_close(CLOSE_FOR_SHUTDOWN);
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
        let (id, connection) = registry.add(slot);
        let app = app.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            serve_connection(stream, app, &connection, limits).await;
            registry.remove(id);
            drop(connection.slot.lock().expect("connection slot lock").take());
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

/// A slot for one more connection: at once under the cap; otherwise the slot of the oldest connection that has
/// no request in hand (see [`Registry::close_oldest_idle`]), taken without waiting for it to close; or, when all
/// are answering, the first slot given back. `None` when the server is shutting down.
async fn make_room(
    registry: &Registry,
    slots: &Arc<Semaphore>,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        if let Some(slot) = registry.close_oldest_idle() {
            return Some(slot);
        }
        tokio::select! {
            () = shutdown.as_mut() => return None,
            slot = slots.clone().acquire_owned() => return slot.ok(),
            // An answering connection may have finished meanwhile: look again.
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// How long a new connection is safe from being closed to make room: time for its task to read the head a
/// prompt client sent with the connection. Without it, a burst of a thousand new connections could close one
/// whose head had arrived but not been read yet; with it, a burst makes accepting wait at most this long.
const NEW_CONNECTION_GRACE: Duration = Duration::from_millis(100);

/// The most a connection buffers of a request's head (hyper's default is 400 KiB): with thousands of clients
/// trickling headers, this bounds what each can make the server hold. Larger heads are refused (431).
const MAX_HEAD_BYTES: usize = 32 << 10;

/// Serves one connection until the client closes it, a timeout closes it, or it is asked to close.
async fn serve_connection(stream: TcpStream, app: Router, connection: &Arc<Connection>, limits: ConnectionLimits) {
    let _ = stream.set_nodelay(true);
    let service = ConnectionService { app, connection: connection.clone(), body_timeout: limits.body_timeout };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEAD_BYTES);
    let serving = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(serving);
    tokio::select! {
        _ = serving.as_mut() => return,
        () = connection.close.notified() => {}
    }
    // The phase only changes while `serving` is polled, in this task: what is read here holds until it returns.
    // A connection with no request in hand is dropped, not shut down gracefully: hyper's graceful shutdown waits
    // for a half-sent head until the header timeout, and the slot with it.
    // One closed to make room that started answering in between finishes its answer: its slot was handed over
    // already, so the cap is exceeded by it until then (rare, and bounded by the connections being closed).
    match (connection.phase(), connection.closing.load(Ordering::Acquire)) {
        (Phase::Answering, _) | (Phase::Receiving, CLOSE_FOR_SHUTDOWN) => {
            serving.as_mut().graceful_shutdown();
            let _ = serving.await;
        }
        _ => {}
    }
}

/// Hands a connection's requests to the router, tracking the connection's [`Phase`] and bounding the body's
/// arrival.
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
        let complete = hyper::body::Body::is_end_stream(request.body());
        self.connection.set_phase(if complete { Phase::Answering } else { Phase::Receiving });
        let deadline = (!self.body_timeout.is_zero()).then(|| Instant::now() + self.body_timeout);
        let connection = self.connection.clone();
        let request = request.map(|body| Body::new(TrackedBody { inner: body, deadline, timer: None, connection }));
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
        // Answered, perhaps without reading the whole body: the answer is being written until its body is done.
        this.connection.set_phase(Phase::Answering);
        let connection = this.connection.clone();
        if !this.connection.body_late.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Ok(response.map(|body| Body::new(AnswerBody { inner: body, connection }))));
        }
        let mut late =
            ErrorResponse::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time").into_response();
        // The rest of the body is still on its way: this connection cannot carry another request.
        late.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        Poll::Ready(Ok(late.map(|body| Body::new(AnswerBody { inner: body, connection }))))
    }
}

pin_project_lite::pin_project! {
    /// An answer's body: once hyper has written it and let it go, the connection waits for its next request.
    struct AnswerBody {
        #[pin]
        inner: Body,
        connection: Arc<Connection>,
    }

    impl PinnedDrop for AnswerBody {
        fn drop(this: Pin<&mut Self>) {
            this.connection.set_phase(Phase::Waiting);
        }
    }
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a body stopped: its deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// A request body that must be complete by `deadline` (when there is one); once it is, the connection is
/// answering.
struct TrackedBody {
    inner: Incoming,
    deadline: Option<Instant>,
    /// Made the first time the body is not ready, so bodies that come with their headers cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    connection: Arc<Connection>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() || this.inner.is_end_stream() {
                this.connection.set_phase(Phase::Answering);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let Some(deadline) = this.deadline else { return Poll::Pending };
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
