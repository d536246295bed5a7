//! A certificate chain and its private key, read from PEM files and checked together before
//! anything serves them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::validity::{format_unix, parse_validity, unix_seconds};

/// Where a certificate pair's two PEM files are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairPaths {
    /// The certificate chain: the server's own certificate first, then its intermediates.
    pub cert: PathBuf,
    /// The private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`), unencrypted.
    pub key: PathBuf,
}

impl PairPaths {
    /// A pair of paths, as given.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        PairPaths {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// A certificate chain and private key that were read, parsed and checked together: the key
/// matches the first certificate, and that certificate was valid at the time given to
/// [`CertificatePair::load`].
#[derive(Debug, Clone)]
pub struct CertificatePair {
    certified_key: Arc<CertifiedKey>,
    paths: PairPaths,
    not_before: i64,
    not_after: i64,
}

impl CertificatePair {
    /// Reads both files and validates them with [`CertificatePair::from_pem`]. Blocking file
    /// I/O (two small reads).
    pub fn load(
        paths: &PairPaths,
        provider: &CryptoProvider,
        now: SystemTime,
    ) -> Result<Self, PairError> {
        let cert_pem = read(&paths.cert)?;
        let key_pem = read(&paths.key)?;
        Self::from_pem(paths, &cert_pem, &key_pem, provider, now)
    }

    /// Parses and validates a pair from PEM text; `paths` only name the files in errors.
    ///
    /// Checks, in order: the chain has at least one certificate and every PEM section decodes;
    /// the key file holds an unencrypted private key the provider can sign with; the key
    /// matches the first certificate (a chain written CA-first fails here); the first
    /// certificate's validity period contains `now`. Other PEM sections (parameters,
    /// comments) are skipped; only the first private key is used.
    pub fn from_pem(
        paths: &PairPaths,
        cert_pem: &[u8],
        key_pem: &[u8],
        provider: &CryptoProvider,
        now: SystemTime,
    ) -> Result<Self, PairError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PairError::Pem {
                path: paths.cert.clone(),
                reason: describe_pem_error(&e),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(PairError::NoCertificate {
                path: paths.cert.clone(),
                hint: no_certificate_hint(cert_pem),
            });
        };
        let validity = parse_validity(leaf).map_err(|reason| PairError::BadCertificate {
            path: paths.cert.clone(),
            reason: reason.to_owned(),
        })?;
        let key = match PrivateKeyDer::from_pem_slice(key_pem) {
            Ok(key) => key,
            Err(pem::Error::NoItemsFound) => {
                return Err(PairError::NoKey {
                    path: paths.key.clone(),
                    hint: no_key_hint(key_pem),
                })
            }
            Err(e) => {
                return Err(PairError::Pem {
                    path: paths.key.clone(),
                    reason: describe_pem_error(&e),
                })
            }
        };
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|source| PairError::UnusableKey {
                path: paths.key.clone(),
                source,
            })?;
        let certified_key = CertifiedKey::new(chain, signing_key);
        match certified_key.keys_match() {
            Ok(()) => {}
            // A signing key that cannot show its public key (none of aws-lc-rs's) is let
            // through, as rustls's own `CertifiedKey::from_der` does.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(PairError::KeyMismatch {
                    key: paths.key.clone(),
                    cert: paths.cert.clone(),
                })
            }
            Err(other) => {
                return Err(PairError::BadCertificate {
                    path: paths.cert.clone(),
                    reason: other.to_string(),
                })
            }
        }
        let now = unix_seconds(now);
        if now < validity.not_before {
            return Err(PairError::NotYetValid {
                path: paths.cert.clone(),
                not_before: validity.not_before,
            });
        }
        if now > validity.not_after {
            return Err(PairError::Expired {
                path: paths.cert.clone(),
                not_after: validity.not_after,
            });
        }
        Ok(CertificatePair {
            certified_key: Arc::new(certified_key),
            paths: paths.clone(),
            not_before: validity.not_before,
            not_after: validity.not_after,
        })
    }

    /// What rustls serves: the chain and the signing key.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// The files this pair was read from.
    pub fn paths(&self) -> &PairPaths {
        &self.paths
    }

    /// The server certificate's `notAfter`, in seconds since the Unix epoch (UTC): the value
    /// of `buckler_tls_certificate_expiry_timestamp_seconds`.
    pub fn not_after_unix(&self) -> i64 {
        self.not_after
    }

    /// The server certificate's `notBefore`, in seconds since the Unix epoch (UTC).
    pub fn not_before_unix(&self) -> i64 {
        self.not_before
    }

    /// True when both pairs serve the same certificate chain (a key that matches the same
    /// certificate is the same key pair, so the key need not be compared).
    pub fn same_chain_as(&self, other: &CertificatePair) -> bool {
        self.certified_key.cert == other.certified_key.cert
    }
}

