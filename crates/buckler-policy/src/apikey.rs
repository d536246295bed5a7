//! Constant-time API-key matching for `api-key-auth` (SPEC §10).
//!
//! Every allowed key is kept only as a SHA-256 digest. A presented key is hashed (twice at
//! most: as sent, and in ASCII lower case when some entry is case-insensitive) and its digest
//! compared with every entry's using `subtle`, with no early exit, so the time taken does not
//! depend on which entry (if any) matched nor on how much of a key was right. Keys are never
//! printed: [`KeyMatcher`]'s `Debug` shows only the number of entries.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// An `allowed` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// `env:NAME` names a variable that is not set (or not Unicode).
    #[error("allowed[{index}]: environment variable {name} is not set")]
    MissingEnv {
        /// Position in `allowed`.
        index: usize,
        /// The variable's name.
        name: String,
    },
    /// `sha256:` not followed by 64 hex digits.
    #[error("allowed[{index}]: sha256: must be followed by 64 hex digits")]
    BadDigest {
        /// Position in `allowed`.
        index: usize,
    },
    /// An empty key (also an `env:` variable set to the empty string).
    #[error("allowed[{index}]: an empty key")]
    Empty {
        /// Position in `allowed`.
        index: usize,
    },
}

#[derive(Clone, Copy)]
struct Entry {
    digest: [u8; 32],
    /// Compare against the digest of the lower-cased presented key.
    folded: bool,
}

/// The allowed keys of one `api-key-auth` middleware, as digests.
#[derive(Clone)]
pub struct KeyMatcher {
    entries: Vec<Entry>,
    any_folded: bool,
    any_exact: bool,
}

