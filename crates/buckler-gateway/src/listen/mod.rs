//! What client listeners share: the connection cap, the client timeouts and HTTP/2 settings
//! (both reloadable), and TLS termination with its certificate reloads.
//!
//! ```text
//! accept loop (server.rs) ── permit from ConnectionLimit ── accept ── spawn ─▶ conn::serve
//!                                                                    TLS handshake | h2c preface
//!                                                                    HTTP/1.1 or HTTP/2, timed
//! reload (SIGHUP, admin) ─▶ Listeners::apply ─▶ new ConnSettings, new limit, certificates
//! certificate files change ─▶ tls::TlsListeners::reload_files
//! ```

mod conn;
mod limit;
pub(crate) mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use buckler_config::Config;
use buckler_tls::{TlsSetupError, TlsTermination};
use buckler_upstream::ProxyBody;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::control::ClientListeners;
use crate::pipeline::ConnectionInfo;

pub(crate) use conn::serve;
pub(crate) use limit::{ConnectionLimit, ConnectionPermit};

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
/// Also the bound on an HTTP/1.1 response's write queue: hyper stops polling the body once
/// this much is waiting for a client that does not read (hyper has one setting for both).
const H1_MAX_BUF: usize = 128 * 1024;

/// What an HTTP/2 response stream may hold in the gateway for a client that does not read
/// (flow-control window exhausted, or the socket full): past it, hyper stops polling the
/// response body, so the upstream is no longer read (SPEC §9: about 64 KiB per stream).
/// hyper's default is 400 KB. Throughput is unaffected: this bounds what waits in the
/// gateway, not how much the client may have in flight (its own window).
const H2_MAX_SEND_BUF: usize = 64 * 1024;

/// The settings a new connection is served with; a reload swaps in new ones, and connections
/// keep the ones they started with.
pub(crate) struct ConnSettings {
    /// Bounds a request head, and everything before the first request (TLS handshake,
    /// h2c preface, an HTTP/2 connection's first request).
    pub(crate) header_timeout: Duration,
    /// An idle keep-alive connection (no request in flight) is closed after this.
    pub(crate) idle_timeout: Duration,
    pub(crate) h1: hyper::server::conn::http1::Builder,
    pub(crate) h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl std::fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSettings")
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl ConnSettings {
    fn from_config(config: &Config) -> ConnSettings {
        let mut h1 = hyper::server::conn::http1::Builder::new();
        // The head and idle timeouts are the connection driver's (conn.rs): hyper's own
        // header timeout also runs while a keep-alive connection waits for its next request,
        // which would close idle connections after `client-header-timeout`.
        h1.max_buf_size(H1_MAX_BUF)
            .header_read_timeout(Option::<Duration>::None);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        // h2's defaults stay on: at most 20 streams reset before they are accepted (rapid
        // reset, CVE-2023-44487) and header blocks bounded in size and in CONTINUATION frames.
        h2.timer(TokioTimer::new())
            .max_header_list_size(H1_MAX_BUF as u32)
            .max_concurrent_streams(config.http2_max_concurrent_streams)
            .max_send_buf_size(H2_MAX_SEND_BUF);
        ConnSettings {
            header_timeout: config.client_header_timeout,
            idle_timeout: config.client_idle_timeout,
            h1,
            h2,
        }
    }
}

/// State shared by every client listener of the process: built at startup, changed by
/// reloads (never rebinding a listener).
#[derive(Debug)]
pub(crate) struct Listeners {
    settings: ArcSwap<ConnSettings>,
    limit: Arc<ConnectionLimit>,
    tls: Option<Arc<tls::TlsListeners>>,
}

impl Listeners {
    /// Builds the shared state from `config`: loads and validates every certificate pair
    /// when `tls` is set (blocking file reads; any bad pair fails the start).
    pub(crate) fn start(config: &Config) -> Result<Arc<Listeners>, TlsSetupError> {
        let tls = tls::TlsListeners::start(config)?.map(Arc::new);
        Ok(Arc::new(Listeners {
            settings: ArcSwap::from_pointee(ConnSettings::from_config(config)),
            limit: Arc::new(ConnectionLimit::new(config.max_connections)),
            tls,
        }))
    }

    /// The settings for a connection accepted now.
    pub(crate) fn settings(&self) -> Arc<ConnSettings> {
        self.settings.load_full()
    }

    /// The `max-connections` cap shared by the `listen` and `tls.listen` listeners.
    pub(crate) fn limit(&self) -> &Arc<ConnectionLimit> {
        &self.limit
    }

    /// TLS termination, when `tls` was configured at startup.
    pub(crate) fn termination(&self) -> Option<Arc<TlsTermination>> {
        self.tls.as_ref().map(|tls| tls.termination().clone())
    }

    /// Starts polling the certificate files; `on_reload(ok)` is called after each reload a
    /// change caused. Does nothing without TLS.
    pub(crate) fn watch_certificates(&self, on_reload: impl Fn(bool) + Send + 'static) {
        if let Some(tls) = &self.tls {
            tls.clone().spawn_file_watch(on_reload);
        }
    }
}

impl ClientListeners for Listeners {
    /// Applies a reloaded configuration to new connections (timeouts, HTTP/2 streams, the
    /// connection cap) and re-reads the certificates. Returns one line per certificate pair
    /// refused (its old pair, if any, stays in use); each is logged too.
    fn apply(&self, config: &Config) -> Vec<String> {
        self.settings
            .store(Arc::new(ConnSettings::from_config(config)));
        self.limit.set_limit(config.max_connections);
        match &self.tls {
            Some(tls) => tls.apply(config),
            None => Vec::new(),
        }
    }

    /// Appends this state's metric samples (certificate expiry) to a Prometheus text page.
    fn render_metrics(&self, out: &mut String) {
        if let Some(tls) = &self.tls {
            tls.render_metrics(out);
        }
    }
}
