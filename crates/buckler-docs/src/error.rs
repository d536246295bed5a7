//! Why a document was rejected.

/// A document that cannot be used; the message says exactly why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocsError {
    #[error("document is {bytes} bytes, more than the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
    #[error("document declares more than {limit} paths")]
    TooManyPaths { limit: usize },
    #[error("document declares more than {limit} operations")]
    TooManyOperations { limit: usize },
    #[error("expected a JSON document; YAML is not supported")]
    NotJson,
    #[error("invalid document at line {line}, column {column}: {message}")]
    Json { line: usize, column: usize, message: String },
    #[error("unsupported document version {found:?} (expected {expected})")]
    WrongVersion { found: String, expected: &'static str },
    #[error("{method} {path}: parameter {name:?} has unknown location {location:?} (body, formData, header, path, query)")]
    InvalidParameterLocation {
        path: String,
        method: String,
        name: String,
        location: String,
    },
    #[error("{method} {path}: unresolvable parameter reference {reference:?}")]
    UnresolvedReference { path: String, method: String, reference: String },
}

impl DocsError {
    pub(crate) fn from_json(error: &serde_json::Error) -> Self {
        let message = error.to_string();
        // serde_json appends " at line L column C"; keep the message without it.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m)
            .to_owned();
        DocsError::Json {
            line: error.line(),
            column: error.column(),
            message,
        }
    }
}

/// Rejects what is obviously not JSON before a confusing parse error.
pub(crate) fn check_json_start(bytes: &[u8]) -> Result<(), DocsError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{') => Ok(()),
        Some(_) if bytes.starts_with(b"---") || bytes.windows(2).take(200).any(|w| w == b": ") => Err(DocsError::NotJson),
        _ => Ok(()),
    }
}
