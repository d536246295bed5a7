//! The JSON of etcd's v3 gateway (`/v3/...`, served by etcd 3.4 and later): keys and values are
//! base64, int64s are strings, and fields at their default (false, 0, "", PUT) are left out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer};

pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// An int64 as etcd writes it (a string), or a plain number.
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(i64),
    }
    match Int64::deserialize(deserializer)? {
        Int64::Number(n) => Ok(n),
        Int64::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// Base64 text decoded to bytes.
fn base64_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Header {
    #[serde(default, deserialize_with = "int64")]
    pub(crate) revision: i64,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyValue {
    #[serde(default, deserialize_with = "base64_bytes")]
    pub(crate) key: Vec<u8>,
    #[serde(default, deserialize_with = "base64_bytes")]
    pub(crate) value: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    pub(crate) mod_revision: i64,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) kvs: Vec<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TxnResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) succeeded: bool,
    #[serde(default)]
    pub(crate) responses: Vec<TxnOpResponse>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TxnOpResponse {
    #[serde(default)]
    pub(crate) response_range: Option<RangeResponse>,
}

/// One object of a watch stream: a result, or an error the gateway reports mid-stream.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchEnvelope {
    #[serde(default)]
    pub(crate) result: Option<WatchResponse>,
    #[serde(default)]
    pub(crate) error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WatchResponse {
    #[serde(default)]
    pub(crate) header: Option<Header>,
    #[serde(default)]
    pub(crate) created: bool,
    #[serde(default)]
    pub(crate) canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    pub(crate) compact_revision: i64,
    #[serde(default)]
    pub(crate) cancel_reason: String,
    #[serde(default)]
    pub(crate) events: Vec<Event>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Event {
    /// `"DELETE"`; absent for a put.
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) kv: KeyValue,
}

impl Event {
    pub(crate) fn is_delete(&self) -> bool {
        self.kind == "DELETE"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_batch_with_defaults_left_out_parses() {
        let line = r#"{"result":{"header":{"cluster_id":"1","revision":"4","raft_term":"2"},"events":[{"kv":{"key":"L2s=","create_revision":"2","mod_revision":"3","version":"2","value":"WzFd"}},{"type":"DELETE","kv":{"key":"L2svbWV0YQ==","mod_revision":"4"}}]}}"#;
        let envelope: WatchEnvelope = serde_json::from_str(line).unwrap();
        let result = envelope.result.unwrap();
        assert_eq!(result.header.unwrap().revision, 4);
        assert!(!result.created && !result.canceled);
        assert_eq!(result.events[0].kv.key, b"/k");
        assert_eq!(result.events[0].kv.value, b"[1]");
        assert_eq!(result.events[0].kv.mod_revision, 3);
        assert!(!result.events[0].is_delete());
        assert!(result.events[1].is_delete());
        assert!(result.events[1].kv.value.is_empty());
    }

    #[test]
    fn a_compacted_cancel_parses() {
        let line = r#"{"result":{"header":{"cluster_id":"1","raft_term":"2"},"canceled":true,"compact_revision":"3"}}"#;
        let result: WatchEnvelope = serde_json::from_str(line).unwrap();
        let result = result.result.unwrap();
        assert!(result.canceled);
        assert_eq!(result.compact_revision, 3);
    }
}
