//! Local references (`#/...`, RFC 6901 JSON pointers) inside one document.

use serde_json::{Map, Value};

/// Most references followed from one `$ref` to the object it finally names.
const MAX_HOPS: usize = 16;

/// The object a local reference names, following references to references (up to 16).
/// `Err` says why not, in words for [`crate::DocsError::PathItemReference`].
pub(crate) fn resolve_local<'a>(
    root: &'a Value,
    reference: &str,
) -> Result<&'a Map<String, Value>, &'static str> {
    let mut reference = reference;
    for _ in 0..MAX_HOPS {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err("only local references (#/...) are resolved");
        };
        let target = lookup(root, pointer).ok_or("it points to nothing")?;
        let Value::Object(object) = target else {
            return Err("it points to something that is not an object");
        };
        match object.get("$ref") {
            Some(Value::String(next)) => reference = next,
            Some(_) => return Err("it points to an object whose $ref is not a string"),
            None => return Ok(object),
        }
    }
    Err("a chain of references that does not end (a cycle?)")
}

/// RFC 6901: `""` is the root, `/a~1b/0` the key `a/b` then index 0; percent-escapes of the
/// URI fragment (`%7B`) are decoded first.
fn lookup<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let pointer = percent_decoded(pointer)?;
    if pointer.is_empty() {
        return Some(root);
    }
    let mut current = root;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        current = match current {
            Value::Object(map) => map.get(&token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn percent_decoded(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `target`'s keys, then `sibling`'s keys other than `$ref` over them (OpenAPI 3.1 lets a
/// referencing path item add `summary`/`description`; 3.0 leaves it undefined).
pub(crate) fn merged(target: &Map<String, Value>, sibling: &Map<String, Value>) -> Value {
    let mut object = target.clone();
    for (key, value) in sibling {
        if key != "$ref" {
            object.insert(key.clone(), value.clone());
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_escapes_chains_and_failures() {
        let root = json!({
            "paths": {"/a/{id}": {"get": {}}, "/b": {"$ref": "#/paths/~1a~1%7Bid%7D"}},
            "x-items": [{"post": {}}],
            "loop": {"$ref": "#/loop"},
            "text": "t"
        });
        assert!(resolve_local(&root, "#/paths/~1a~1{id}")
            .unwrap()
            .contains_key("get"));
        assert!(
            resolve_local(&root, "#/paths/~1b")
                .unwrap()
                .contains_key("get"),
            "chain"
        );
        assert!(resolve_local(&root, "#/x-items/0")
            .unwrap()
            .contains_key("post"));
        assert_eq!(
            resolve_local(&root, "#/loop"),
            Err("a chain of references that does not end (a cycle?)")
        );
        assert_eq!(resolve_local(&root, "#/nope"), Err("it points to nothing"));
        assert_eq!(
            resolve_local(&root, "#/text"),
            Err("it points to something that is not an object")
        );
        assert_eq!(
            resolve_local(&root, "other.yaml#/a"),
            Err("only local references (#/...) are resolved")
        );
    }
}
