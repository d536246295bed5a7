//! The connection pool for plain-HTTP (HTTP/1.1) upstreams.
//!
//! hyper-util's pooled client does more per request than a proxy needs: it hashes the pool key
//! (scheme and authority, byte by byte with SipHash) at checkout and again at check-in, races
//! the checkout against a new connect, and spawns a task per request to return the connection.
//! Here a request takes the newest idle connection for its authority from one map and hands it
//! back when its response body ends: about 10 % fewer instructions per proxied request
//! (callgrind, `benches/README.md`).
//!
//! A connection has no task of its own: its I/O (hyper's `http1::Connection` future, the
//! *driver*) is polled by the request that holds it, from the request's own task — while the
//! response head is awaited ([`Http1Send`]) and while the body is read ([`PooledBody`]). The
//! upstream socket then wakes the task that wants its bytes, as HAProxy's stream does, instead
//! of waking a connection task that wakes the request's task in turn. The response promise and
//! body channel are filled only by that driver, so they are polled with a waker that does
//! nothing: only the sockets (and a request body) wake the task.
//!
//! Idle connections are not polled, so one the upstream closed is noticed, and skipped without
//! sending anything on it, when it is next checked out; a reaper closes connections idle past
//! the timeout. `https` upstreams still use hyper-util (TLS and ALPN).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::client::{is_request_body_failure, UpstreamError};

/// Where and how long idle connections are kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) connect_timeout: Duration,
    pub(crate) tcp_keepalive: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle_per_host: usize,
}

/// Idle HTTP/1.1 connections to plain-HTTP upstreams, by authority.
#[derive(Debug)]
pub(crate) struct Http1Pool {
    idle: Mutex<IdleMap>,
    settings: PoolSettings,
    /// The idle reaper is spawned by the first check-in (inside the runtime).
    reaper_started: std::sync::atomic::AtomicBool,
}

/// Keyed by `pool_key`: `Authority`'s own `Hash` feeds the hasher one lowercased byte at a
/// time, which cost ~200 instructions per lookup, twice per request.
type IdleMap = HashMap<Box<str>, VecDeque<Idle>, foldhash::fast::RandomState>;

/// The idle map's key for `authority`: its text in lower case, as authorities compare without
/// regard to ASCII case; borrowed when it already is, as nearly every one is.
fn pool_key(authority: &Authority) -> Cow<'_, str> {
    let text = authority.as_str();
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// One upstream connection: the handle requests are sent on, and its I/O, driven by whoever
/// holds it.
pub(crate) struct Conn {
    sender: http1::SendRequest<ProxyBody>,
    /// hyper's connection future: writes what was handed to the connection and reads what
    /// arrives, when polled. `None` once it has ended (closed or failed); ending, it has
    /// answered whatever request was pending on it. Boxed: a `Conn` moves half a dozen times
    /// per request (idle list, send future, response body), and inline the driver's 680
    /// bytes were copied at each move.
    driver: Option<Pin<Box<Driver>>>,
    /// Where it goes, its key in the idle map. Moved along with the connection from checkout
    /// to check-in, so a response body needs no clone of it (two atomic operations).
    authority: Authority,
}

type Driver = http1::Connection<TokioIo<crate::SendStream>, ProxyBody>;

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("authority", &self.authority)
            .field("open", &self.driver.is_some())
            .finish()
    }
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    since: Instant,
}

impl Conn {
    /// Does the connection's pending I/O, registering `cx`'s waker for what it then waits on
    /// (the socket, a request body).
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(driver) = &mut self.driver {
            if driver.as_mut().poll(cx).is_ready() {
                self.driver = None;
            }
        }
    }

    /// Drives it with a waker that does nothing, for a connection about to go idle: the next
    /// user drives it again. (Until then its socket keeps the last user's waker, which only
    /// the upstream's close of an idle connection would wake, once; the next request is
    /// handed over without waking it, `try_send_request_to_driver`.)
    fn settle(&mut self) {
        self.drive(&mut quiet());
    }

    /// Drives the connection until it can take another request (`Err`: it closed).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.drive(cx);
        self.sender.poll_ready(cx)
    }

    /// Not closed: can carry another request once the previous exchange has finished.
    fn reusable(&self) -> bool {
        self.driver.is_some() && !self.sender.is_closed()
    }

    /// Drives the connection, then looks for the response to the request handed to it.
    fn poll_response(
        &mut self,
        response: &mut http1::ResponsePromise<ProxyBody>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ProxyBody>>>>
    {
        self.drive(cx);
        // Only the driver answers the promise, and it was just polled: no waker needed.
        Pin::new(response).poll(&mut quiet())
    }
}

