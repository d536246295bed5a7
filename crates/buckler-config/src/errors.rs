//! Configuration errors with positions, and the context that collects them while validating.

use std::fmt;
use std::time::Duration;

use crate::json5::{Key, Kind, Value};
use crate::schema::Field;

/// One problem, at a position, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// Path of the key, like `domains[0].upstreams[1].weight`; empty for syntax errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.column, self.key, self.message
            )
        }
    }
}

/// Every problem of one document, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// An object's entries after the key check.
pub(crate) struct Fields<'v> {
    entries: Vec<(&'v str, &'v Value)>,
}

impl<'v> Fields<'v> {
    /// The value of `key`; `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'v Value> {
        self.entries
            .iter()
            .find(|(k, v)| *k == key && v.kind != Kind::Null)
            .map(|(_, v)| *v)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// Collects errors while the document is walked.
pub(crate) struct Ctx {
    file: String,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Ctx {
    pub(crate) fn new(file: &str) -> Self {
        Ctx {
            file: file.to_owned(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigErrors> {
        self.errors.sort_by_key(|e| (e.line, e.column));
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => {
                if self.errors.is_empty() {
                    self.error_pos(1, 1, "", "invalid configuration");
                }
                Err(ConfigErrors(self.errors))
            }
        }
    }

    /// A problem that does not fail the file (`check` prints it, `run` logs it).
    pub(crate) fn warn_at(&mut self, value: &Value, path: &str, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            file: self.file.clone(),
            line: value.line,
            column: value.column,
            key: path.to_owned(),
            message: message.into(),
        });
    }

    /// The warnings so far, in document order.
    pub(crate) fn take_warnings(&mut self) -> Vec<ConfigError> {
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.sort_by_key(|w| (w.line, w.column));
        warnings
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(crate) fn error_pos(
        &mut self,
        line: u32,
        column: u32,
        path: &str,
        message: impl Into<String>,
    ) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: path.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn error_at(&mut self, value: &Value, path: &str, message: impl Into<String>) {
        self.error_pos(value.line, value.column, path, message);
    }

    pub(crate) fn error_key(&mut self, key: &Key, path: &str, message: impl Into<String>) {
        self.error_pos(key.line, key.column, path, message);
    }

    fn expected(&mut self, value: &Value, path: &str, what: &str) {
        self.error_at(
            value,
            path,
            format!("expected {what}, found {}", value.kind.describe()),
        );
    }

    /// Checks that `value` is an object whose keys are all in `fields` and every required one
    /// present; a repeated key (already reported as a duplicate) is skipped.
    pub(crate) fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        fields: &[Field],
    ) -> Option<Fields<'v>> {
        let Kind::Object(entries) = &value.kind else {
            self.expected(value, path, "an object");
            return None;
        };
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut kept = Vec::new();
        for (key, item) in entries {
            // Repeats were reported when the document was read (`json5::duplicate_keys`):
            // the first occurrence is the one validated.
            if seen.contains(&key.name.as_str()) {
                continue;
            }
            seen.push(&key.name);
            if !fields.iter().any(|f| f.key == key.name) {
                let valid: Vec<&str> = fields.iter().map(|f| f.key).collect();
                self.error_key(
                    key,
                    &join(&key.name),
                    format!("unknown key; valid keys here: {}", valid.join(", ")),
                );
                continue;
            }
            kept.push((key.name.as_str(), item));
        }
        let result = Fields { entries: kept };
        for field in fields.iter().filter(|f| f.required) {
            if !result.has(field.key) {
                self.error_at(value, &join(field.key), "required key is missing");
            }
        }
        Some(result)
    }

    pub(crate) fn array<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v [Value]> {
        match &value.kind {
            Kind::Array(items) => Some(items),
            _ => {
                self.expected(value, path, "an array");
                None
            }
        }
    }

    pub(crate) fn string(&mut self, value: &Value, path: &str) -> Option<String> {
        match &value.kind {
            Kind::String(s) => Some(s.clone()),
            _ => {
                self.expected(value, path, "a string");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, value: &Value, path: &str) -> Option<bool> {
        match &value.kind {
            Kind::Bool(b) => Some(*b),
            _ => {
                self.expected(value, path, "true or false");
                None
            }
        }
    }

    pub(crate) fn uint(&mut self, value: &Value, path: &str, min: u64, max: u64) -> Option<u64> {
        match &value.kind {
            Kind::Number {
                text,
                value: number,
            } => {
                if text.contains(['.', 'e', 'E']) || number.fract() != 0.0 {
                    self.error_at(value, path, format!("{text} is not an integer"));
                    None
                } else if *number < min as f64 || *number > max as f64 {
                    self.error_at(
                        value,
                        path,
                        format!("{text} is out of range ({min} to {max})"),
                    );
                    None
                } else {
                    Some(*number as u64)
                }
            }
            _ => {
                self.expected(value, path, "an integer");
                None
            }
        }
    }

    /// A finite number within `min ..= max` (fractions allowed).
    pub(crate) fn number(&mut self, value: &Value, path: &str, min: f64, max: f64) -> Option<f64> {
        match &value.kind {
            Kind::Number {
                text,
                value: number,
            } => {
                if number.is_finite() && *number >= min && *number <= max {
                    Some(*number)
                } else {
                    self.error_at(
                        value,
                        path,
                        format!("{text} is out of range ({min} to {max})"),
                    );
                    None
                }
            }
            _ => {
                self.expected(value, path, "a number");
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, value: &Value, path: &str) -> Option<Duration> {
        let Kind::String(text) = &value.kind else {
            let hint = if matches!(value.kind, Kind::Number { .. }) {
                "; durations are strings like \"250ms\", \"3s\", \"2m\""
            } else {
                ""
            };
            self.error_at(
                value,
                path,
                format!("expected a duration, found {}{hint}", value.kind.describe()),
            );
            return None;
        };
        match parse_duration(text) {
            Some(duration) => Some(duration),
            None => {
                self.error_at(
                    value,
                    path,
                    format!("{text:?} is not a duration like \"250ms\", \"3s\", \"2m\", \"1h\""),
                );
                None
            }
        }
    }

    pub(crate) fn size(&mut self, value: &Value, path: &str) -> Option<u64> {
        match &value.kind {
            Kind::Number { .. } => self.uint(value, path, 0, u64::MAX >> 1),
            Kind::String(text) => match parse_size(text) {
                Some(size) => Some(size),
                None => {
                    self.error_at(
                        value,
                        path,
                        format!(
                            "{text:?} is not a size like 1048576, \"512kb\", \"10mb\", \"1gb\""
                        ),
                    );
                    None
                }
            },
            _ => {
                self.expected(value, path, "a size");
                None
            }
        }
    }

    pub(crate) fn str_list(&mut self, value: &Value, path: &str) -> Option<Vec<String>> {
        let items = self.array(value, path)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &format!("{path}[{i}]")) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// `"250ms"`, `"3s"`, `"2m"`, `"1h"`, also `"1.5s"`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Bytes with an optional unit: `512kb`, `10mb`, `1gb` (powers of 1024, case-insensitive).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "b" => 1,
        "kb" | "k" | "kib" => 1 << 10,
        "mb" | "m" | "mib" => 1 << 20,
        "gb" | "g" | "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), None);
        assert_eq!(parse_duration("3 days"), None);
        assert_eq!(parse_size("10mb"), Some(10 << 20));
        assert_eq!(parse_size("512KB"), Some(512 << 10));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1tb"), None);
    }
}
