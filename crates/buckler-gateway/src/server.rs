//! Listeners: accept connections, serve HTTP/1.1 and HTTP/2 (prior knowledge) on the same port,
//! and shut down gracefully (stop accepting, let in-flight requests finish).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;

use std::future::Future;
use std::pin::Pin;

use buckler_upstream::{ProxyBody, SendStream};
use http::{Request, Response};
use hyper::body::Incoming;

use crate::pipeline::ConnectionInfo;
use crate::shutdown::{Finish, Shutdown};

/// What a listener runs for every request.
pub type Handler = Arc<
    dyn Fn(
            ConnectionInfo,
            Request<Incoming>,
        ) -> Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>
        + Send
        + Sync,
>;

/// HTTP/1 read buffer: a little above the 64 KiB header limit, so the gateway (not hyper)
/// answers oversized header blocks with its own JSON 431 up to this size.
const H1_MAX_BUF: usize = 128 * 1024;

/// Serves `listener` until `stop` turns true, then waits up to `grace` for open connections
/// to finish their in-flight requests.
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = Shutdown::new();
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await.is_ok();
    };
    tokio::pin!(stopped);
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(H1_MAX_BUF)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(H1_MAX_BUF as u32)
        .max_concurrent_streams(1024);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = ConnectionInfo {
            peer,
            scheme: "http",
        };
        let handler = handler.clone();
        // SPEC §9: a head with both Content-Length and Transfer-Encoding is refused (400).
        let (stream, framing) = crate::resilience::framing::Watched::new(SendStream::new(stream));
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(framing.clone());
            let response = handler(connection, request);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        // The watcher boxes the connection: an async block that owns a future and awaits it
        // keeps room for it twice (3.4 KiB instead of 1.7 KiB), for every idle connection.
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "shutdown grace elapsed with requests still in flight"
        );
    }
}

/// Binds every address, failing on the first that cannot be bound.
pub async fn bind_all(
    addrs: &[SocketAddr],
) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(TcpListener::bind(addr).await.map_err(|e| (*addr, e))?);
    }
    Ok(listeners)
}

/// Binds every address `copies` times with `SO_REUSEPORT`, in address order, the copies of
/// one address together. Port 0 is resolved by the first copy; the rest bind to the port it
/// got. For one thread per worker (`RunningGateway::start_on`).
pub fn bind_reuseport(
    addrs: &[SocketAddr],
    copies: usize,
) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let mut listeners = Vec::with_capacity(addrs.len() * copies);
    for addr in addrs {
        let mut bound = *addr;
        for _ in 0..copies {
            let listener = reuseport_listener(bound).map_err(|e| (*addr, e))?;
            bound = listener.local_addr().map_err(|e| (*addr, e))?;
            listeners.push(listener);
        }
    }
    Ok(listeners)
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

impl<I, S, E, B> Finish for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
