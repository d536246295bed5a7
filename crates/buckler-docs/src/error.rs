//! Why a document was rejected.

/// A document that cannot be used; the message says exactly why and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocsError {
    /// Checked before anything is parsed.
    #[error("document is {bytes} bytes, more than the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
    #[error("document declares {count} paths, more than the limit of {limit}")]
    TooManyPaths { count: usize, limit: usize },
    #[error("document declares {count} operations, more than the limit of {limit}")]
    TooManyOperations { count: usize, limit: usize },
    /// Malformed JSON or YAML, a wrong type or a missing field, with its position (line and
    /// column in the document as sent, JSON or YAML) and, where known, the path of the
    /// offending value (`paths./pets.get.parameters[0].required`).
    #[error("invalid document at line {line}, column {column}{}: {message}", at(.path))]
    Json {
        line: usize,
        column: usize,
        path: String,
        message: String,
    },
    /// A value that could not be read into the model; only its JSON path is known (the
    /// document went through a rewrite, so line and column would be meaningless).
    #[error("invalid document at {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("unsupported document version {found} (expected {expected})")]
    WrongVersion {
        found: String,
        expected: &'static str,
    },
    #[error("{method} {path}: parameter {name:?} has unknown location {location:?} (expected one of {expected})")]
    InvalidParameterLocation {
        path: String,
        method: String,
        name: String,
        location: String,
        expected: &'static str,
    },
    #[error("{method} {path}: parameter #{index} has no {missing:?}")]
    IncompleteParameter {
        path: String,
        method: String,
        index: usize,
        missing: &'static str,
    },
    #[error("{method} {path}: unresolvable parameter reference {reference:?}")]
    UnresolvedReference {
        path: String,
        method: String,
        reference: String,
    },
    /// A path item given as `$ref` that cannot be inlined: not a local `#/...` reference, a
    /// pointer to nothing or to something that is not an object, or a chain or cycle.
    #[error("path {path}: cannot resolve path item reference {reference:?}: {problem}")]
    PathItemReference {
        path: String,
        reference: String,
        problem: &'static str,
    },
    #[error("{path}: operation #{index} declares no method")]
    MissingMethod { path: String, index: usize },
    #[error("{path}: unsupported method {method:?}")]
    UnsupportedMethod { path: String, method: String },
}

fn at(path: &str) -> String {
    if path.is_empty() || path == "." {
        String::new()
    } else {
        format!(" (at {path})")
    }
}

impl DocsError {
    /// From a syntax or type error with its position.
    pub(crate) fn json(error: &serde_json::Error, path: String) -> Self {
        DocsError::Json {
            line: error.line(),
            column: error.column(),
            path,
            message: tidy(&strip_position(&error.to_string())),
        }
    }

    /// From a YAML error (syntax, budget or type) and the path reached when it happened.
    pub(crate) fn yaml(error: &serde_saphyr::Error, path: String) -> Self {
        let (line, column) = error
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        let message = strip_position(&error.to_string());
        // The library's advice to its own caller, not to the document's author.
        let message = message
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
            .replace(" (see Budget)", "");
        DocsError::Json {
            line,
            column,
            path: if path == "." { String::new() } else { path },
            message: tidy(&message),
        }
    }

    /// From a typed parse that tracked the JSON path.
    pub(crate) fn tracked(error: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        DocsError::json(error.inner(), error.path().to_string())
    }
}

/// Serde names the Rust type it expected (`expected struct Census`); the author of a
/// document needs to hear that an object (a map) was expected.
pub(crate) fn tidy(message: &str) -> String {
    if message.contains("enum ParameterSchemaOrContent") {
        return "a parameter needs `schema` or `content`".to_owned();
    }
    if message.contains("did not match any variant of untagged enum") {
        return "matches none of the allowed forms (an object of this kind, or a `$ref`)"
            .to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("struct ") {
        let after = &rest[at + "struct ".len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        out.push_str(&rest[..at]);
        if name_len == 0 {
            out.push_str("struct ");
        } else {
            out.push_str("an object (a map of keys to values)");
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

/// serde_json appends " at line L column C" to its messages; the variant carries them apart.
fn strip_position(message: &str) -> String {
    match message.rsplit_once(" at line ") {
        Some((text, position)) if position.contains(" column ") => text.to_owned(),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_position_and_path() {
        let error = DocsError::Json {
            line: 3,
            column: 14,
            path: "paths./a.get.parameters[0].required".to_owned(),
            message: "invalid type: string \"yes\", expected a boolean".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "invalid document at line 3, column 14 (at paths./a.get.parameters[0].required): \
             invalid type: string \"yes\", expected a boolean"
        );
        let rootless = DocsError::Json {
            line: 1,
            column: 1,
            path: ".".to_owned(),
            message: "expected value".to_owned(),
        };
        assert_eq!(
            rootless.to_string(),
            "invalid document at line 1, column 1: expected value"
        );
    }

    #[test]
    fn rust_type_names_become_plain_words() {
        assert_eq!(
            tidy("invalid type: string \"swagger\", expected struct Census"),
            "invalid type: string \"swagger\", expected an object (a map of keys to values)"
        );
        assert_eq!(tidy("a struct  b"), "a struct  b");
        assert!(
            !tidy("data did not match any variant of untagged enum ReferenceOr")
                .contains("ReferenceOr")
        );
    }

    #[test]
    fn position_suffix_is_stripped_once() {
        assert_eq!(
            strip_position("expected value at line 1 column 2"),
            "expected value"
        );
        assert_eq!(
            strip_position("key \"at line \" bad"),
            "key \"at line \" bad"
        );
    }
}