/// A context whose waker does nothing, for what only this task's own driving can make ready.
fn quiet() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

/// What became of a request sent on one connection.
enum Sent {
    Response(Response<PooledBody>),
    /// The connection was closed before the request was written: nothing reached the
    /// upstream, so the request may go on another connection.
    Unsent(Request<ProxyBody>),
    Failed(hyper::Error),
}

impl Http1Pool {
    pub(crate) fn new(settings: PoolSettings) -> Arc<Self> {
        Arc::new(Http1Pool {
            idle: Mutex::new(HashMap::default()),
            settings,
            reaper_started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sends `request`, already in origin form (its URI is the path and query), to `authority`
    /// on an idle connection if one still works, else on a new one.
    ///
    /// With an idle connection at hand (nearly always, once warm) the request is handed to it
    /// now, before the returned future is first polled, and that future only waits for the
    /// response: 72 bytes with the client's wrapper, where layers of `async fn`s moved the
    /// ~250-byte request and their own states at every step (~30 `memcpy`s per proxied
    /// request). Connecting, and resending a request that a closed connection gave back, take
    /// the slow path.
    pub(crate) fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut request: Request<ProxyBody>,
    ) -> Http1Send {
        set_host_if_missing(&mut request, authority);
        while let Some(mut conn) = self.checkout(authority) {
            // Closed while idle: dropped here, so nothing is handed to it.
            if !conn.reusable() {
                continue;
            }
            match conn.sender.try_send_request_to_driver(request) {
                Ok(response) => {
                    return Http1Send::Waiting {
                        response,
                        conn,
                        pool: self.clone(),
                    }
                }
                Err(returned) => request = returned,
            }
        }
        Http1Send::Slow(Box::pin(self.clone().send_slow(authority.clone(), request)))
    }

    /// [`send`](Self::send) when no idle connection took the request: the remaining idle
    /// connections, then a new one.
    async fn send_slow(
        self: Arc<Self>,
        authority: Authority,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        while let Some(conn) = self.checkout(&authority) {
            match self.send_on(conn, request).await {
                Sent::Response(response) => return Ok(response),
                Sent::Unsent(returned) => request = returned,
                Sent::Failed(error) => return Err(classify(error)),
            }
        }
        let conn = self.connect(&authority).await?;
        match self.send_on(conn, request).await {
            Sent::Response(response) => Ok(response),
            Sent::Unsent(_) => Err(UpstreamError::Reset(
                "the new connection closed before the request was sent".into(),
            )),
            Sent::Failed(error) => Err(classify(error)),
        }
    }

    /// Idle connections (all authorities) — for tests and metrics.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdleMap> {
        // A panic while holding the lock leaves only a list of idle connections behind: keep
        // using it rather than failing every request from then on.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently used idle connection that is still open and not past the idle timeout.
    fn checkout(&self, authority: &Authority) -> Option<Conn> {
        let now = Instant::now();
        let key = pool_key(authority);
        let mut idle = self.lock();
        let list = idle.get_mut(&*key)?;
        while let Some(Idle { conn, since }) = list.pop_back() {
            // A connection closed while idle is found (and skipped) by `send_on`'s first poll.
            if now.duration_since(since) < self.settings.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(self: &Arc<Self>, conn: Conn) {
        if !self
            .reaper_started
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            self.start_reaper();
        }
        let now = Instant::now();
        let mut idle = self.lock();
        let Some(list) = idle.get_mut(&*pool_key(&conn.authority)) else {
            let key = pool_key(&conn.authority).into();
            idle.insert(key, VecDeque::from([Idle { conn, since: now }]));
            return;
        };
        // Oldest first: drop what has idled too long, and the oldest beyond the cap.
        while list.front().is_some_and(|oldest| {
            now.duration_since(oldest.since) >= self.settings.idle_timeout
                || list.len() >= self.settings.max_idle_per_host
        }) {
            list.pop_front();
        }
        list.push_back(Idle { conn, since: now });
    }

    /// Closes connections idle past the timeout even when their upstream sees no more
    /// traffic (a removed upstream's connections would otherwise stay open).
    fn start_reaper(self: &Arc<Self>) {
        let pool = Arc::downgrade(self);
        let period = self.settings.idle_timeout / 2;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                pool.sweep();
            }
        });
    }

