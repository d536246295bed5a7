//! Buckler's composition layer: binds the listeners, runs the request pipeline, serves the
//! local endpoints, loads upstream docs and publishes the runtime table.
//!
//! ```text
//! client ─▶ server ─▶ pipeline: checks → local → domain → route → negotiate → pick → dispatch ─▶ upstream
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
mod local;
pub mod metrics;
mod middleware;
pub mod names;
mod outbound;
mod pipeline;
mod publish;
mod request_timer;
mod resilience;
mod resilience_metrics;
mod server;
mod shutdown;
mod spec;
pub mod table;
pub mod upstream;

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
pub use upstream::UpstreamState;

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
    #[error("tls: serving TLS is not supported by this build yet (remove the `tls` key)")]
    TlsUnsupported,
}

/// A started gateway. Dropping it without [`RunningGateway::shutdown`] stops accepting at once.
#[derive(Debug)]
pub struct RunningGateway {
    addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    control: Arc<Control>,
    stop: watch::Sender<bool>,
    servers: JoinSet<()>,
    grace: Duration,
}

impl RunningGateway {
    /// Binds every `listen` address, starts loading upstream docs and begins serving, all on
    /// the runtime this is called on.
    pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
        Self::start_on(config, &[]).await
    }

    /// [`RunningGateway::start`], with the main listeners also served by `more_workers`: each
    /// of those runtimes (one thread each, as NGINX runs one process per worker) gets its own
    /// copy of every `listen` socket, bound with `SO_REUSEPORT`, and the kernel spreads new
    /// connections over the copies. The control plane, the admin listener and the table are
    /// shared; the calling runtime serves too.
    pub async fn start_on(
        config: Config,
        more_workers: &[tokio::runtime::Handle],
    ) -> Result<RunningGateway, StartError> {
        if config.tls.is_some() {
            return Err(StartError::TlsUnsupported);
        }
        let bind_error = |(addr, source)| StartError::Bind { addr, source };
        let listeners = if more_workers.is_empty() {
            server::bind_all(&config.listen).await
        } else {
            server::bind_reuseport(&config.listen, 1 + more_workers.len())
        }
        .map_err(bind_error)?;
        let admin_listener = match &config.admin {
            Some(admin) => Some(
                server::bind_all(&[admin.listen])
                    .await
                    .map_err(bind_error)?
                    .remove(0),
            ),
            None => None,
        };
        let mut addrs: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        addrs.dedup();
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
        let grace = config.shutdown_grace;
        let control = Control::start(config, HttpUpstreamClient::new()).await?;
        let (stop, stopped) = watch::channel(false);
        let mut servers = JoinSet::new();
        let proxy: server::Handler = {
            let control = control.clone();
            Arc::new(move |connection, request| {
                Box::pin(pipeline::handle(control.clone(), connection, request))
            })
        };
        // With more workers, the copies of each address come in worker order: the calling
        // runtime's first, then one per worker (`bind_reuseport`).
        let runtimes = 1 + more_workers.len();
        for (i, listener) in listeners.into_iter().enumerate() {
            let serve = server::serve(listener, proxy.clone(), stopped.clone(), grace);
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
            servers.spawn(server::serve(listener, admin, stopped.clone(), grace));
        }
        Ok(RunningGateway {
            addrs,
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
