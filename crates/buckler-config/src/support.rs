//! The one gate for what this build does: every key of SPEC §2 is either built (it works as
//! SPEC says) or refused when present, with `FILE:LINE:COL: <key path>: not supported yet`.
//! [`crate::parse`] and [`crate::load`] apply it, so `buckler check`, `buckler run` and every
//! reload refuse the same keys. A key is never accepted and then ignored.
//!
//! [`KEYS`] is the only list: the commit that makes a key work flips its `false` to `true`.

use crate::errors::Ctx;
use crate::json5::{Kind, Value};

/// Every key of the configuration file, and whether this build acts on it.
///
/// A pattern names where the key sits: `domains[].tls` is the `tls` key of each domain
/// (`[]`: each item of an array, `*`: each entry of an object whose keys are ids). A trailing
/// `=value` narrows a row to the key holding that string (`domains[].kvstores.*.type=redis`).
/// A key is refused when it is present (not `null`) and matches a row marked `false`, whatever
/// its value, its default included. Rows marked `true` refuse nothing; they list what is built
/// and let a test check that every key of the schema has a row.
///
/// The containers `middleware-chain`, `middleware`, `listeners`, `listener-config` and
/// `kvstores` are built: empty, they ask for nothing. What they hold is gated entry by entry
/// (by builder or store type); settings can only name an entry of the chain, so refusing the
/// entry refuses its settings.
pub const KEYS: &[(&str, bool)] = &[
    // Built.
    ("listen", true),
    ("admin", true),
    ("shutdown-grace", true),
    ("trust-proxies", true),
    ("trust-x-forwarded-proto", true),
    ("max-request-body", true),
    ("paths", true),
    ("lambda", true),
    ("docs-limits", true),
    ("domains", true),
    ("domains[].domain-name", true),
    ("domains[].upstream-weighting", true),
    ("domains[].drain-timeout", true),
    ("domains[].request-timeout", true),
    ("domains[].docs-refresh", true),
    ("domains[].ignore-extensions", true),
    ("domains[].upstream-watcher", true),
    ("domains[].upstreams", true),
    ("domains[].upstreams-file", true),
    ("domains[].middleware-chain", true),
    ("domains[].middleware", true),
    ("domains[].listeners", true),
    ("domains[].listener-config", true),
    ("domains[].kvstores", true),
    ("domains[].middleware-chain[].builder=api-key-auth", true),
    ("domains[].middleware-chain[].builder=rate-limit", true),
    ("domains[].middleware-chain[].builder=response-cache", true),
    ("domains[].listeners[].builder=access-log", true),
    ("domains[].log", true),
    ("domains[].kvstores.*.type=memory", true),
    ("domains[].kvstores.*.type=redis", true),
    ("workers", true),
    ("domains[].etcd", true), // with "upstream-watcher": "etcd" (issue 33)
    ("tls", true),
    ("max-connections", true),
    ("client-header-timeout", true),
    ("client-idle-timeout", true),
    ("http2-max-concurrent-streams", true),
    ("domains[].tls", true),
    ("domains[].body-idle-timeout", true),
    ("domains[].circuit-breaker", true),
    ("domains[].health-check", true),
    ("domains[].retry", true),
    ("domains[].connect-timeout", true),
    ("domains[].upstream-ca", true),
    ("domains[].upstream-protocol", true),
    // Not built yet; each names the issue that builds it.
    ("domains[].upstream-weighting.guard", false), // SPEC §14, the ramp guard
];

/// The message of every refusal.
pub const NOT_SUPPORTED: &str = "not supported yet";

/// Whether the row `pattern` of [`KEYS`] is built; `None` when there is no such row.
pub fn is_built(pattern: &str) -> Option<bool> {
    KEYS.iter()
        .find(|(key, _)| *key == pattern)
        .map(|(_, built)| *built)
}

/// Refuses, at its position, every key of `document` that matches a row not built.
pub(crate) fn gate(ctx: &mut Ctx, document: &Value) {
    for (pattern, built) in KEYS {
        if *built {
            continue;
        }
        let (keys, wanted) = match pattern.split_once('=') {
            Some((keys, value)) => (keys, Some(value)),
            None => (*pattern, None),
        };
        let segments: Vec<&str> = keys.split('.').collect();
        let mut found = Vec::new();
        matches(document, &segments, wanted, "", &mut found);
        for (path, line, column) in found {
            ctx.error_pos(line, column, &path, NOT_SUPPORTED);
        }
    }
}

/// Walks `value` along `segments`; each match is (key path, line, column) of the key, or of
/// the value when a `wanted` string narrows the row (it is the value that is not built).
fn matches(
    value: &Value,
    segments: &[&str],
    wanted: Option<&str>,
    path: &str,
    found: &mut Vec<(String, u32, u32)>,
) {
    let Some((segment, rest)) = segments.split_first() else {
        return;
    };
    let Kind::Object(entries) = &value.kind else {
        return;
    };
    let (name, each_item) = match segment.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*segment, false),
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, item) in entries {
        // A repeated key is reported as a duplicate already; the first one is judged.
        if (name != "*" && key.name != name)
            || item.kind == Kind::Null
            || seen.contains(&&*key.name)
        {
            continue;
        }
        seen.push(&key.name);
        let key_path = if path.is_empty() {
            key.name.clone()
        } else {
            format!("{path}.{}", key.name)
        };
        if each_item {
            if let Kind::Array(items) = &item.kind {
                for (index, element) in items.iter().enumerate() {
                    matches(
                        element,
                        rest,
                        wanted,
                        &format!("{key_path}[{index}]"),
                        found,
                    );
                }
            }
            continue;
        }
        if !rest.is_empty() {
            matches(item, rest, wanted, &key_path, found);
            continue;
        }
        match wanted {
            None => found.push((key_path, key.line, key.column)),
            Some(text) => {
                if item.kind == Kind::String(text.to_owned()) {
                    found.push((key_path, item.line, item.column));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{self, Field, Ty};

    fn key_paths(fields: &[Field], prefix: &str, out: &mut Vec<String>) {
        for field in fields {
            let path = if prefix.is_empty() {
                field.key.to_owned()
            } else {
                format!("{prefix}.{}", field.key)
            };
            match field.ty {
                Ty::Object(inner) => key_paths(inner, &path, out),
                Ty::ObjectList(inner) => key_paths(inner, &format!("{path}[]"), out),
                Ty::Map(inner) => key_paths(inner, &format!("{path}.*"), out),
                _ => {}
            }
            out.push(path);
        }
    }

    /// A key added to the schema without a row here would be neither gated nor listed.
    #[test]
    fn every_key_of_the_schema_has_a_row() {
        let mut paths = Vec::new();
        key_paths(schema::ROOT, "", &mut paths);
        for path in &paths {
            let covered = KEYS.iter().any(|(pattern, _)| {
                !pattern.contains('=')
                    && (path == pattern
                        || path.starts_with(&format!("{pattern}."))
                        || path.starts_with(&format!("{pattern}[]")))
            });
            assert!(covered, "{path} has no row in support::KEYS");
        }
        for (pattern, _) in KEYS {
            let keys = pattern.split('=').next().unwrap_or_default();
            assert!(
                paths.iter().any(|p| p == keys),
                "{pattern} names no key of the schema"
            );
        }
    }

    #[test]
    fn is_built_reads_the_table() {
        assert_eq!(is_built("listen"), Some(true));
        assert_eq!(is_built("tls"), Some(true));
        assert_eq!(is_built("domains[].upstream-weighting.guard"), Some(false));
        assert_eq!(is_built("no-such-key"), None);
    }
}
