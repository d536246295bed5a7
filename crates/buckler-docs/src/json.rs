//! Reading JSON documents defensively: size first, then a cheap census (version, path and
//! operation counts) that refuses oversized documents before any model is built, then the
//! typed parse, whose errors carry line, column and JSON path.

use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{DocsError, Limits};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Checks the size, strips a UTF-8 byte-order mark and refuses what starts like YAML.
pub(crate) fn json_body<'a>(bytes: &'a [u8], limits: &Limits) -> Result<&'a [u8], DocsError> {
    if bytes.len() > limits.max_bytes {
        return Err(DocsError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if looks_like_yaml(body) {
        return Err(DocsError::NotJson);
    }
    Ok(body)
}

/// A document is taken for YAML when it does not open a JSON value and its first line is a
/// YAML marker (`---`, `%YAML`, a comment) or a `key: value` pair.
fn looks_like_yaml(body: &[u8]) -> bool {
    let text = body.trim_ascii_start();
    let Some(first) = text.first() else {
        return false;
    };
    if matches!(first, b'{' | b'[' | b'"') {
        return false;
    }
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    line.starts_with(b"---")
        || line.starts_with(b"%YAML")
        || line.starts_with(b"#")
        || line.contains(&b':')
}

/// Parses `body` into `T`, reporting line, column and JSON path on failure.
pub(crate) fn parse_typed<T: DeserializeOwned>(body: &[u8]) -> Result<T, DocsError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| DocsError::tracked(&e))?;
    deserializer
        .end()
        .map_err(|e| DocsError::json(&e, String::new()))?;
    Ok(value)
}

/// What a document claims to be and how much it declares, read without building it.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Census {
    pub swagger: Option<Value>,
    pub openapi: Option<Value>,
    #[serde(default)]
    pub paths: PathCensus,
}

/// Counts of the `paths` object: keys other than `x-` extensions, and the keys of those path
/// items that name an HTTP method (`trace` included; Swagger 2 never declares it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PathCensus {
    pub paths: usize,
    pub operations: usize,
}

const METHOD_KEYS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl<'de> Deserialize<'de> for PathCensus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathsVisitor;
        impl<'de> Visitor<'de> for PathsVisitor {
            type Value = PathCensus;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of paths")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PathCensus, A::Error> {
                let mut census = PathCensus::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key.starts_with("x-") {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        census.paths += 1;
                        census.operations += map.next_value::<OperationCount>()?.0;
                    }
                }
                Ok(census)
            }
        }
        deserializer.deserialize_map(PathsVisitor)
    }
}

struct OperationCount(usize);

impl<'de> Deserialize<'de> for OperationCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = OperationCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path item object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OperationCount, A::Error> {
                let mut count = 0;
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    count += usize::from(METHOD_KEYS.contains(&key.as_str()));
                }
                Ok(OperationCount(count))
            }
        }
        deserializer.deserialize_map(ItemVisitor)
    }
}

/// Reads the census of `body` and enforces the path and operation limits.
pub(crate) fn census(body: &[u8], limits: &Limits) -> Result<Census, DocsError> {
    let census: Census = parse_typed(body)?;
    check_counts(census.paths, limits)?;
    Ok(census)
}

pub(crate) fn check_counts(counts: PathCensus, limits: &Limits) -> Result<(), DocsError> {
    if counts.paths > limits.max_paths {
        return Err(DocsError::TooManyPaths {
            count: counts.paths,
            limit: limits.max_paths,
        });
    }
    if counts.operations > limits.max_operations {
        return Err(DocsError::TooManyOperations {
            count: counts.operations,
            limit: limits.max_operations,
        });
    }
    Ok(())
}

/// Deserialises a JSON object into an ordered map, skipping `x-` extension keys whose values
/// may have any shape (Swagger allows them beside paths and responses).
pub(crate) fn without_extensions<'de, D, V>(
    deserializer: D,
) -> Result<IndexMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct MapVisitor<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
        type Value = IndexMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = IndexMap::new();
            while let Some(key) = access.next_key::<String>()? {
                if key.starts_with("x-") {
                    access.next_value::<IgnoredAny>()?;
                } else {
                    let value = access.next_value::<V>()?;
                    map.insert(key, value);
                }
            }
            Ok(map)
        }
    }
    deserializer.deserialize_map(MapVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_recognised_and_json_is_not_mistaken_for_it() {
        for yaml in [
            &b"swagger: '2.0'\n"[..],
            b"---\nopenapi: 3.0.0",
            b"# spec\n{}",
            b"%YAML 1.2\n",
        ] {
            assert_eq!(
                json_body(yaml, &Limits::default()),
                Err(DocsError::NotJson),
                "{yaml:?}"
            );
        }
        for json in [&b"  {\"a\": 1}"[..], b"[]", b"", b"\xEF\xBB\xBF{}"] {
            assert!(json_body(json, &Limits::default()).is_ok(), "{json:?}");
        }
        assert_eq!(
            json_body(b"\xEF\xBB\xBF{}", &Limits::default()),
            Ok(&b"{}"[..])
        );
    }

    #[test]
    fn size_is_checked_first() {
        let limits = Limits {
            max_bytes: 3,
            ..Limits::default()
        };
        assert_eq!(
            json_body(b"swagger: x", &limits),
            Err(DocsError::TooLarge {
                bytes: 10,
                limit: 3
            })
        );
    }

    #[test]
    fn census_counts_paths_and_methods_but_not_extensions() {
        let body = br#"{"swagger": "2.0", "paths": {
            "/a": {"get": {}, "post": {}, "parameters": [], "x-y": 1},
            "x-ext": [1, 2],
            "/b": {"head": {}, "trace": {}}
        }}"#;
        let census = census(body, &Limits::default()).unwrap();
        assert_eq!(census.swagger, Some(Value::from("2.0")));
        assert_eq!(
            census.paths,
            PathCensus {
                paths: 2,
                operations: 4
            }
        );
    }

    #[test]
    fn census_refuses_paths_that_are_not_a_map() {
        let err = census(br#"{"paths": [1]}"#, &Limits::default()).unwrap_err();
        let DocsError::Json {
            line,
            path,
            message,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((line, path.as_str()), (1, "paths"));
        assert!(message.contains("a map of paths"), "{message}");
    }

    #[test]
    fn trailing_garbage_is_an_error() {
        let err = parse_typed::<Value>(b"{} {}").unwrap_err();
        assert!(matches!(err, DocsError::Json { line: 1, .. }), "{err:?}");
    }
}
