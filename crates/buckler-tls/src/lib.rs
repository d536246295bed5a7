//! TLS for Buckler: certificate pairs validated before use, SNI selection with hot reload,
//! the listener handshake, and always-verified client configs for `https` upstreams.
//!
//! Everything runs on rustls with the aws-lc-rs provider (no ring, no OpenSSL). The gateway
//! builds a [`TlsTermination`] for its `tls.listen` listeners, reloads it on SIGHUP, on
//! `POST /admin/reload` and when a [`FileWatch`] sees certificate files change, and builds one
//! [`client_config`] per domain for its upstream pool. `docs/tls.md` describes the behaviour.

mod client;
mod pair;
mod server;
mod store;
mod termination;
mod validity;
mod watch;

use std::sync::Arc;

pub use client::{
    client_config, load_ca_bundle, ClientTlsError, SystemRoots, UnknownUpstreamProtocol,
    UpstreamProtocol,
};
pub use pair::{CertificatePair, PairError, PairPaths};
pub use server::{
    server_config, AcceptedTls, HandshakeError, HttpVersion, MinVersion, TlsAcceptor, TlsVersion,
    UnknownMinVersion, ALPN_H2, ALPN_HTTP1,
};
pub use store::{CertName, CertSet, CertStore, FailedPair, ReloadOutcome, StoreLoadError};
pub use termination::{TlsSetupError, TlsTermination};
pub use watch::{FileWatch, FileWatcher, WatchedPaths};

/// The crypto provider every Buckler TLS config uses: aws-lc-rs, rustls's defaults.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
