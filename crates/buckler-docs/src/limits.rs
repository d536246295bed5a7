//! Caps that keep hostile documents from costing more than a clear error.

use std::cell::Cell;

/// Size caps for one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest document in bytes (default 16 MiB).
    pub max_bytes: usize,
    /// Most paths (default 10,000).
    pub max_paths: usize,
    /// Most operations (default 50,000).
    pub max_operations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 * 1024 * 1024,
            max_paths: 10_000,
            max_operations: 50_000,
        }
    }
}

thread_local! {
    /// Path limit in force while a document deserialises on this thread.
    pub(crate) static PATH_LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Deserialises a JSON object into an `IndexMap`, failing as soon as it has more entries
/// than [`PATH_LIMIT`] allows (so 200,000 paths are refused before they are all built).
pub(crate) fn limited_map<'de, D, V>(deserializer: D) -> Result<indexmap::IndexMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: serde::Deserialize<'de>,
{
    struct Visitor<V>(std::marker::PhantomData<V>);
    impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visitor<V> {
        type Value = indexmap::IndexMap<String, V>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of paths")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let limit = PATH_LIMIT.with(Cell::get);
            let mut map = indexmap::IndexMap::new();
            while let Some((key, value)) = access.next_entry::<String, V>()? {
                if map.len() >= limit {
                    return Err(serde::de::Error::custom(format!("more than {limit} paths")));
                }
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    deserializer.deserialize_map(Visitor(std::marker::PhantomData))
}

/// Runs `parse` with the path limit set, mapping the limit's own error to
/// [`crate::DocsError::TooManyPaths`].
pub(crate) fn with_path_limit<T>(
    limits: &Limits,
    parse: impl FnOnce() -> Result<T, serde_json::Error>,
) -> Result<T, crate::DocsError> {
    PATH_LIMIT.with(|l| l.set(limits.max_paths));
    let result = parse();
    PATH_LIMIT.with(|l| l.set(usize::MAX));
    result.map_err(|e| {
        if e.to_string().contains(&format!("more than {} paths", limits.max_paths)) {
            crate::DocsError::TooManyPaths { limit: limits.max_paths }
        } else {
            crate::DocsError::from_json(&e)
        }
    })
}
