//! One client connection from accept to close: the TLS handshake or the h2c preface check,
//! HTTP/1.1 or HTTP/2, and the client timeouts.
//!
//! Timeouts, as the connection's state allows:
//!
//! | state | deadline | then |
//! | --- | --- | --- |
//! | no request yet (handshake, preface, first head) | accept + `client-header-timeout` | close (HTTP/2: GOAWAY) |
//! | HTTP/1.1 head arriving after a keep-alive pause | its first byte + `client-header-timeout` | close |
//! | idle: no request in flight | last response + `client-idle-timeout` | close (HTTP/2: GOAWAY) |
//! | a request in flight | none (the request's own timeouts apply) | |
//!
//! hyper's HTTP/1 header timeout is off: it also runs while a keep-alive connection waits for
//! its next request, so it cannot tell a slow head from an idle connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use buckler_tls::{HttpVersion, TlsTermination};
use buckler_upstream::ProxyBody;
use bytes::Bytes;
use http::Response;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::{ConnSettings, ConnectionPermit, Handler};
use crate::pipeline::ConnectionInfo;
use crate::shutdown::{Finish, Shutdown};

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// After a graceful close (GOAWAY, or HTTP/1.1 keep-alive off) of an idle connection, how
/// long the client has to finish before the connection is dropped (a client that does not
/// answer GOAWAY's PING would otherwise hold it).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Serves one accepted connection until it closes. `permit` is held until then.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<TlsTermination>>,
    settings: Arc<ConnSettings>,
    handler: Handler,
    graceful: Shutdown,
    permit: Option<ConnectionPermit>,
) {
    let _permit = permit;
    let accepted = Instant::now();
    let first_request_by = accepted + settings.header_timeout;
    match tls {
        Some(tls) => {
            let tls_stream = match tls.accept(stream, settings.header_timeout).await {
                Ok(tls_stream) => tls_stream,
                Err(error) => {
                    tracing::debug!(%peer, "{error}");
                    return;
                }
            };
            let connection = ConnectionInfo {
                peer,
                scheme: "https",
            };
            let served = Served {
                connection,
                handler,
                settings,
                accepted,
                graceful,
            };
            match tls_stream.http_version {
                HttpVersion::Http1 => served.http1(tls_stream.stream).await,
                HttpVersion::Http2 => served.http2(tls_stream.stream).await,
            }
        }
        None => {
            let mut stream = stream;
            let detected = tokio::time::timeout_at(first_request_by, detect(&mut stream)).await;
            let (is_h2, prefix) = match detected {
                Ok(Ok(Some(detected))) => detected,
                Ok(Ok(None)) => return, // closed before sending anything
                Ok(Err(error)) => {
                    tracing::debug!(%peer, "connection failed before its first request: {error}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "no request within client-header-timeout: closed");
                    return;
                }
            };
            let io = Prefixed::new(prefix, stream);
            let served = Served {
                connection: ConnectionInfo {
                    peer,
                    scheme: "http",
                },
                handler,
                settings,
                accepted,
                graceful,
            };
            if is_h2 {
                served.http2(io).await
            } else {
                served.http1(io).await
            }
        }
    }
}

/// Reads until the bytes either differ from the HTTP/2 preface (HTTP/1.1) or are all of it
/// (h2c with prior knowledge). Returns the bytes read, for the protocol to read again; `None`
/// when the client closed first.
async fn detect(stream: &mut TcpStream) -> io::Result<Option<(bool, Prefix)>> {
    let mut prefix = Prefix {
        bytes: [0; 24],
        len: 0,
        at: 0,
    };
    loop {
        let n = stream.read(&mut prefix.bytes[prefix.len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        prefix.len += n;
        if prefix.bytes[..prefix.len] != H2_PREFACE[..prefix.len] {
            return Ok(Some((false, prefix)));
        }
        if prefix.len == H2_PREFACE.len() {
            return Ok(Some((true, prefix)));
        }
    }
}

/// What one connection is served with, once its protocol is known.
struct Served {
    connection: ConnectionInfo,
    handler: Handler,
    settings: Arc<ConnSettings>,
    accepted: Instant,
    graceful: Shutdown,
}

impl Served {
    async fn http1<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new(self.accepted, true));
        // SPEC §9: a head with both Content-Length and Transfer-Encoding is refused (400);
        // hyper hides it, so the connection's bytes are watched on their way in.
        let (io, framing) = crate::resilience::framing::Watched::new(io);
        let io = TokioIo::new(HeadWatch {
            io,
            activity: activity.clone(),
        });
        let mut service = self.service(&activity);
        service.framing = Some(framing);
        let conn = self
            .settings
            .h1
            .serve_connection(io, service)
            .with_upgrades();
        self.run(conn, activity, Protocol::Http1).await;
    }

    async fn http2<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new(self.accepted, false));
        let service = self.service(&activity);
        let conn = self.settings.h2.serve_connection(TokioIo::new(io), service);
        self.run(conn, activity, Protocol::Http2).await;
    }

    /// The request handler, counting requests in flight until their response body is done.
    fn service(&self, activity: &Arc<Activity>) -> CountingService {
        CountingService {
            handler: self.handler.clone(),
            connection: self.connection,
            activity: activity.clone(),
            framing: None,
        }
    }

    async fn run<C>(self, conn: C, activity: Arc<Activity>, protocol: Protocol)
    where
        C: Future<Output = Result<(), hyper::Error>> + Finish + Send + 'static,
    {
        let peer = self.connection.peer;
        let first = self.accepted + self.settings.header_timeout;
        let driven = Timed {
            conn: Box::pin(conn),
            activity,
            protocol,
            header_timeout: self.settings.header_timeout,
            idle_timeout: self.settings.idle_timeout,
            sleep: Box::pin(tokio::time::sleep_until(first)),
            armed: first,
            closing: false,
        };
        match self.graceful.watch(driven).await {
            Ok(()) => {}
            Err(error) => tracing::debug!(%peer, "connection ended with an error: {error}"),
        }
    }
}

