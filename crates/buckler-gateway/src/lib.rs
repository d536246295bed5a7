//! Buckler's composition layer: binds the listeners, runs the request pipeline, serves the
//! local endpoints, loads upstream docs and publishes the runtime table.
//!
//! ```text
//! client ─▶ server ─▶ pipeline: checks → local → domain → route → negotiate → middleware → pick → dispatch ─▶ upstream
//!                        ▲ Arc<RuntimeTable> (ArcSwap)
//!                     control ◀── docs loaders, ramp driver, drainers, source watches (static, file, etcd)
//! admin ─▶ admin API ────┘  (and SIGHUP, through RunningGateway::control().reload())
//! ```

mod admin;
mod control;
mod docs_cache;
mod docs_loader;
mod error;
mod headers;
mod health_check;
mod lambda;
mod listen;
mod local;
pub mod metrics;
mod middleware;
pub mod names;
mod outbound;
mod pipeline;
mod preflight;
mod publish;
mod request_timer;
mod resilience;
mod resilience_metrics;
mod server;
mod shutdown;
mod spec;
pub mod table;
pub mod upstream;
mod upstream_client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use buckler_config::Config;
use buckler_upstream::HttpUpstreamClient;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use control::{ChangeError, Control, ReloadOutcome, SetupError, UpstreamDiff};
pub use error::GatewayError;
pub use pipeline::MAX_HEADER_BYTES;
pub use preflight::check_files;
pub use upstream::UpstreamState;

/// Runtimes serving requests in this process (one per worker with `--runtime per-worker`,
/// else one): `/metrics` multiplies the answering runtime's worker count by it.
pub(crate) static REQUEST_RUNTIMES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(1);

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A certificate pair is bad (one line per pair, each naming its file).
    #[error("tls: {0}")]
    Tls(#[from] buckler_tls::TlsSetupError),
}

/// A started gateway. Dropping it without [`RunningGateway::shutdown`] stops accepting at once.
#[derive(Debug)]
pub struct RunningGateway {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    control: Arc<Control>,
    stop: watch::Sender<bool>,
    servers: JoinSet<()>,
    grace: Duration,
}

impl RunningGateway {
    /// Binds every `listen` and `tls.listen` address, loads the certificates, starts loading
    /// upstream docs and begins serving, all on the runtime this is called on.
    pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
        Self::start_on(config, &[]).await
    }

    /// [`RunningGateway::start`], with the client listeners also served by `more_workers`:
    /// each of those runtimes (one thread each, as NGINX runs one process per worker) gets its
    /// own copy of every `listen` and `tls.listen` socket, bound with `SO_REUSEPORT`, and the
    /// kernel spreads new connections over the copies. The control plane, the admin listener,
    /// the table, the certificates and the `max-connections` cap are shared; the calling
    /// runtime serves too.
    pub async fn start_on(
        config: Config,
        more_workers: &[tokio::runtime::Handle],
    ) -> Result<RunningGateway, StartError> {
        REQUEST_RUNTIMES.store(1 + more_workers.len(), std::sync::atomic::Ordering::Relaxed);
        // Certificates first: a bad pair stops the start before anything is bound.
        let listeners = listen::Listeners::start(&config)?;
        let bind_error = |(addr, source)| StartError::Bind { addr, source };
        let bind = |addrs: &[SocketAddr]| {
            if more_workers.is_empty() {
                server::bind_all(addrs)
            } else {
                server::bind_reuseport(addrs, 1 + more_workers.len())
            }
        };
        let plain = bind(&config.listen).map_err(bind_error)?;
        let tls_listen = config.tls.as_ref().map_or(&[][..], |tls| &tls.listen[..]);
        let secure = bind(tls_listen).map_err(bind_error)?;
        let admin_listener = match &config.admin {
            Some(admin) => Some(
                server::bind_all(&[admin.listen])
                    .map_err(bind_error)?
                    .remove(0),
            ),
            None => None,
        };
        let local_addrs = |bound: &[tokio::net::TcpListener]| {
            let mut addrs: Vec<SocketAddr> =
                bound.iter().filter_map(|l| l.local_addr().ok()).collect();
            addrs.dedup();
            addrs
        };
        let addrs = local_addrs(&plain);
        let tls_addrs = local_addrs(&secure);
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        let grace = config.shutdown_grace;
        let control = Control::start(config, HttpUpstreamClient::new()).await?;
        control.attach_listeners(listeners.clone());
        {
            let control = Arc::downgrade(&control);
            listeners.watch_certificates(move |ok| {
                if let Some(control) = control.upgrade() {
                    control.count_reload(ok);
                }
            });
        }
        let (stop, stopped) = watch::channel(false);
        let mut servers = JoinSet::new();
        let proxy: server::Handler = {
            let control = control.clone();
            Arc::new(move |connection, request| {
                Box::pin(pipeline::handle(control.clone(), connection, request))
            })
        };
        let client_facing = server::Serving {
            listeners: listeners.clone(),
            tls: None,
            capped: true,
        };
        let secure_facing = server::Serving {
            tls: listeners.termination(),
            ..client_facing.clone()
        };
        // With more workers, the copies of each address come in worker order: the calling
        // runtime's first, then one per worker (`bind_reuseport`).
        let runtimes = 1 + more_workers.len();
        let all = plain
            .into_iter()
            .map(|listener| (listener, &client_facing))
            .enumerate()
            .chain(
                secure
                    .into_iter()
                    .map(|listener| (listener, &secure_facing))
                    .enumerate(),
            );
        for (i, (listener, serving)) in all {
            let serve = server::serve(
                listener,
                serving.clone(),
                proxy.clone(),
                stopped.clone(),
                grace,
            );
            match i % runtimes {
                0 => servers.spawn(serve),
                worker => servers.spawn_on(serve, &more_workers[worker - 1]),
            };
        }
        if let Some(listener) = admin_listener {
            let control = control.clone();
            let admin: server::Handler = Arc::new(move |_connection, request| {
                Box::pin(admin::handle(control.clone(), request))
            });
            // The admin API stays reachable when client connections are at their cap.
            let serving = server::Serving {
                capped: false,
                ..client_facing.clone()
            };
            servers.spawn(server::serve(
                listener,
                serving,
                admin,
                stopped.clone(),
                grace,
            ));
        }
        Ok(RunningGateway {
            addrs,
            tls_addrs,
            admin_addr,
            control,
            stop,
            servers,
            grace,
        })
    }

    /// The bound addresses, in `listen` order (useful with port 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The bound `tls.listen` addresses, in order (empty without `tls`).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The admin listener's address, when `admin` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The control plane: reloads (SIGHUP), upstream changes, state for tests.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Stops accepting connections and waits for in-flight requests, up to `shutdown-grace`.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let deadline = self.grace + Duration::from_secs(1);
        let _ = tokio::time::timeout(deadline, async {
            while self.servers.join_next().await.is_some() {}
        })
        .await;
    }
}
