//! The TLS side of a listener: the rustls server configuration and the handshake.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::ProducesTickets;
use rustls::{ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;

use crate::store::CertStore;

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The oldest TLS version a listener accepts (`tls.min-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    Tls12,
    /// TLS 1.3 only: a TLS 1.2-only client fails the handshake.
    Tls13,
}

impl FromStr for MinVersion {
    type Err = UnknownMinVersion;
    /// `"1.2"` or `"1.3"`; anything else is an error naming the valid values.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "1.2" => Ok(MinVersion::Tls12),
            "1.3" => Ok(MinVersion::Tls13),
            _ => Err(UnknownMinVersion(value.to_owned())),
        }
    }
}

/// A `min-version` other than `"1.2"` or `"1.3"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("min-version {0:?} is not one of \"1.2\", \"1.3\"")]
pub struct UnknownMinVersion(pub String);

/// Builds a listener's rustls configuration: certificates from `store` by SNI, ALPN `h2` then
/// `http/1.1`, TLS from `min_version` up to 1.3, stateless session tickets from `ticketer`
/// (share one ticketer across rebuilds so resumption survives a `min-version` change), no
/// client certificates, no 0-RTT data (replayable).
pub fn server_config(
    store: Arc<CertStore>,
    min_version: MinVersion,
    provider: Arc<rustls::crypto::CryptoProvider>,
    ticketer: Arc<dyn ProducesTickets>,
) -> Result<ServerConfig, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    config.ticketer = ticketer;
    Ok(config)
}

/// The HTTP version a TLS client agreed to by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// ALPN `http/1.1`, or no ALPN at all (a client that offers none speaks HTTP/1.1).
    Http1,
    /// ALPN `h2`.
    Http2,
}

/// The TLS version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        })
    }
}

/// A connection after its handshake, and what was agreed in it.
#[derive(Debug)]
pub struct AcceptedTls<IO> {
    /// The encrypted stream, ready for HTTP.
    pub stream: TlsStream<IO>,
    /// Which HTTP to serve: HTTP/2 for ALPN `h2`, HTTP/1.1 otherwise.
    pub http_version: HttpVersion,
    /// The SNI the client sent (lower case), if any.
    pub server_name: Option<String>,
    /// The TLS version agreed.
    pub tls_version: TlsVersion,
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client did not finish the handshake in time (a silent or slowloris connection).
    #[error("TLS handshake not finished within {0:?}")]
    TimedOut(Duration),
    /// The handshake failed: an alert, a protocol error (a TLS 1.2-only client against
    /// `min-version` 1.3, plain HTTP on a TLS port) or the connection closed.
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
}

/// Runs TLS handshakes for a listener. Its configuration can be replaced while it serves
/// (a reload that changes `min-version`); handshakes already started keep the one they began
/// with. Certificates change through the [`CertStore`], not here.
#[derive(Debug)]
pub struct TlsAcceptor {
    config: ArcSwap<ServerConfig>,
}

impl TlsAcceptor {
    /// An acceptor serving `config` (from [`server_config`]).
    pub fn new(config: ServerConfig) -> TlsAcceptor {
        TlsAcceptor {
            config: ArcSwap::from_pointee(config),
        }
    }

    /// Replaces the configuration for the handshakes that start from now on.
    pub fn set_config(&self, config: ServerConfig) {
        self.config.store(Arc::new(config));
    }

    /// Runs the server handshake on `io` (an accepted TCP stream), giving up after `timeout`
    /// (the `client-header-timeout`: a connection that says nothing is closed). The stream is
    /// dropped on error, which closes it.
    pub async fn accept<IO>(
        &self,
        io: IO,
        timeout: Duration,
    ) -> Result<AcceptedTls<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        let stream = match tokio::time::timeout(timeout, acceptor.accept(io)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(HandshakeError::Failed(error)),
            Err(_) => return Err(HandshakeError::TimedOut(timeout)),
        };
        let (_, connection) = stream.get_ref();
        let http_version = match connection.alpn_protocol() {
            Some(ALPN_H2) => HttpVersion::Http2,
            _ => HttpVersion::Http1,
        };
        let server_name = connection.server_name().map(str::to_owned);
        let tls_version = match connection.protocol_version() {
            Some(ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
            // rustls speaks only 1.2 and 1.3, and a finished handshake has a version.
            _ => TlsVersion::Tls13,
        };
        Ok(AcceptedTls {
            stream,
            http_version,
            server_name,
            tls_version,
        })
    }
}
