//! Each domain's upstream pool (SPEC §2 `connect-timeout`, `upstream-ca`, `upstream-protocol`;
//! §9): the [`UpstreamClientSettings`] a domain asks for, and the pool the shared
//! [`HttpUpstreamClient`] keeps for them. Dispatch, the docs loader and health checks all go
//! through the domain's pool, so a document fetch is verified and spoken to exactly as requests
//! are.
//!
//! Built when the table is first built and again on every reload, before anything changes: a
//! bad `upstream-ca` fails the start, or refuses the reload (the configuration in force keeps
//! working), with an error naming the domain, the key and the file.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use buckler_config::DomainConfig;
use buckler_tls::{ClientTlsError, SystemRoots};
use buckler_upstream::{
    HttpUpstreamClient, UpstreamClientSettings, UpstreamPool, UpstreamProtocol,
};

/// The platform's trust anchors, read on first need (only a domain with `upstream-ca` needs
/// them here; the shared client reads its own for the others).
static SYSTEM_ROOTS: OnceLock<SystemRoots> = OnceLock::new();

/// A domain's upstream client: its settings and the pool made for them.
#[derive(Debug, Clone)]
pub(crate) struct DomainClient {
    settings: UpstreamClientSettings,
    /// The `upstream-ca` bundle the TLS config was built from (path and contents), so a
    /// reload that leaves it alone keeps the same config and therefore the same pool.
    ca_bundle: Option<(PathBuf, Vec<u8>)>,
    pool: UpstreamPool,
}

