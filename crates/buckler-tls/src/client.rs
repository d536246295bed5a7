//! TLS toward `https` upstreams: always verified, against the system trust store plus a
//! domain's `upstream-ca`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::pair::describe_pem_error;
use crate::server::{ALPN_H2, ALPN_HTTP1};

/// How Buckler speaks to a domain's upstreams (`upstream-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// `https`: HTTP/2 when the upstream offers `h2` by ALPN, else HTTP/1.1. `http`: HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only, on `http` and `https` alike.
    Http1,
    /// `http`: HTTP/2 with prior knowledge. `https`: HTTP/2 only (ALPN offers `h2` alone, so
    /// an upstream without HTTP/2 fails the handshake rather than being spoken to in HTTP/1.1).
    H2c,
}

impl UpstreamProtocol {
    /// The ALPN ids offered to an `https` upstream, in order of preference.
    pub fn alpn_protocols(self) -> Vec<Vec<u8>> {
        match self {
            UpstreamProtocol::Auto => vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()],
            UpstreamProtocol::Http1 => vec![ALPN_HTTP1.to_vec()],
            UpstreamProtocol::H2c => vec![ALPN_H2.to_vec()],
        }
    }
}

impl FromStr for UpstreamProtocol {
    type Err = UnknownUpstreamProtocol;
    /// `"auto"`, `"http1"` or `"h2c"`; anything else is an error naming the valid values.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(UpstreamProtocol::Auto),
            "http1" => Ok(UpstreamProtocol::Http1),
            "h2c" => Ok(UpstreamProtocol::H2c),
            _ => Err(UnknownUpstreamProtocol(value.to_owned())),
        }
    }
}

/// An `upstream-protocol` other than `"auto"`, `"http1"` or `"h2c"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upstream-protocol {0:?} is not one of \"auto\", \"http1\", \"h2c\"")]
pub struct UnknownUpstreamProtocol(pub String);

/// The operating system's trusted CA certificates, read once (at startup): on Linux from
/// `/etc/ssl/certs` or wherever `SSL_CERT_FILE` / `SSL_CERT_DIR` point.
#[derive(Debug, Clone)]
pub struct SystemRoots {
    roots: RootCertStore,
    /// Why some certificates or directories could not be read, for a startup warning.
    problems: Vec<String>,
}

impl SystemRoots {
    /// Reads the system store (blocking). Never fails: a missing or empty store gives no
    /// roots, and [`SystemRoots::problems`] and [`SystemRoots::len`] say so, for a warning
    /// (with no roots, only `upstream-ca` certificates verify).
    pub fn load() -> SystemRoots {
        let found = rustls_native_certs::load_native_certs();
        let mut problems: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
        let mut roots = RootCertStore::empty();
        let (_, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            problems.push(format!(
                "{ignored} system certificates could not be used as trust anchors"
            ));
        }
        SystemRoots { roots, problems }
    }

    /// No system roots at all: only `upstream-ca` is trusted. For tests, and for an operator
    /// who wants a private PKI only.
    pub fn empty() -> SystemRoots {
        SystemRoots {
            roots: RootCertStore::empty(),
            problems: Vec::new(),
        }
    }

    /// How many trust anchors were loaded.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// True when no trust anchor was loaded.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// What went wrong while reading the store, one message each.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// Reads an `upstream-ca` PEM bundle: every certificate in it (blocking file read).
pub fn load_ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let pem = std::fs::read(path).map_err(|source| ClientTlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ClientTlsError::Pem {
            path: path.to_owned(),
            reason: describe_pem_error(&e),
        })?;
    if certs.is_empty() {
        return Err(ClientTlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Builds the rustls client configuration for a domain's `https` upstreams: trusting
/// `system` plus every certificate of the `upstream_ca` bundle, offering ALPN per `protocol`,
/// sending SNI (the upstream's host name; none for an IP address, which is verified against
/// the certificate's IP SANs). Verification is always on: there is no way to turn it off.
///
/// Errors name the bundle file: unreadable, malformed PEM, no certificate, or a certificate
/// that cannot be a trust anchor.
pub fn client_config(
    system: &SystemRoots,
    upstream_ca: Option<&Path>,
    protocol: UpstreamProtocol,
    provider: Arc<CryptoProvider>,
) -> Result<ClientConfig, ClientTlsError> {
    let mut roots = system.roots.clone();
    if let Some(path) = upstream_ca {
        for (index, cert) in load_ca_bundle(path)?.into_iter().enumerate() {
            roots
                .add(cert)
                .map_err(|source| ClientTlsError::BadCaCertificate {
                    path: path.to_owned(),
                    number: index + 1,
                    source,
                })?;
        }
    }
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ClientTlsError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = protocol.alpn_protocols();
    Ok(config)
}

/// Why an upstream TLS configuration could not be built. File errors start with the file.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// The bundle could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM section of the bundle is malformed.
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    /// The bundle holds no certificate.
    #[error("{}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) found", path.display())]
    NoCertificate { path: PathBuf },
    /// The `number`th certificate of the bundle (from 1) cannot be a trust anchor.
    #[error("{}: certificate {number} cannot be a trust anchor: {source}", path.display())]
    BadCaCertificate {
        path: PathBuf,
        number: usize,
        #[source]
        source: rustls::Error,
    },
    /// The crypto provider does not support the default TLS versions.
    #[error("TLS client setup: {0}")]
    Rustls(#[source] rustls::Error),
}
