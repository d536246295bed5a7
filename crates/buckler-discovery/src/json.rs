//! The JSON Buckler writes: an upstream list, and the change record beside it (`KEY/meta`).

use std::collections::BTreeMap;

use buckler_config::UpstreamSpec;
use serde_json::{json, Map, Value};

use crate::rfc3339::{format_rfc3339, parse_rfc3339};
use crate::ChangeMeta;

/// A list as strict JSON, one object per line, that [`buckler_config::parse_upstreams`] reads
/// back to the same list (locations normalised). An empty list is `[]`.
pub fn upstreams_to_json(specs: &[UpstreamSpec]) -> String {
    if specs.is_empty() {
        return "[]\n".to_owned();
    }
    let lines: Vec<String> = specs
        .iter()
        .map(|spec| {
            let object = json!({
                "serviceType": spec.service_type.as_str(),
                "serviceLocation": spec.identity(),
                "weight": spec.weight,
            });
            format!("  {object}")
        })
        .collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

/// `{"changedAt": "...", "from": {...}}`.
pub(crate) fn meta_to_json(meta: &ChangeMeta) -> String {
    let from: Map<String, Value> = meta
        .from
        .iter()
        .filter_map(|(location, weight)| {
            serde_json::Number::from_f64(*weight).map(|n| (location.clone(), Value::Number(n)))
        })
        .collect();
    json!({ "changedAt": format_rfc3339(meta.changed_at), "from": from }).to_string()
}

/// Reads a change record; `None` when it is not one (then the value is anchored to when it was
/// seen). Entries of `from` that are not non-negative finite numbers are skipped.
pub(crate) fn meta_from_json(bytes: &[u8]) -> Option<ChangeMeta> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let changed_at = parse_rfc3339(value.get("changedAt")?.as_str()?)?;
    let from = match value.get("from") {
        Some(Value::Object(entries)) => entries
            .iter()
            .filter_map(|(location, weight)| {
                let weight = weight.as_f64()?;
                (weight.is_finite() && weight >= 0.0).then(|| (location.clone(), weight))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    Some(ChangeMeta { changed_at, from })
}