/// The handler as a hyper service, each request counted in flight.
#[derive(Clone)]
struct CountingService {
    handler: Handler,
    connection: ConnectionInfo,
    activity: Arc<Activity>,
    /// HTTP/1.1 only: raised when the connection sent an ambiguously framed head.
    framing: Option<crate::resilience::framing::FramingAlarm>,
}

impl hyper::service::Service<http::Request<Incoming>> for CountingService {
    type Response = Response<TrackedBody>;
    type Error = std::convert::Infallible;
    type Future = TrackedResponse;

    fn call(&self, mut request: http::Request<Incoming>) -> TrackedResponse {
        if let Some(framing) = &self.framing {
            request.extensions_mut().insert(framing.clone());
        }
        let in_flight = InFlight::start(&self.activity);
        TrackedResponse {
            response: (self.handler)(self.connection, request),
            in_flight: Some(in_flight),
        }
    }
}

/// The handler's response future; its request stays in flight through the body.
struct TrackedResponse {
    response: Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>,
    in_flight: Option<InFlight>,
}

impl Future for TrackedResponse {
    type Output = Result<Response<TrackedBody>, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = std::task::ready!(self.response.as_mut().poll(cx));
        let in_flight = self.in_flight.take();
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            body,
            _in_flight: in_flight,
        })))
    }
}

/// Bytes read already (while detecting the protocol), served again before the stream's.
struct Prefix {
    bytes: [u8; 24],
    len: usize,
    at: usize,
}

/// The write half of a read-side wrapper (`Prefixed`, `HeadWatch`): every call goes straight
/// to the wrapped `io`, vectored writes included, so wrapping changes nothing on the way out.
macro_rules! write_passes_through {
    ($wrapper:ident) => {
        impl<IO: AsyncWrite + Unpin> AsyncWrite for $wrapper<IO> {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.io).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.io).poll_shutdown(cx)
            }
        }
    };
}

/// A stream that first yields a [`Prefix`].
struct Prefixed<IO> {
    prefix: Prefix,
    io: IO,
}

