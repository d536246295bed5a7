//! Placeholder until the kv crate lands.
