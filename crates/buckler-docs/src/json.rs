//! Reading JSON and YAML documents defensively: size first, then a cheap census (version, path
//! and operation counts) that refuses oversized documents before any model is built, then the
//! typed parse, whose errors carry line, column and path.

use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{DocFormat, DocsError, Limits};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Deepest nesting of a YAML document, as serde_json's fixed recursion limit for JSON.
pub(crate) const MAX_DEPTH: usize = 128;

/// A document's bytes, size-checked, byte-order mark removed, in the format it will be read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    Json(&'a [u8]),
    Yaml(&'a str),
}

/// Checks the size, strips a UTF-8 byte-order mark and decides the format: YAML when `hint`
/// says so, else by content ([`DocFormat::sniff`]). YAML must be UTF-8.
pub(crate) fn read_body<'a>(
    bytes: &'a [u8],
    limits: &Limits,
    hint: Option<DocFormat>,
) -> Result<Body<'a>, DocsError> {
    if bytes.len() > limits.max_bytes {
        return Err(DocsError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    let format = match hint {
        Some(DocFormat::Yaml) => DocFormat::Yaml,
        _ => DocFormat::sniff(body),
    };
    match format {
        DocFormat::Json => Ok(Body::Json(body)),
        DocFormat::Yaml => match std::str::from_utf8(body) {
            Ok(text) => Ok(Body::Yaml(text)),
            Err(error) => {
                let valid = &body[..error.valid_up_to()];
                let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
                let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                Err(DocsError::Json {
                    line,
                    column: valid.len() - line_start + 1,
                    path: String::new(),
                    message: "a YAML document must be UTF-8".to_owned(),
                })
            }
        },
    }
}

impl DocFormat {
    /// The format a `Content-Type` names: YAML for `application/yaml`, `application/x-yaml`,
    /// `text/yaml`, `text/x-yaml`, any `+yaml` suffix and `application/vnd.oai.openapi`
    /// (registered as YAML); JSON for `application/json`, `text/json` and any `+json` suffix.
    /// Parameters and case are ignored; anything else (`text/plain`,
    /// `application/octet-stream`) is `None`: the content decides.
    pub fn from_content_type(content_type: &str) -> Option<DocFormat> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/yaml"
            | "application/x-yaml"
            | "text/yaml"
            | "text/x-yaml"
            | "application/vnd.oai.openapi" => Some(DocFormat::Yaml),
            "application/json" | "text/json" => Some(DocFormat::Json),
            other if other.ends_with("+yaml") => Some(DocFormat::Yaml),
            other if other.ends_with("+json") => Some(DocFormat::Json),
            _ => None,
        }
    }

    /// By content: JSON when the first character (after white space and a byte-order mark)
    /// opens a JSON object or array, else YAML (`openapi: 3.1.0`, `---`, `"swagger": "2.0"`,
    /// a comment). Every JSON document is also YAML 1.2, so a wrong guess towards YAML only
    /// costs speed.
    pub fn sniff(bytes: &[u8]) -> DocFormat {
        let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        match body.trim_ascii_start().first() {
            Some(b'{' | b'[') | None => DocFormat::Json,
            Some(_) => DocFormat::Yaml,
        }
    }
}

/// YAML 1.2 as the core schema reads it (`yes`, `on` are strings; `0o17` octal), one
/// document, duplicate keys refused, with budgets scaled to the document so that a large but
/// honest document passes and an alias bomb does not.
fn yaml_options(len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_documents = 1;
    // Every node and event but an alias's replay costs at least a byte of input.
    budget.max_events = budget.max_events.max(len.saturating_mul(2));
    budget.max_nodes = budget.max_nodes.max(len);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(len);
    budget.max_reader_input_bytes = Some(len);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options.strict_booleans = true;
    options.legacy_octal_numbers = false;
    options
}