impl<IO> Prefixed<IO> {
    fn new(prefix: Prefix, io: IO) -> Self {
        Prefixed { prefix, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let prefix = &mut self.prefix;
        if prefix.at < prefix.len {
            let n = (prefix.len - prefix.at).min(buf.remaining());
            buf.put_slice(&prefix.bytes[prefix.at..prefix.at + n]);
            prefix.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

write_passes_through!(Prefixed);

/// Whether a connection is busy, idle, or receiving a head, shared between the connection's
/// reads, its requests (which may finish on other tasks, for HTTP/2) and its timer.
#[derive(Debug)]
struct Activity {
    /// When the connection was accepted; the times below are milliseconds after it.
    origin: Instant,
    /// Requests whose response body is not finished.
    in_flight: AtomicU32,
    /// When the last request in flight finished; [`NEVER`] before the first.
    idle_since: AtomicU64,
    /// HTTP/1.1: when the first byte of a head arrived on an idle connection, plus one;
    /// 0 when none is arriving.
    head_started: AtomicU64,
    /// HTTP/1.1 only: HTTP/2 reads frames (PING, SETTINGS) that are not requests.
    watch_heads: bool,
}

const NEVER: u64 = u64::MAX;

impl Activity {
    fn new(origin: Instant, watch_heads: bool) -> Activity {
        Activity {
            origin,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(NEVER),
            head_started: AtomicU64::new(0),
            watch_heads,
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    fn at(&self, millis: u64) -> Instant {
        self.origin + Duration::from_millis(millis)
    }

    /// Bytes arrived: on an idle HTTP/1.1 connection, a head has started. `now` is read
    /// only then.
    fn bytes_read(&self, now: impl FnOnce() -> Instant) {
        if self.watch_heads
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.millis(now()) + 1, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn request_finished(&self, now: Instant) {
        // Set before the count reaches zero, so the timer never sees an idle connection
        // with a stale `idle_since`.
        self.idle_since.store(self.millis(now), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The next deadline and what it means, or `None` while a request is in flight.
    fn deadline(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<Deadline> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = self.idle_since.load(Ordering::Acquire);
        if idle_since == NEVER {
            return Some(Deadline::Head(self.origin + header_timeout));
        }
        let head_started = self.head_started.load(Ordering::Relaxed);
        if head_started > 0 {
            return Some(Deadline::Head(self.at(head_started - 1) + header_timeout));
        }
        Some(Deadline::Idle(self.at(idle_since) + idle_timeout))
    }
}

#[derive(Debug, Clone, Copy)]
enum Deadline {
    /// No request (head) arrived in time.
    Head(Instant),
    /// The connection was idle for `client-idle-timeout`.
    Idle(Instant),
}

/// One request in flight, from the handler's call to the end of its response body.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.request_started();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished(Instant::now());
    }
}

/// A response body that keeps its request counted in flight until it is finished (or
/// dropped: the client went away).
pub(crate) struct TrackedBody {
    body: ProxyBody,
    /// `None` only if the response future was polled after completing (never by hyper).
    _in_flight: Option<InFlight>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = buckler_upstream::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An HTTP/1.1 stream that tells [`Activity`] when bytes arrive.
struct HeadWatch<IO> {
    io: IO,
    activity: Arc<Activity>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadWatch<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read(Instant::now);
        }
        polled
    }
}

write_passes_through!(HeadWatch);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// A served connection under the client timeouts.
///
/// The timer is armed lazily: after each poll of the connection the deadline is worked out
/// from [`Activity`] (a few atomic loads, no clock read) and the sleep moved only when it
/// changed. While a request is in flight the sleep stays where it was; when it fires on a
/// busy connection it is set `client-idle-timeout` ahead, which is never later than the
/// idle deadline of a request that finishes meanwhile (HTTP/2 requests finish on tasks of
/// their own, without waking this one).
struct Timed<C> {
    conn: Pin<Box<C>>,
    activity: Arc<Activity>,
    protocol: Protocol,
    header_timeout: Duration,
    idle_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
    /// A graceful close was started by a timeout; the sleep now bounds it.
    closing: bool,
}

impl<C> Timed<C> {
    fn arm(&mut self, at: Instant) {
        // An elapsed sleep is re-armed even for the same instant, so it cannot fire twice.
        if at != self.armed || self.sleep.is_elapsed() {
            self.armed = at;
            self.sleep.as_mut().reset(at);
        }
    }
}

impl<C: Future<Output = Result<(), hyper::Error>> + Finish> Future for Timed<C> {
    type Output = Result<(), hyper::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            if let Poll::Ready(result) = this.conn.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if !this.closing {
                if let Some(Deadline::Head(at) | Deadline::Idle(at)) = this
                    .activity
                    .deadline(this.header_timeout, this.idle_timeout)
                {
                    this.arm(at);
                }
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The sleep fired: see what the connection is doing now.
            let now = Instant::now();
            let deadline = this
                .activity
                .deadline(this.header_timeout, this.idle_timeout);
            if this.closing {
                if deadline.is_none() {
                    // A request arrived after GOAWAY (one the client sent before seeing
                    // it): let it finish.
                    this.arm(now + this.idle_timeout);
                    continue;
                }
                tracing::debug!("connection did not close after a timeout: dropped");
                return Poll::Ready(Ok(()));
            }
            match deadline {
                None => this.arm(now + this.idle_timeout),
                Some(Deadline::Head(at) | Deadline::Idle(at)) if at > now => this.arm(at),
                Some(Deadline::Head(_)) if this.protocol == Protocol::Http1 => {
                    // A head that never came, or is still coming: nothing is in flight, so
                    // closing loses nothing.
                    tracing::debug!("no request head within client-header-timeout: closed");
                    return Poll::Ready(Ok(()));
                }
                Some(deadline) => {
                    tracing::debug!(
                        idle = matches!(deadline, Deadline::Idle(_)),
                        "connection timed out: closing"
                    );
                    // HTTP/2: GOAWAY; HTTP/1.1: closes once nothing is being written.
                    this.closing = true;
                    this.conn.as_mut().finish();
                    this.arm(now + CLOSE_GRACE);
                }
            }
        }
    }
}

impl<C: Finish> Finish for Timed<C> {
    fn finish(mut self: Pin<&mut Self>) {
        self.conn.as_mut().finish();
    }
}

impl<I, S, B> Finish for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E, B> Finish for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    /// (is a head deadline, seconds after `origin`).
    fn at(origin: Instant, deadline: Option<Deadline>) -> Option<(bool, u64)> {
        deadline.map(|d| match d {
            Deadline::Head(at) => (true, (at - origin).as_secs()),
            Deadline::Idle(at) => (false, (at - origin).as_secs()),
        })
    }

    fn secs(origin: Instant, n: u64) -> Instant {
        origin + Duration::from_secs(n)
    }

    #[test]
    fn the_first_request_is_timed_from_accept_then_idle_and_heads_alternate() {
        let t0 = Instant::now();
        let activity = Activity::new(t0, true);
        assert_eq!(at(t0, activity.deadline(HEAD, IDLE)), Some((true, 10)));
        activity.bytes_read(|| secs(t0, 3));
        assert_eq!(
            at(t0, activity.deadline(HEAD, IDLE)),
            Some((true, 10)),
            "the first head is bounded from accept"
        );

        activity.request_started();
        assert!(activity.deadline(HEAD, IDLE).is_none(), "busy");
        activity.bytes_read(|| secs(t0, 4)); // the request body
        assert!(activity.deadline(HEAD, IDLE).is_none(), "still busy");
        activity.request_finished(secs(t0, 100));
        assert_eq!(at(t0, activity.deadline(HEAD, IDLE)), Some((false, 160)));

        activity.bytes_read(|| secs(t0, 120));
        assert_eq!(
            at(t0, activity.deadline(HEAD, IDLE)),
            Some((true, 130)),
            "a head after a pause has its own deadline"
        );
        activity.bytes_read(|| secs(t0, 121));
        assert_eq!(
            at(t0, activity.deadline(HEAD, IDLE)),
            Some((true, 130)),
            "later bytes of the same head do not extend it"
        );
        activity.request_started();
        activity.request_started();
        activity.request_finished(secs(t0, 125));
        assert!(
            activity.deadline(HEAD, IDLE).is_none(),
            "one still in flight"
        );
        activity.request_finished(secs(t0, 126));
        assert_eq!(at(t0, activity.deadline(HEAD, IDLE)), Some((false, 186)));
    }

    #[test]
    fn http2_reads_are_not_heads() {
        let t0 = Instant::now();
        let activity = Activity::new(t0, false);
        activity.bytes_read(|| secs(t0, 1)); // SETTINGS, no request yet
        assert_eq!(at(t0, activity.deadline(HEAD, IDLE)), Some((true, 10)));
        activity.request_started();
        activity.request_finished(secs(t0, 2));
        activity.bytes_read(|| secs(t0, 3)); // a PING
        assert_eq!(at(t0, activity.deadline(HEAD, IDLE)), Some((false, 62)));
    }

    #[tokio::test]
    async fn a_prefix_is_read_before_the_stream() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b" / HTTP/1.1")
            .await
            .unwrap();
        drop(client);
        let mut prefix = Prefix {
            bytes: [0; 24],
            len: 3,
            at: 0,
        };
        prefix.bytes[..3].copy_from_slice(b"GET");
        let mut read = String::new();
        Prefixed::new(prefix, server)
            .read_to_string(&mut read)
            .await
            .unwrap();
        assert_eq!(read, "GET / HTTP/1.1");
    }
}