    fn sweep(&self) {
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        self.lock().retain(|_, list| {
            list.retain_mut(|idle| {
                // Reads what the upstream sent meanwhile: a close ends the driver.
                idle.conn.settle();
                now.duration_since(idle.since) < timeout && idle.conn.reusable()
            });
            !list.is_empty()
        });
    }

    async fn connect(&self, authority: &Authority) -> Result<Conn, UpstreamError> {
        let host = authority.host();
        // `Authority::host` keeps an IPv6 literal's brackets; the resolver wants it bare.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.settings.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| {
            UpstreamError::Connect(
                format!(
                    "connecting to {authority} timed out after {:?}",
                    self.settings.connect_timeout
                )
                .into(),
            )
        })?
        .map_err(|error| UpstreamError::Connect(Box::new(error)))?;
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(self.settings.tcp_keepalive);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(crate::SendStream::new(stream)))
            .await
            .map_err(|error| UpstreamError::Connect(Box::new(error)))?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(driver)),
            authority: authority.clone(),
        })
    }

    async fn send_on(self: &Arc<Self>, mut conn: Conn, request: Request<ProxyBody>) -> Sent {
        // A checked-in connection may still be finishing the previous exchange; one that
        // closed meanwhile fails here and the request goes elsewhere, unsent.
        if poll_fn(|cx| conn.poll_ready(cx)).await.is_err() {
            return Sent::Unsent(request);
        }
        let mut response = match conn.sender.try_send_request_to_driver(request) {
            Ok(response) => response,
            Err(request) => return Sent::Unsent(request),
        };
        match poll_fn(|cx| conn.poll_response(&mut response, cx)).await {
            Ok(response) => Sent::Response(self.clone().pooled(response, conn)),
            Err(error) => match given_back(error) {
                Ok(request) => Sent::Unsent(request),
                Err(error) => Sent::Failed(error),
            },
        }
    }

    /// The response from `conn`, whose body hands `conn` back to the pool at its end.
    fn pooled(self: Arc<Self>, response: Response<Incoming>, conn: Conn) -> Response<PooledBody> {
        response.map(|incoming| {
            let mut body = PooledBody {
                incoming,
                conn: Some(conn),
                pool: self,
            };
            if body.incoming.is_end_stream() {
                // HEAD, 204, 304 and `Content-Length: 0`: the server may never poll this
                // body, so hand the connection back now.
                body.release();
            }
            body
        })
    }
}

/// The request a connection gave back because it closed before writing it (nothing reached
/// the upstream), or why the exchange failed.
fn given_back(
    mut error: hyper::client::conn::TrySendError<Request<ProxyBody>>,
) -> Result<Request<ProxyBody>, hyper::Error> {
    error.take_message().ok_or_else(|| error.into_error())
}

/// The response to [`Http1Pool::send`].
pub(crate) enum Http1Send {
    /// The request is with an idle connection, which this future drives until `response`
    /// has come.
    Waiting {
        response: http1::ResponsePromise<ProxyBody>,
        conn: Conn,
        pool: Arc<Http1Pool>,
    },
    /// Connecting, or resending a request an idle connection gave back unsent.
    Slow(Pin<Box<dyn Future<Output = Result<Response<PooledBody>, UpstreamError>> + Send>>),
    Done,
}