/// Why a domain's upstream client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("upstream-ca: {0}")]
pub struct UpstreamCaError(#[source] pub ClientTlsError);

impl DomainClient {
    /// The client for `settings`, reusing `previous`'s TLS configuration (and so its pool,
    /// idle connections included) when the `upstream-ca` file and `upstream-protocol` did not
    /// change. Reads the CA bundle (blocking, a small file).
    pub(crate) fn build(
        client: &HttpUpstreamClient,
        settings: &DomainConfig,
        previous: Option<&DomainClient>,
    ) -> Result<DomainClient, UpstreamCaError> {
        let protocol = protocol_of(settings.upstream_protocol);
        let (tls, ca_bundle) = match &settings.upstream_ca {
            None => (None, None),
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| {
                    UpstreamCaError(ClientTlsError::Read {
                        path: path.clone(),
                        source,
                    })
                })?;
                let reused = previous.and_then(|old| {
                    let same = old.settings.protocol == protocol
                        && old
                            .ca_bundle
                            .as_ref()
                            .is_some_and(|(p, b)| p == path && *b == bytes);
                    same.then(|| old.settings.tls.clone()).flatten()
                });
                let tls = match reused {
                    Some(tls) => tls,
                    None => Arc::new(
                        buckler_tls::client_config(
                            system_roots(),
                            Some(path),
                            tls_protocol(settings.upstream_protocol),
                            buckler_tls::crypto_provider(),
                        )
                        .map_err(UpstreamCaError)?,
                    ),
                };
                (Some(tls), Some((path.clone(), bytes)))
            }
        };
        let defaults = UpstreamClientSettings::default();
        let client_settings = UpstreamClientSettings {
            connect_timeout: settings.connect_timeout,
            idle_timeout: defaults.idle_timeout,
            max_idle_per_host: defaults.max_idle_per_host,
            protocol,
            tls,
        };
        Ok(DomainClient {
            pool: client.pool(&client_settings),
            settings: client_settings,
            ca_bundle,
        })
    }

    /// The pool every request, document fetch and health check of the domain goes through.
    pub(crate) fn pool(&self) -> &UpstreamPool {
        &self.pool
    }

    /// Whether `other` is the same pool (same settings, same TLS configuration): when it is
    /// not, a reload restarts the domain's docs loaders and health checks on the new one.
    pub(crate) fn same_pool(&self, other: &DomainClient) -> bool {
        let (a, b) = (&self.settings, &other.settings);
        a.connect_timeout == b.connect_timeout
            && a.idle_timeout == b.idle_timeout
            && a.max_idle_per_host == b.max_idle_per_host
            && a.protocol == b.protocol
            && match (&a.tls, &b.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// Reads and checks a domain's `upstream-ca` bundle as [`DomainClient::build`] would, without
/// making a pool (for `buckler check`). `Ok` without `upstream-ca`.
pub(crate) fn check_upstream_ca(settings: &DomainConfig) -> Result<(), UpstreamCaError> {
    let Some(path) = &settings.upstream_ca else {
        return Ok(());
    };
    buckler_tls::client_config(
        system_roots(),
        Some(path),
        tls_protocol(settings.upstream_protocol),
        buckler_tls::crypto_provider(),
    )
    .map(drop)
    .map_err(UpstreamCaError)
}

/// The platform's trust anchors (read once, blocking), with a warning per problem.
fn system_roots() -> &'static SystemRoots {
    SYSTEM_ROOTS.get_or_init(|| {
        let roots = SystemRoots::load();
        for problem in roots.problems() {
            tracing::warn!("reading the platform's root certificates: {problem}");
        }
        roots
    })
}

/// The TLS crate's protocol (the ALPN ids it offers) for the configuration's.
fn tls_protocol(protocol: buckler_config::UpstreamProtocol) -> buckler_tls::UpstreamProtocol {
    match protocol {
        buckler_config::UpstreamProtocol::Auto => buckler_tls::UpstreamProtocol::Auto,
        buckler_config::UpstreamProtocol::Http1 => buckler_tls::UpstreamProtocol::Http1,
        buckler_config::UpstreamProtocol::H2c => buckler_tls::UpstreamProtocol::H2c,
    }
}

/// The upstream crate's protocol for the configuration's.
fn protocol_of(protocol: buckler_config::UpstreamProtocol) -> UpstreamProtocol {
    match protocol {
        buckler_config::UpstreamProtocol::Auto => UpstreamProtocol::Auto,
        buckler_config::UpstreamProtocol::Http1 => UpstreamProtocol::Http1,
        buckler_config::UpstreamProtocol::H2c => UpstreamProtocol::H2c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(extra: &str) -> DomainConfig {
        let text = format!(r#"{{ domains: [{{ "domain-name": "*", {extra} upstreams: [] }}] }}"#);
        buckler_config::parse(&text, std::path::Path::new("/etc/buckler/gw.json5"))
            .unwrap_or_else(|e| panic!("{e}"))
            .domains
            .remove(0)
    }

    #[tokio::test]
    async fn equal_settings_keep_the_pool_and_a_changed_key_moves_to_another() {
        let client = HttpUpstreamClient::new();
        let first = DomainClient::build(&client, &domain(""), None).unwrap();
        let again = DomainClient::build(&client, &domain(""), Some(&first)).unwrap();
        assert!(first.same_pool(&again));
        assert_eq!(
            first.settings.connect_timeout,
            std::time::Duration::from_secs(2)
        );
        for extra in [
            r#""connect-timeout": "1s","#,
            r#""upstream-protocol": "h2c","#,
            r#""upstream-protocol": "http1","#,
        ] {
            let other = DomainClient::build(&client, &domain(extra), Some(&first)).unwrap();
            assert!(!first.same_pool(&other), "{extra}");
        }
        let h2c = DomainClient::build(&client, &domain(r#""upstream-protocol": "h2c","#), None);
        assert_eq!(h2c.unwrap().settings.protocol, UpstreamProtocol::H2c);
    }

    #[tokio::test]
    async fn a_bad_bundle_is_an_error_naming_the_key_and_the_file() {
        let client = HttpUpstreamClient::new();
        let missing = DomainClient::build(&client, &domain(r#""upstream-ca": "nope.pem","#), None)
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("upstream-ca: /etc/buckler/nope.pem: cannot read"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("buckler-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "no certificate here\n").unwrap();
        let extra = format!("\"upstream-ca\": {:?},", path.display().to_string());
        let empty = DomainClient::build(&client, &domain(&extra), None)
            .unwrap_err()
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            empty.starts_with(&format!(
                "upstream-ca: {}: no PEM certificate",
                path.display()
            )),
            "{empty}"
        );
    }
}