impl std::fmt::Debug for KeyMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMatcher")
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn digest_of(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

fn folded_digest_of(key: &[u8]) -> [u8; 32] {
    // Lower-case through a small stack buffer: no allocation on the request path.
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64];
    for chunk in key.chunks(buf.len()) {
        let out = &mut buf[..chunk.len()];
        out.copy_from_slice(chunk);
        out.make_ascii_lowercase();
        hasher.update(&*out);
    }
    hasher.finalize().into()
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

impl KeyMatcher {
    /// Builds the matcher from `allowed` entries: a literal key, `env:NAME` (read now through
    /// `env`, e.g. `|n| std::env::var(n).ok()`), or `sha256:HEX` (the hex digest of the key,
    /// either case; always compared exactly). With `case_sensitive` false, literal and `env:`
    /// keys match in ASCII lower case. Errors name the entry's position, never its value.
    pub fn new<S: AsRef<str>>(
        allowed: &[S],
        case_sensitive: bool,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, KeyError> {
        let mut entries = Vec::with_capacity(allowed.len());
        for (index, entry) in allowed.iter().enumerate() {
            let entry = entry.as_ref();
            let made = if let Some(hex) = entry.strip_prefix("sha256:") {
                Entry {
                    digest: parse_hex_digest(hex).ok_or(KeyError::BadDigest { index })?,
                    folded: false,
                }
            } else {
                let key = match entry.strip_prefix("env:") {
                    Some(name) => env(name).ok_or_else(|| KeyError::MissingEnv {
                        index,
                        name: name.to_owned(),
                    })?,
                    None => entry.to_owned(),
                };
                if key.is_empty() {
                    return Err(KeyError::Empty { index });
                }
                if case_sensitive {
                    Entry {
                        digest: digest_of(key.as_bytes()),
                        folded: false,
                    }
                } else {
                    Entry {
                        digest: folded_digest_of(key.as_bytes()),
                        folded: true,
                    }
                }
            };
            entries.push(made);
        }
        Ok(KeyMatcher {
            any_folded: entries.iter().any(|e| e.folded),
            any_exact: entries.iter().any(|e| !e.folded),
            entries,
        })
    }

    /// Number of allowed entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is allowed (every request is then refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `presented` (the header's raw value) is an allowed key. Compares against every
    /// entry, without stopping at a match. An empty value never matches.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let exact = if self.any_exact {
            digest_of(presented)
        } else {
            [0; 32]
        };
        let folded = if self.any_folded {
            folded_digest_of(presented)
        } else {
            [0; 32]
        };
        let mut found = Choice::from(0);
        for entry in &self.entries {
            let candidate = if entry.folded { &folded } else { &exact };
            found |= candidate.ct_eq(&entry.digest);
        }
        bool::from(found) && !presented.is_empty()
    }

    /// A short, non-reversible label of a presented key for logs: the first 8 hex digits of
    /// its SHA-256 (SPEC: keys are never logged).
    pub fn log_label(presented: &[u8]) -> String {
        let digest = digest_of(presented);
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn hex(digest: [u8; 32]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn literal_keys_match_exactly_by_default() {
        let m = KeyMatcher::new(&["alpha", "Beta"], true, no_env).unwrap();
        assert!(m.matches(b"alpha"));
        assert!(m.matches(b"Beta"));
        assert!(!m.matches(b"beta"));
        assert!(!m.matches(b"alph"));
        assert!(!m.matches(b"alphaa"));
        assert!(!m.matches(b""));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn case_insensitive_compares_lower_case_forms() {
        let m = KeyMatcher::new(&["Alpha-KEY"], false, no_env).unwrap();
        assert!(m.matches(b"alpha-key"));
        assert!(m.matches(b"ALPHA-KEY"));
        assert!(!m.matches(b"alpha-kez"));
        // Longer than the 64-byte lower-casing buffer.
        let long = "K".repeat(200);
        let m = KeyMatcher::new(&[long.as_str()], false, no_env).unwrap();
        assert!(m.matches("k".repeat(200).as_bytes()));
        assert!(!m.matches("k".repeat(199).as_bytes()));
    }

    #[test]
    fn sha256_entries_are_always_exact() {
        let digest = hex(digest_of(b"Secret"));
        let upper = digest.to_uppercase();
        let m = KeyMatcher::new(
            &[format!("sha256:{digest}"), format!("sha256:{upper}")],
            false,
            no_env,
        )
        .unwrap();
        assert!(m.matches(b"Secret"));
        assert!(
            !m.matches(b"secret"),
            "sha256: ignores case-sensitive: false"
        );
        assert_eq!(
            KeyMatcher::new(&["sha256:abc"], true, no_env).unwrap_err(),
            KeyError::BadDigest { index: 0 }
        );
        let bad = format!("sha256:{}", "g".repeat(64));
        assert!(KeyMatcher::new(&[bad], true, no_env).is_err());
    }

    #[test]
    fn env_entries_are_resolved_when_built() {
        let env = |name: &str| (name == "API_KEY").then(|| "from-env".to_string());
        let m = KeyMatcher::new(&["env:API_KEY"], true, env).unwrap();
        assert!(m.matches(b"from-env"));
        assert!(!m.matches(b"env:API_KEY"));
        let err = KeyMatcher::new(&["ok", "env:NOPE"], true, env).unwrap_err();
        assert_eq!(
            err,
            KeyError::MissingEnv {
                index: 1,
                name: "NOPE".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "allowed[1]: environment variable NOPE is not set"
        );
        let empty = |_: &str| Some(String::new());
        assert_eq!(
            KeyMatcher::new(&["env:E"], true, empty).unwrap_err(),
            KeyError::Empty { index: 0 }
        );
    }

    #[test]
    fn debug_never_shows_keys() {
        let m = KeyMatcher::new(&["super-secret-key"], true, no_env).unwrap();
        let shown = format!("{m:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("entries: 1"), "{shown}");
        let label = KeyMatcher::log_label(b"super-secret-key");
        assert_eq!(label.len(), 8);
        assert!(!label.contains("secret"));
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let m = KeyMatcher::new::<&str>(&[], true, no_env).unwrap();
        assert!(m.is_empty());
        assert!(!m.matches(b"anything"));
    }
}