impl Future for Http1Send {
    type Output = Result<Response<PooledBody>, UpstreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let answer = match this {
            Http1Send::Waiting { response, conn, .. } => {
                std::task::ready!(conn.poll_response(response, cx))
            }
            Http1Send::Slow(slow) => return slow.as_mut().poll(cx),
            Http1Send::Done => panic!("`Http1Send` polled after completion"),
        };
        // Moved out rather than cloned: the response body takes the connection and the pool.
        let Http1Send::Waiting { conn, pool, .. } = std::mem::replace(this, Http1Send::Done) else {
            unreachable!("matched above")
        };
        match answer {
            Ok(response) => Poll::Ready(Ok(pool.pooled(response, conn))),
            Err(error) => match given_back(error) {
                // The connection closed before writing it: the other idle ones, or a new one.
                Ok(request) => {
                    *this = Http1Send::Slow(Box::pin(pool.send_slow(conn.authority, request)));
                    self.poll(cx)
                }
                Err(error) => Poll::Ready(Err(classify(error))),
            },
        }
    }
}

/// A response body from a pooled connection. At its end the connection goes back to the pool
/// if it can carry another request. Dropped before its end, it closes the connection (the rest
/// of the response is unwanted).
pub struct PooledBody {
    incoming: Incoming,
    conn: Option<Conn>,
    pool: Arc<Http1Pool>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("conn", &self.conn)
            .finish()
    }
}

impl PooledBody {
    /// Hands the connection back once it can carry another request. Usually it already can;
    /// if it is still finishing the exchange (a request body still uploading), a small task
    /// drives it to the end, so a checkout never queues behind another request.
    fn release(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // Usually the poll that read the response's end also saw the exchange through and
        // asked for the next request; if not, one more poll does.
        if !conn.sender.is_ready() {
            conn.settle();
        }
        if conn.sender.is_ready() {
            self.pool.checkin(conn);
        } else if conn.reusable() {
            let pool = self.pool.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if poll_fn(|cx| conn.poll_ready(cx)).await.is_ok() && conn.reusable() {
                        conn.settle();
                        pool.checkin(conn);
                    }
                });
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = match &mut this.conn {
            // Only the driver feeds the body: what it already holds, else drive and look again.
            Some(conn) => match Pin::new(&mut this.incoming).poll_frame(&mut quiet()) {
                Poll::Pending => {
                    conn.drive(cx);
                    Pin::new(&mut this.incoming).poll_frame(&mut quiet())
                }
                ready => ready,
            },
            // Released or failed: nothing drives it any more, so it is at its end.
            None => Pin::new(&mut this.incoming).poll_frame(cx),
        };
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.incoming.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.incoming.is_end_stream() {
            self.release();
        }
    }
}

/// What hyper-util's client does before writing an HTTP/1.1 request: `Host` names the
/// upstream when the request has none (an HTTP/1.0 client's, or one whose `Connection` header
/// named `Host`, removed as hop-by-hop).
fn set_host_if_missing(request: &mut Request<ProxyBody>, authority: &Authority) {
    if !request.headers().contains_key(http::header::HOST) {
        if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(http::header::HOST, host);
        }
    }
}

