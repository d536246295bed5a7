//! Everything a TLS listener needs, built from config and reloaded as one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::server::{server_config, AcceptedTls, HandshakeError, MinVersion, TlsAcceptor};
use crate::store::{CertSet, CertStore, ReloadOutcome, StoreLoadError};

/// TLS termination for the `tls.listen` listeners: the certificate store, the acceptor and
/// the session-ticket keys, shared by every TLS listener of the process.
#[derive(Debug)]
pub struct TlsTermination {
    store: Arc<CertStore>,
    acceptor: TlsAcceptor,
    provider: Arc<CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
    min_version: Mutex<MinVersion>,
}

impl TlsTermination {
    /// Loads and validates every pair of `set` (blocking file reads) and builds the acceptor.
    /// Any bad pair fails the whole start, with every pair's error.
    pub fn start(
        set: &CertSet,
        min_version: MinVersion,
        now: SystemTime,
    ) -> Result<TlsTermination, TlsSetupError> {
        let provider = crate::crypto_provider();
        let store = Arc::new(CertStore::load(set, provider.clone(), now)?);
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsSetupError::Rustls)?;
        let config = server_config(
            store.clone(),
            min_version,
            provider.clone(),
            ticketer.clone(),
        )
        .map_err(TlsSetupError::Rustls)?;
        Ok(TlsTermination {
            store,
            acceptor: TlsAcceptor::new(config),
            provider,
            ticketer,
            min_version: Mutex::new(min_version),
        })
    }

    /// Applies a reloaded config: re-reads and validates every pair (blocking file reads;
    /// see [`CertStore::reload`] for what happens to each), and switches `min_version` for
    /// new handshakes if it changed. Established connections are not touched.
    pub fn reload(&self, set: &CertSet, min_version: MinVersion, now: SystemTime) -> ReloadOutcome {
        let outcome = self.store.reload(set, now);
        let mut current = self
            .min_version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *current != min_version {
            match server_config(
                self.store.clone(),
                min_version,
                self.provider.clone(),
                self.ticketer.clone(),
            ) {
                Ok(config) => {
                    self.acceptor.set_config(config);
                    *current = min_version;
                }
                // Both versions are always supported by aws-lc-rs: this cannot fail, and if it
                // did the listener would keep the version it has.
                Err(error) => tracing::error!(%error, "TLS min-version not changed"),
            }
        }
        outcome
    }

    /// The certificates being served (expiry timestamps, SNI look-ups).
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// Runs the handshake on an accepted connection; see [`TlsAcceptor::accept`].
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> Result<AcceptedTls<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io, timeout).await
    }
}

/// Why TLS termination could not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// One or more certificate pairs are bad; one line per pair, each naming its file.
    #[error(transparent)]
    Certificates(#[from] StoreLoadError),
    /// rustls refused the configuration (not expected with aws-lc-rs).
    #[error("TLS setup: {0}")]
    Rustls(#[source] rustls::Error),
}
