//! Listeners: bind with a deep accept queue, accept under the connection cap, hand each
//! connection to its own task (TLS handshake, protocol, timeouts: `listen/`), and shut down
//! gracefully (stop accepting, let in-flight requests finish).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use buckler_tls::TlsTermination;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::listen::{self, Listeners};
use crate::shutdown::Shutdown;

pub use crate::listen::Handler;

/// The accept queue asked of the kernel (Linux caps it at `net.core.somaxconn`, 4096 by
/// default): a burst of new connections waits there instead of being dropped and retried a
/// second later, and over `max-connections` connections wait there too.
pub const LISTEN_BACKLOG: i32 = 65_535;

/// After an accept error (out of file descriptors), wait this long before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accept errors are logged at most once per this interval, with the count of those not
/// logged: a descriptor shortage fails every accept for as long as it lasts.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How one listener serves its connections.
#[derive(Clone)]
pub struct Serving {
    /// Timeouts, HTTP/2 settings and the connection cap, shared with the other listeners.
    pub listeners: Arc<Listeners>,
    /// `Some` for a `tls.listen` listener.
    pub tls: Option<Arc<TlsTermination>>,
    /// Whether connections count against `max-connections` (not the admin listener's).
    pub capped: bool,
}

/// Serves `listener` until `stop` turns true, then waits up to `grace` for open connections
/// to finish their in-flight requests.
pub async fn serve(
    listener: TcpListener,
    serving: Serving,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let graceful = Shutdown::new();
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await.is_ok();
    };
    tokio::pin!(stopped);
    let mut accept_errors = AcceptErrors::default();
    loop {
        // The place under the cap comes first: over `max-connections`, connections wait in
        // the kernel's accept queue, not accepted and then closed.
        let permit = if serving.capped {
            tokio::select! {
                permit = serving.listeners.limit().acquire() => Some(permit),
                _ = &mut stopped => break,
            }
        } else {
            None
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_errors.failed(&error);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        accept_errors.succeeded();
        let _ = stream.set_nodelay(true);
        tokio::spawn(listen::serve(
            stream,
            peer,
            serving.tls.clone(),
            serving.listeners.settings(),
            handler.clone(),
            graceful.clone(),
            permit,
        ));
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

/// Rate-limited logging of accept errors.
#[derive(Debug, Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    not_logged: u64,
}

impl AcceptErrors {
    fn failed(&mut self, error: &std::io::Error) {
        if let Some(not_logged) = self.should_log(Instant::now()) {
            tracing::warn!(
                similar_errors_not_logged = not_logged,
                "accept failed: {error}"
            );
        }
    }

    /// Counts a failure at `now`; `Some(count of failures not logged since the last one)`
    /// when this one is to be logged.
    fn should_log(&mut self, now: Instant) -> Option<u64> {
        match self.last_logged {
            Some(at) if now.duration_since(at) < ACCEPT_ERROR_LOG_INTERVAL => {
                self.not_logged += 1;
                None
            }
            _ => {
                self.last_logged = Some(now);
                Some(std::mem::take(&mut self.not_logged))
            }
        }
    }

    fn succeeded(&mut self) {
        if self.not_logged > 0 {
            tracing::info!(
                similar_errors_not_logged = self.not_logged,
                "accepting connections again"
            );
            self.not_logged = 0;
        }
        self.last_logged = None;
    }
}

/// Binds every address with a [`LISTEN_BACKLOG`] accept queue, failing on the first that
/// cannot be bound. Must run inside a tokio runtime.
pub fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(bind(*addr, false).map_err(|e| (*addr, e))?);
    }
    Ok(listeners)
}

/// Binds every address `copies` times with `SO_REUSEPORT` and a [`LISTEN_BACKLOG`] accept
/// queue each, in address order, the copies of one address together. Port 0 is resolved by
/// the first copy; the rest bind to the port it got. For one thread per worker
/// (`RunningGateway::start_on`).
pub fn bind_reuseport(
    addrs: &[SocketAddr],
    copies: usize,
) -> Result<Vec<TcpListener>, (SocketAddr, std::io::Error)> {
    let mut listeners = Vec::with_capacity(addrs.len() * copies);
    for addr in addrs {
        let mut bound = *addr;
        for _ in 0..copies {
            let listener = bind(bound, true).map_err(|e| (*addr, e))?;
            bound = listener.local_addr().map_err(|e| (*addr, e))?;
            listeners.push(listener);
        }
    }
    Ok(listeners)
}

fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As tokio's own `bind`: a restart can bind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_logged_once_per_interval_with_the_count_skipped() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        assert_eq!(errors.should_log(t0), Some(0));
        // Out of descriptors: every 50 ms backoff fails again.
        for i in 1..100 {
            assert_eq!(errors.should_log(t0 + ACCEPT_BACKOFF * i), None);
        }
        assert_eq!(errors.should_log(t0 + ACCEPT_ERROR_LOG_INTERVAL), Some(99));
        errors.succeeded();
        assert_eq!(
            errors.should_log(t0 + ACCEPT_ERROR_LOG_INTERVAL + ACCEPT_BACKOFF),
            Some(0),
            "a new shortage is logged at once"
        );
    }
}
