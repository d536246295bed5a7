//! Buckler's composition layer: binds the listeners, runs the request pipeline, serves the
//! local endpoints, loads upstream docs and publishes the runtime table.
//!
//! ```text
//! client ─▶ server ─▶ pipeline: checks → local → domain → route → negotiate → pick → dispatch ─▶ upstream
//!                        ▲ Arc<RuntimeTable> (ArcSwap)
//!                     control ◀── docs loaders (one task per upstream)
//! ```

mod control;
mod docs_loader;
mod error;
mod headers;
mod local;
mod metrics;
pub mod names;
mod pipeline;
mod server;
mod table;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use buckler_config::Config;
use buckler_upstream::HttpUpstreamClient;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use control::{Control, SetupError};
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
    control: Arc<Control>,
    stop: watch::Sender<bool>,
    servers: JoinSet<()>,
    grace: Duration,
}

impl RunningGateway {
    /// Binds every `listen` address, starts loading upstream docs and begins serving.
    pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
        if config.tls.is_some() {
            return Err(StartError::TlsUnsupported);
        }
        let listeners = server::bind_all(&config.listen)
            .await
            .map_err(|(addr, source)| StartError::Bind { addr, source })?;
        let addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let grace = config.shutdown_grace;
        let control = Control::start(config, HttpUpstreamClient::new())?;
        let (stop, stopped) = watch::channel(false);
        let mut servers = JoinSet::new();
        for listener in listeners {
            servers.spawn(server::serve(listener, control.clone(), stopped.clone(), grace));
        }
        Ok(RunningGateway {
            addrs,
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

    /// The control plane, for tests and the admin API.
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
