//! `api-key-auth` (SPEC §10): no key header → 401 with `WWW-Authenticate: ApiKey
//! header="<name>"`, a key not allowed → 403. Keys are compared in constant time as SHA-256
//! digests ([`KeyMatcher`]) and never logged (only an 8-hex-digit label of a refused key's
//! digest, at debug level).

use std::sync::Arc;
use std::time::{Duration, Instant};

use buckler_config::AllowedKey;
use buckler_policy::KeyMatcher;
use http::{HeaderMap, HeaderName};

use super::stats::{MiddlewareStats, Outcome};
use crate::error::GatewayError;

/// One `api-key-auth` middleware.
#[derive(Debug)]
pub(crate) struct ApiKeyAuth {
    pub(crate) id: Arc<str>,
    sla: Duration,
    header: HeaderName,
    matcher: KeyMatcher,
    strip_header: bool,
    pub(crate) stats: Arc<MiddlewareStats>,
}

impl ApiKeyAuth {
    /// Builds it from its settings; `env:` entries are read now. Errors name the entry's
    /// position, never a key.
    pub(crate) fn build(
        id: Arc<str>,
        sla: Duration,
        header_name: &str,
        allowed: &[AllowedKey],
        case_sensitive: bool,
        strip_header: bool,
        stats: Arc<MiddlewareStats>,
    ) -> Result<ApiKeyAuth, String> {
        let header = HeaderName::from_bytes(header_name.as_bytes())
            .map_err(|_| format!("header-name {header_name:?} is not a header name"))?;
        let entries: Vec<String> = allowed
            .iter()
            .map(|entry| match entry {
                AllowedKey::Literal(key) => key.clone(),
                AllowedKey::Env(name) => format!("env:{name}"),
                AllowedKey::Sha256(digest) => {
                    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                    format!("sha256:{hex}")
                }
            })
            .collect();
        let matcher = KeyMatcher::new(&entries, case_sensitive, |name| std::env::var(name).ok())
            .map_err(|e| format!("allowed: {e}"))?;
        Ok(ApiKeyAuth {
            id,
            sla,
            header,
            matcher,
            strip_header,
            stats,
        })
    }

    /// Checks the request's key; on success removes the header when `strip-header` asks.
    /// Past the `sla` (measured from `started`) the request is refused with 503.
    pub(crate) fn check(
        &self,
        headers: &mut HeaderMap,
        started: Instant,
    ) -> Result<(), GatewayError> {
        let verdict = match headers.get(&self.header) {
            None => Err(GatewayError::ApiKeyMissing {
                header: self.header.as_str().to_owned(),
            }),
            Some(value) if self.matcher.matches(value.as_bytes()) => Ok(()),
            Some(value) => {
                tracing::debug!(
                    middleware = %self.id,
                    key = KeyMatcher::log_label(value.as_bytes()),
                    "api key refused"
                );
                Err(GatewayError::ApiKeyWrong)
            }
        };
        if started.elapsed() > self.sla {
            self.stats.count_sla_exceeded();
            return Err(GatewayError::MiddlewareUnavailable {
                id: self.id.to_string(),
            });
        }
        match verdict {
            Ok(()) => {
                self.stats.count(Outcome::AuthAllowed);
                if self.strip_header {
                    headers.remove(&self.header);
                }
                Ok(())
            }
            Err(error) => {
                self.stats.count(Outcome::AuthDenied);
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(allowed: &[AllowedKey], case_sensitive: bool, strip: bool) -> ApiKeyAuth {
        ApiKeyAuth::build(
            Arc::from("auth"),
            Duration::from_secs(1),
            "x-api-key",
            allowed,
            case_sensitive,
            strip,
            Arc::default(),
        )
        .unwrap()
    }

    fn headers(key: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            headers.insert("x-api-key", key.parse().unwrap());
        }
        headers
    }

    #[test]
    fn missing_is_401_wrong_is_403_right_passes() {
        let auth = auth(&[AllowedKey::Literal("Secret".into())], true, false);
        let now = Instant::now();
        assert!(matches!(
            auth.check(&mut headers(None), now),
            Err(GatewayError::ApiKeyMissing { .. })
        ));
        assert!(matches!(
            auth.check(&mut headers(Some("secret")), now),
            Err(GatewayError::ApiKeyWrong)
        ));
        let mut ok = headers(Some("Secret"));
        auth.check(&mut ok, now).unwrap();
        assert!(ok.contains_key("x-api-key"), "forwarded by default");
        assert_eq!(auth.stats.get(Outcome::AuthAllowed), 1);
        assert_eq!(auth.stats.get(Outcome::AuthDenied), 2);
    }

    #[test]
    fn case_insensitive_and_strip_and_digest_and_env() {
        std::env::set_var("BUCKLER_MW_TEST_KEY", "from-env");
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(b"hashed").into();
        let auth = auth(
            &[
                AllowedKey::Literal("Secret".into()),
                AllowedKey::Env("BUCKLER_MW_TEST_KEY".into()),
                AllowedKey::Sha256(digest),
            ],
            false,
            true,
        );
        let now = Instant::now();
        for key in ["sEcReT", "FROM-ENV", "hashed"] {
            let mut h = headers(Some(key));
            auth.check(&mut h, now)
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(!h.contains_key("x-api-key"), "stripped");
        }
        // sha256 entries are always exact.
        assert!(auth.check(&mut headers(Some("HASHED")), now).is_err());
    }

    #[test]
    fn a_missing_env_key_is_a_build_error_without_the_value() {
        let error = ApiKeyAuth::build(
            Arc::from("auth"),
            Duration::from_secs(1),
            "x-api-key",
            &[AllowedKey::Env("BUCKLER_MW_TEST_UNSET".into())],
            true,
            false,
            Arc::default(),
        )
        .unwrap_err();
        assert!(error.contains("BUCKLER_MW_TEST_UNSET"), "{error}");
    }

    #[test]
    fn past_its_sla_auth_refuses_with_503() {
        let auth = ApiKeyAuth::build(
            Arc::from("auth"),
            Duration::ZERO,
            "x-api-key",
            &[AllowedKey::Literal("k".into())],
            true,
            false,
            Arc::default(),
        )
        .unwrap();
        let started = Instant::now() - Duration::from_millis(5);
        let error = auth.check(&mut headers(Some("k")), started).unwrap_err();
        assert_eq!(error.status(), 503);
        assert_eq!(auth.stats.sla_exceeded(), 1);
    }
}