/// Parses `body` into `T`, reporting line, column and path on failure.
pub(crate) fn parse_typed<T: DeserializeOwned>(body: Body<'_>) -> Result<T, DocsError> {
    match body {
        Body::Json(bytes) => {
            let mut deserializer = serde_json::Deserializer::from_slice(bytes);
            let value = serde_path_to_error::deserialize(&mut deserializer)
                .map_err(|e| DocsError::tracked(&e))?;
            deserializer
                .end()
                .map_err(|e| DocsError::json(&e, String::new()))?;
            Ok(value)
        }
        Body::Yaml(text) => {
            let mut path = String::new();
            serde_saphyr::with_deserializer_from_str_with_options(
                text,
                yaml_options(text.len()),
                |deserializer| {
                    serde_path_to_error::deserialize(deserializer).map_err(|error| {
                        path = error.path().to_string();
                        error.into_inner()
                    })
                },
            )
            .map_err(|error| DocsError::yaml(&error, path))
        }
    }
}

/// The whole document as a JSON value (YAML keys that are numbers or booleans become their
/// text, as JSON keys must be strings).
pub(crate) fn parse_value(body: Body<'_>) -> Result<Value, DocsError> {
    match body {
        Body::Json(bytes) => {
            serde_json::from_slice(bytes).map_err(|e| DocsError::json(&e, String::new()))
        }
        Body::Yaml(_) => parse_typed(body),
    }
}

/// A version field as text: YAML writes `openapi: 3.0` or `swagger: 2.0` unquoted, a number.
pub(crate) fn version_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
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
pub(crate) fn census(body: Body<'_>, limits: &Limits) -> Result<Census, DocsError> {
    let census: Census = parse_typed(body)?;
    check_counts(census.paths, limits)?;
    Ok(census)
}