/// Sorts a hyper error from a pooled connection the way [`UpstreamError`] does.
fn classify(error: hyper::Error) -> UpstreamError {
    if is_request_body_failure(&error) {
        UpstreamError::RequestBody(Box::new(error))
    } else {
        UpstreamError::Reset(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::body::empty_body;

    /// How the scripted upstream ends each exchange.
    #[derive(Clone, Copy)]
    enum After {
        KeepOpen,
        /// Closes the socket right after the response, without saying so in the headers: the
        /// pooled connection is dead by the time it is next used.
        Close,
    }

    /// A raw HTTP/1.1 upstream: answers every request head with `response`, counts the
    /// connections it accepted.
    async fn upstream(response: &'static str, after: After) -> (Authority, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&chunk[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if stream.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            if let After::Close = after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (authority, accepted)
    }

    #[tokio::test]
    async fn requests_go_out_in_origin_form_with_a_host() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut chunk).await.unwrap();
                head.extend_from_slice(&chunk[..n]);
            }
            stream.write_all(HELLO.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let mut without_host = request("GET", &authority);
        without_host.headers_mut().remove("host");
        *without_host.uri_mut() = format!("http://{authority}/spec?x=1").parse().unwrap();
        // Through the client, which takes absolute URIs apart for the pool.
        crate::HttpUpstreamClient::new()
            .send(without_host)
            .await
            .unwrap();
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /spec?x=1 http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {authority}\r\n")), "{head}");
    }

    fn settings() -> PoolSettings {
        PoolSettings {
            connect_timeout: Duration::from_secs(5),
            tcp_keepalive: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_host: 4,
        }
    }

    fn pool() -> Arc<Http1Pool> {
        Http1Pool::new(settings())
    }

    fn request(method: &str, authority: &Authority) -> Request<ProxyBody> {
        Request::builder()
            .method(method)
            .uri("/hello")
            .header("host", authority.as_str())
            .body(empty_body())
            .unwrap()
    }

    async fn get(pool: &Arc<Http1Pool>, authority: &Authority) -> Response<PooledBody> {
        pool.send(authority, request("GET", authority))
            .await
            .unwrap()
    }

    async fn get_text(pool: &Arc<Http1Pool>, authority: &Authority) -> String {
        let response = get(pool, authority).await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    const HELLO: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (authority, accepted) = upstream(HELLO, After::KeepOpen).await;
        let pool = pool();
        for _ in 0..5 {
            assert_eq!(get_text(&pool, &authority).await, "hello");
            assert_eq!(pool.idle_count(), 1, "the connection is back in the pool");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_authority_in_other_case_finds_the_same_connections() {
        let (authority, accepted) = upstream(HELLO, After::KeepOpen).await;
        let port = authority.port_u16().unwrap();
        let lower: Authority = format!("localhost:{port}").parse().unwrap();
        let upper: Authority = format!("LocalHost:{port}").parse().unwrap();
        let pool = pool();
        assert_eq!(get_text(&pool, &upper).await, "hello");
        assert_eq!(get_text(&pool, &lower).await, "hello");
        assert_eq!(get_text(&pool, &upper).await, "hello");
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for both spellings"
        );
    }

    #[tokio::test]
    async fn idle_connections_past_the_timeout_are_closed_without_further_traffic() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let closed = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            stream.write_all(HELLO.as_bytes()).await.unwrap();
            // Returns once the pool closes its idle connection.
            while stream.read(&mut chunk).await.is_ok_and(|n| n > 0) {}
        });
        let pool = Http1Pool::new(PoolSettings {
            idle_timeout: Duration::from_millis(200),
            ..settings()
        });
        assert_eq!(get_text(&pool, &authority).await, "hello");
        tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .expect("the idle connection was closed")
            .unwrap();
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn chunked_bodies_stream_and_the_connection_is_reused() {
        const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                               3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n";
        let (authority, accepted) = upstream(CHUNKED, After::KeepOpen).await;
        let pool = pool();
        assert_eq!(get_text(&pool, &authority).await, "abcdefg");
        assert_eq!(get_text(&pool, &authority).await, "abcdefg");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_skipped() {
        let (authority, accepted) = upstream(HELLO, After::Close).await;
        let pool = pool();
        assert_eq!(get_text(&pool, &authority).await, "hello");
        // Give the upstream's close time to arrive, so checkout sees the EOF.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(get_text(&pool, &authority).await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A request handed to an idle connection that closes before writing it comes back
    /// unwritten, and goes out on a new connection instead of failing.
    #[tokio::test]
    async fn a_request_a_closing_connection_gives_back_goes_out_on_a_new_one() {
        let (authority, accepted) = upstream(HELLO, After::KeepOpen).await;
        let pool = pool();
        // An idle connection that was never driven: ending its driver below, with the
        // request still queued, is what meeting the upstream's close does.
        let stream = TcpStream::connect(authority.as_str()).await.unwrap();
        let (sender, driver) = http1::handshake(TokioIo::new(crate::SendStream::new(stream)))
            .await
            .unwrap();
        pool.checkin(Conn {
            sender,
            driver: Some(Box::pin(driver)),
            authority: authority.clone(),
        });
        let mut send = pool.send(&authority, request("GET", &authority));
        let Http1Send::Waiting { conn, .. } = &mut send else {
            panic!("handed to the idle connection");
        };
        conn.driver = None;
        let response = send.await.expect("resent on a new connection");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// No task of its own reads the connection: the task reading the body must be woken by
    /// the upstream socket when the rest arrives.
    #[tokio::test]
    async fn a_response_body_arriving_in_pieces_wakes_its_reader() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut chunk = [0u8; 1024];
            for _ in 0..2 {
                let _ = stream.read(&mut chunk).await.unwrap();
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                stream.write_all(b"world").await.unwrap();
            }
            // Open until the pool closes it.
            let _ = stream.read(&mut chunk).await;
        });
        let pool = pool();
        for _ in 0..2 {
            // Read from another task than the one that sent, as a server reads a body.
            let response = get(&pool, &authority).await;
            let read = tokio::spawn(async move { response.into_body().collect().await });
            let body = tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .expect("the rest of the body wakes its reader")
                .unwrap()
                .unwrap()
                .to_bytes();
            assert_eq!(&body[..], b"helloworld");
        }
        assert_eq!(pool.idle_count(), 1, "kept for the next request");
    }

    /// A request body the client sends in pieces: the task waiting for the response drives
    /// the upload, woken by the body as each piece comes.
    #[tokio::test]
    async fn a_request_body_sent_in_pieces_reaches_the_upstream() {
        struct Pieces(tokio::sync::mpsc::Receiver<Bytes>);
        impl Body for Pieces {
            type Data = Bytes;
            type Error = crate::BoxError;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, crate::BoxError>>> {
                self.0
                    .poll_recv(cx)
                    .map(|piece| piece.map(|b| Ok(Frame::data(b))))
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 1024];
            while !seen.ends_with(b"0\r\n\r\n") {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the whole body arrives");
                seen.extend_from_slice(&chunk[..n]);
            }
            stream.write_all(HELLO.as_bytes()).await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            tx.send(Bytes::from_static(b"abc")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(Bytes::from_static(b"defg")).await.unwrap();
        });
        let mut post = request("POST", &authority);
        *post.body_mut() = Pieces(rx).boxed();
        let response = tokio::time::timeout(Duration::from_secs(10), pool().send(&authority, post))
            .await
            .expect("each piece wakes the task that uploads it")
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello");
        let seen = server.await.unwrap();
        assert!(
            seen.ends_with("\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"),
            "{seen}"
        );
    }

    #[tokio::test]
    async fn bodyless_responses_return_the_connection_without_being_read() {
        const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";
        let (authority, accepted) = upstream(NO_CONTENT, After::KeepOpen).await;
        let pool = pool();
        for _ in 0..3 {
            let response = get(&pool, &authority).await;
            assert_eq!(response.status(), 204);
            assert_eq!(pool.idle_count(), 1, "released before the body is polled");
            drop(response);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_midway_closes_its_connection() {
        // Promises 10 bytes, sends 5: the body never ends.
        const SHORT: &str = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello";
        let (authority, accepted) = upstream(SHORT, After::KeepOpen).await;
        let pool = pool();
        let response = get(&pool, &authority).await;
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"hello");
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        let _ = get(&pool, &authority).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connection_close_responses_are_not_pooled() {
        const CLOSING: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
        let (authority, accepted) = upstream(CLOSING, After::KeepOpen).await;
        let pool = pool();
        assert_eq!(get_text(&pool, &authority).await, "ok");
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(get_text(&pool, &authority).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_capped_per_host() {
        let (authority, _) = upstream(HELLO, After::KeepOpen).await;
        let pool = pool();
        // Six responses held at once need six connections; only four stay idle afterwards.
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(get(&pool, &authority).await);
        }
        for response in held {
            response.into_body().collect().await.unwrap();
        }
        assert_eq!(pool.idle_count(), 4);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        drop(listener);
        let error = pool()
            .send(&authority, request("GET", &authority))
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_reset_before_the_response_head_is_a_reset_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut chunk = [0u8; 1024];
                let _ = stream.read(&mut chunk).await;
                // Closes without answering.
            }
        });
        let error = pool()
            .send(&authority, request("GET", &authority))
            .await
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Reset(_)), "{error:?}");
    }
}