/// Why a certificate pair cannot be used. Every message starts with the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum PairError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM section is malformed.
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    /// The certificate file holds no `CERTIFICATE` section.
    #[error("{}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) found{hint}", path.display())]
    NoCertificate { path: PathBuf, hint: &'static str },
    /// The first certificate is not X.509 that rustls and this crate can read.
    #[error("{}: the first certificate is not valid X.509: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    /// The key file holds no unencrypted private key.
    #[error("{}: no PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`) found{hint}", path.display())]
    NoKey { path: PathBuf, hint: &'static str },
    /// The private key is of a kind the crypto provider cannot sign with.
    #[error("{}: private key not usable: {source}", path.display())]
    UnusableKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The private key is not the one of the first certificate.
    #[error("{}: private key does not match the certificate in {} (the chain must start with the server's own certificate; during a rotation, the other file may not be written yet)", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    /// The certificate's `notAfter` has passed.
    #[error("{}: certificate expired at {}", path.display(), format_unix(*not_after))]
    Expired { path: PathBuf, not_after: i64 },
    /// The certificate's `notBefore` is still ahead.
    #[error("{}: certificate not valid before {}", path.display(), format_unix(*not_before))]
    NotYetValid { path: PathBuf, not_before: i64 },
}

impl PairError {
    /// The file the error is about (the key file for a mismatch).
    pub fn path(&self) -> &Path {
        match self {
            PairError::Read { path, .. }
            | PairError::Pem { path, .. }
            | PairError::NoCertificate { path, .. }
            | PairError::BadCertificate { path, .. }
            | PairError::NoKey { path, .. }
            | PairError::UnusableKey { path, .. }
            | PairError::Expired { path, .. }
            | PairError::NotYetValid { path, .. } => path,
            PairError::KeyMismatch { key, .. } => key,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PairError> {
    std::fs::read(path).map_err(|source| PairError::Read {
        path: path.to_owned(),
        source,
    })
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn no_key_hint(key_pem: &[u8]) -> &'static str {
    if contains(key_pem, "ENCRYPTED PRIVATE KEY") || contains(key_pem, "Proc-Type: 4,ENCRYPTED") {
        " (it is encrypted: store it decrypted, readable only by Buckler's user)"
    } else if contains(key_pem, "BEGIN CERTIFICATE") {
        " (it holds a certificate: are `cert` and `key` swapped?)"
    } else {
        ""
    }
}

fn no_certificate_hint(cert_pem: &[u8]) -> &'static str {
    if contains(cert_pem, "PRIVATE KEY") {
        " (it holds a private key: are `cert` and `key` swapped?)"
    } else {
        ""
    }
}

/// pki-types' own messages print byte strings as lists of numbers; these say it in words.
pub(crate) fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "a section is not closed (no `-----END {}-----` line)",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed section start `{}`",
            String::from_utf8_lossy(line).trim()
        ),
        pem::Error::Base64Decode(reason) => format!("bad base64 in a section: {reason}"),
        other => other.to_string(),
    }
}

impl fmt::Display for PairPaths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} + {}", self.cert.display(), self.key.display())
    }
}