/// The census, and for YAML the whole document already read: YAML is slow to parse (2.5 s for
/// a 26 MB document), so it is parsed once, the census taken from the value (its budget bounds
/// the value's size before any count is known). A census error is then read again from the
/// text, for its line and column. JSON: the census alone (`None`), cheap before the full parse.
pub(crate) fn census_and_value(
    body: Body<'_>,
    limits: &Limits,
) -> Result<(Census, Option<Value>), DocsError> {
    let Body::Yaml(_) = body else {
        return Ok((census(body, limits)?, None));
    };
    let value = parse_value(body)?;
    match Census::deserialize(&value) {
        Ok(counted) => {
            check_counts(counted.paths, limits)?;
            Ok((counted, Some(value)))
        }
        Err(error) => Err(census(body, limits).err().unwrap_or(DocsError::Invalid {
            path: ".".to_owned(),
            message: crate::error::tidy(&error.to_string()),
        })),
    }
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

    fn body(bytes: &[u8]) -> Body<'_> {
        read_body(bytes, &Limits::default(), None).unwrap()
    }

    #[test]
    fn yaml_is_recognised_and_json_is_not_mistaken_for_it() {
        for yaml in [
            &b"swagger: '2.0'\n"[..],
            b"---\nopenapi: 3.0.0",
            b"# spec\n{}",
            b"%YAML 1.2\n",
            b"\"swagger\": \"2.0\"\n",
        ] {
            assert!(matches!(body(yaml), Body::Yaml(_)), "{yaml:?}");
        }
        for json in [&b"  {\"a\": 1}"[..], b"[]", b"", b"\xEF\xBB\xBF{}"] {
            assert!(matches!(body(json), Body::Json(_)), "{json:?}");
        }
        assert_eq!(body(b"\xEF\xBB\xBF{}"), Body::Json(b"{}"));
        assert_eq!(
            read_body(b"{a: 1}", &Limits::default(), Some(DocFormat::Yaml)),
            Ok(Body::Yaml("{a: 1}"))
        );
        assert_eq!(
            read_body(b"a: 1", &Limits::default(), Some(DocFormat::Json)),
            Ok(Body::Yaml("a: 1")),
            "a JSON content type on YAML content: the content decides"
        );
    }

    #[test]
    fn content_types() {
        for yaml in [
            "application/yaml",
            "application/x-yaml; charset=utf-8",
            "Text/YAML",
            "text/x-yaml",
            "application/vnd.oai.openapi",
            "application/openapi+yaml",
        ] {
            assert_eq!(
                DocFormat::from_content_type(yaml),
                Some(DocFormat::Yaml),
                "{yaml}"
            );
        }
        for json in [
            "application/json",
            "application/vnd.oai.openapi+json;version=3.0",
            "text/json",
        ] {
            assert_eq!(
                DocFormat::from_content_type(json),
                Some(DocFormat::Json),
                "{json}"
            );
        }
        for other in ["text/plain", "application/octet-stream", ""] {
            assert_eq!(DocFormat::from_content_type(other), None, "{other}");
        }
    }

    #[test]
    fn yaml_that_is_not_utf8_is_refused_with_its_position() {
        let err = read_body(b"a: 1\nb: \xFF\n", &Limits::default(), None).unwrap_err();
        assert!(
            matches!(
                err,
                DocsError::Json {
                    line: 2,
                    column: 4,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn yaml_is_read_as_yaml_1_2() {
        let value = parse_value(body(
            b"a: yes\nb: on\nc: 0o17\nd: ~\n200: x\ne: 1.0\nf: '012'\ng: 0x1F\n",
        ))
        .unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": "yes", "b": "on", "c": 15, "d": null, "200": "x", "e": 1.0, "f": "012", "g": 31})
        );
    }

    #[test]
    fn yaml_errors_carry_line_column_and_path() {
        let err = parse_value(body(b"a: 1\na: 2\n")).unwrap_err();
        let DocsError::Json {
            line,
            column,
            message,
            ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (2, 1), "{err}");
        assert!(message.contains("duplicate"), "{message}");
        assert!(!message.contains("Options"), "{message}");
        let err = census(
            body(b"swagger: '2.0'\npaths:\n  /a: 3\n"),
            &Limits::default(),
        )
        .unwrap_err();
        let DocsError::Json { line, path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, path.as_str()), (3, "paths./a"), "{err}");
        let err = parse_value(body(b"a: [1\n")).unwrap_err();
        assert!(matches!(err, DocsError::Json { line: 1, .. }), "{err:?}");
    }

    #[test]
    fn yaml_depth_and_alias_bombs_are_refused() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_value(body(deep.as_bytes())).is_err());
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse_value(body(bomb.as_bytes())).is_err());
    }

    #[test]
    fn quoted_keys_never_show_a_rust_type_name() {
        for text in [
            &b"\"swagger\": \"2.0\"\n\"paths\": 3\n"[..],
            b"\"just a string\"",
            b"- 1\n",
        ] {
            let err = census(body(text), &Limits::default())
                .unwrap_err()
                .to_string();
            assert!(!err.contains("struct"), "{err}");
            assert!(!err.contains("Census"), "{err}");
        }
    }

    #[test]
    fn a_yaml_census_is_taken_from_the_value_and_its_errors_keep_their_position() {
        let (counted, value) = census_and_value(
            body(b"openapi: 3.0.0\npaths:\n  /a: {get: {}}\n"),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            counted.paths,
            PathCensus {
                paths: 1,
                operations: 1
            }
        );
        assert!(value.is_some());
        let err = census_and_value(
            body(b"openapi: 3.0.0\npaths:\n  /a: 3\n"),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DocsError::Json { line: 3, .. }), "{err:?}");
        let limits = Limits {
            max_paths: 0,
            ..Limits::default()
        };
        let err = census_and_value(body(b"paths:\n  /a: {}\n"), &limits).unwrap_err();
        assert_eq!(err, DocsError::TooManyPaths { count: 1, limit: 0 });
        let (_, value) = census_and_value(body(b"{}"), &Limits::default()).unwrap();
        assert!(value.is_none(), "JSON: census only");
    }

    #[test]
    fn size_is_checked_first() {
        let limits = Limits {
            max_bytes: 3,
            ..Limits::default()
        };
        assert_eq!(
            read_body(b"swagger: x", &limits, None),
            Err(DocsError::TooLarge {
                bytes: 10,
                limit: 3
            })
        );
    }

    #[test]
    fn census_counts_paths_and_methods_but_not_extensions() {
        let text = br#"{"swagger": "2.0", "paths": {
            "/a": {"get": {}, "post": {}, "parameters": [], "x-y": 1},
            "x-ext": [1, 2],
            "/b": {"head": {}, "trace": {}}
        }}"#;
        let census = census(body(text), &Limits::default()).unwrap();
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
        let err = census(body(br#"{"paths": [1]}"#), &Limits::default()).unwrap_err();
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
        let err = parse_typed::<Value>(body(b"{} {}")).unwrap_err();
        assert!(matches!(err, DocsError::Json { line: 1, .. }), "{err:?}");
    }
}
