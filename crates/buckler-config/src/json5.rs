//! A small JSON5 reader that keeps the line and column of every value and key, so validation
//! errors can point at them. In strict mode it accepts exactly JSON (RFC 8259): no comments,
//! trailing commas, unquoted keys, single quotes, hex, `+`, `Infinity` or `NaN`.

/// A value with the position (1-based line and column) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: Kind,
    pub line: u32,
    pub column: u32,
}

/// An object key with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    /// The number as written, and its value.
    Number {
        text: String,
        value: f64,
    },
    String(String),
    Array(Vec<Value>),
    /// Entries in document order (duplicates kept: the validator reports them).
    Object(Vec<(Key, Value)>),
}

impl Kind {
    /// "a string", "a number", ... for error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number { .. } => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }
}

/// A syntax error at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Parses a whole document.
pub fn parse(text: &str, strict: bool) -> Result<Value, SyntaxError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
        line: 1,
        column: 1,
        strict,
        depth: 0,
    };
    parser.skip_space()?;
    let value = parser.value()?;
    parser.skip_space()?;
    if parser.peek().is_some() {
        return Err(parser.error("unexpected content after the document"));
    }
    Ok(value)
}

/// Every key that repeats an earlier key of the same object, with its path in the validator's
/// form (`domains[0].tls.cert`, `[2].weight` for a top-level array): duplicates are an error
/// in the file and in strict JSON alike. The first occurrence is not listed, only each repeat,
/// at its own position.
pub fn duplicate_keys(value: &Value) -> Vec<(String, &Key)> {
    let mut found = Vec::new();
    collect_duplicates(value, "", &mut found);
    found
}

fn collect_duplicates<'v>(value: &'v Value, path: &str, found: &mut Vec<(String, &'v Key)>) {
    match &value.kind {
        Kind::Object(entries) => {
            // A hash, not a scan: a hostile body with many keys stays linear.
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            for (key, item) in entries {
                let item_path = if path.is_empty() {
                    key.name.clone()
                } else {
                    format!("{path}.{}", key.name)
                };
                if !seen.insert(key.name.as_str()) {
                    found.push((item_path.clone(), key));
                }
                collect_duplicates(item, &item_path, found);
            }
        }
        Kind::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_duplicates(item, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// Nesting deeper than this is refused (no stack overflow on hostile input).
const MAX_DEPTH: usize = 128;

struct Parser {
    chars: Vec<char>,
    at: usize,
    line: u32,
    column: u32,
    strict: bool,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }

    fn unexpected(&self, expected: &str) -> SyntaxError {
        match self.peek() {
            Some(c) => self.error(format!("expected {expected}, found {c:?}")),
            None => self.error(format!("expected {expected}, found the end of the file")),
        }
    }

    fn skip_space(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                Some('/') if !self.strict && self.peek_at(1) == Some('/') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('/') if !self.strict && self.peek_at(1) == Some('*') => {
                    let start = self.error("unterminated comment");
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                            None => return Err(start),
                        }
                    }
                }
                Some('/') if self.strict => {
                    return Err(self.error("comments are not allowed in strict JSON"))
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        let (line, column) = (self.line, self.column);
        let kind = match self.peek() {
            Some('{') => self.object()?,
            Some('[') => self.array()?,
            Some('"') => Kind::String(self.string('"')?),
            Some('\'') if !self.strict => Kind::String(self.string('\'')?),
            Some('\'') => {
                return Err(self.error("single-quoted strings are not allowed in strict JSON"))
            }
            Some(c) if c == '-' || c == '+' || c == '.' || c.is_ascii_digit() => self.number()?,
            Some(c) if c.is_alphabetic() => {
                let word = self.identifier();
                match word.as_str() {
                    "null" => Kind::Null,
                    "true" => Kind::Bool(true),
                    "false" => Kind::Bool(false),
                    "Infinity" | "NaN" if !self.strict => {
                        return Err(SyntaxError {
                            line,
                            column,
                            message: format!("{word} is not a usable value here"),
                        })
                    }
                    _ => {
                        return Err(SyntaxError {
                            line,
                            column,
                            message: format!("unexpected word {word:?} (strings need quotes)"),
                        })
                    }
                }
            }
            _ => return Err(self.unexpected("a value")),
        };
        Ok(Value { kind, line, column })
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Kind, SyntaxError> {
        self.enter()?;
        self.bump();
        let mut entries = Vec::new();
        loop {
            self.skip_space()?;
            if self.peek() == Some('}') {
                if self.strict && !entries.is_empty() {
                    return Err(self.error("trailing commas are not allowed in strict JSON"));
                }
                self.bump();
                break;
            }
            let (line, column) = (self.line, self.column);
            let name = match self.peek() {
                Some('"') => self.string('"')?,
                Some('\'') if !self.strict => self.string('\'')?,
                Some(c) if !self.strict && (c.is_alphabetic() || c == '_' || c == '$') => {
                    self.identifier()
                }
                Some(_) if self.strict => return Err(self.unexpected("a quoted key")),
                _ => return Err(self.unexpected("a key")),
            };
            self.skip_space()?;
            if self.peek() != Some(':') {
                return Err(self.unexpected("':' after the key"));
            }
            self.bump();
            self.skip_space()?;
            let value = self.value()?;
            entries.push((Key { name, line, column }, value));
            self.skip_space()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {
                    self.bump();
                    break;
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
        self.depth -= 1;
        Ok(Kind::Object(entries))
    }

    fn array(&mut self) -> Result<Kind, SyntaxError> {
        self.enter()?;
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_space()?;
            if self.peek() == Some(']') {
                if self.strict && !items.is_empty() {
                    return Err(self.error("trailing commas are not allowed in strict JSON"));
                }
                self.bump();
                break;
            }
            items.push(self.value()?);
            self.skip_space()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {
                    self.bump();
                    break;
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
        self.depth -= 1;
        Ok(Kind::Array(items))
    }

    fn identifier(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '$' || c == '-' {
                out.push(c);
                self.bump();
            } else {
                break;
            }
        }
        out
    }

    fn string(&mut self, quote: char) -> Result<String, SyntaxError> {
        let start = self.error("unterminated string");
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(start),
                Some(c) if c == quote => return Ok(out),
                Some('\n') if self.strict || quote == '"' || quote == '\'' => {
                    return Err(SyntaxError {
                        line: self.line - 1,
                        column: start.column,
                        message: "line break inside a string (use \\n)".to_owned(),
                    })
                }
                Some('\\') => {
                    let escaped = self.bump().ok_or(start.clone())?;
                    match escaped {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let mut code = 0u32;
                            for _ in 0..4 {
                                let digit = self
                                    .bump()
                                    .and_then(|c| c.to_digit(16))
                                    .ok_or_else(|| self.error("invalid \\u escape"))?;
                                code = code * 16 + digit;
                            }
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        '\'' if !self.strict => out.push('\''),
                        '\n' if !self.strict => {}
                        '0' if !self.strict => out.push('\0'),
                        other if !self.strict && !other.is_ascii_alphanumeric() => out.push(other),
                        other => return Err(self.error(format!("invalid escape \\{other}"))),
                    }
                }
                Some(c) if (c as u32) < 0x20 && self.strict => {
                    return Err(self.error("control character inside a string"))
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Kind, SyntaxError> {
        let start = self.at;
        let mut text = String::new();
        if let Some(sign @ ('-' | '+')) = self.peek() {
            if sign == '+' && self.strict {
                return Err(self.error("a leading '+' is not allowed in strict JSON"));
            }
            text.push(sign);
            self.bump();
        }
        if self.peek() == Some('I') || self.peek() == Some('N') {
            let word = self.identifier();
            return Err(self.error(format!("{word} is not a usable value here")));
        }
        if !self.strict && self.peek() == Some('0') && matches!(self.peek_at(1), Some('x' | 'X')) {
            self.bump();
            self.bump();
            let mut digits = String::new();
            while let Some(c) = self.peek().filter(char::is_ascii_hexdigit) {
                digits.push(c);
                self.bump();
            }
            let value = i64::from_str_radix(&digits, 16)
                .map_err(|_| self.error("invalid hexadecimal number"))?;
            let value = if text == "-" { -value } else { value };
            return Ok(Kind::Number {
                text: value.to_string(),
                value: value as f64,
            });
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-') {
                text.push(c);
                self.bump();
            } else {
                break;
            }
        }
        let digits = text.trim_start_matches(['-', '+']);
        let leading_zero =
            digits.len() > 1 && digits.starts_with('0') && digits.as_bytes()[1].is_ascii_digit();
        let strict_ok = !(digits.starts_with('.') || digits.ends_with('.') || leading_zero);
        if self.strict && !strict_ok {
            return Err(self.error(format!("{text:?} is not a valid JSON number")));
        }
        let value: f64 = text.parse().map_err(|_| SyntaxError {
            line: self.line,
            column: self.column - (self.at - start) as u32,
            message: format!("{text:?} is not a valid number"),
        })?;
        Ok(Kind::Number { text, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json5_features() {
        let value = parse(
            "// comment\n{ unquoted: 'single', \"q\": [1, 2,], /* block */ hex: 0x1F, half: .5, plus: +3, trailing: true, }",
            false,
        )
        .unwrap();
        let Kind::Object(entries) = value.kind else {
            panic!()
        };
        let names: Vec<&str> = entries.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["unquoted", "q", "hex", "half", "plus", "trailing"]
        );
        assert_eq!(entries[0].1.kind, Kind::String("single".into()));
        assert!(matches!(entries[2].1.kind, Kind::Number { value, .. } if value == 31.0));
        assert_eq!((entries[1].0.line, entries[1].0.column), (2, 23));
    }

    #[test]
    fn positions_of_errors() {
        let error = parse("{\n  a: 1,\n  b: ,\n}", false).unwrap_err();
        assert_eq!((error.line, error.column), (3, 6));
        assert!(
            error.message.contains("expected a value"),
            "{}",
            error.message
        );
        assert!(parse("{ a: Infinity }", false).is_err());
        assert!(parse("{ a: \"x }", false)
            .unwrap_err()
            .message
            .contains("string"));
        assert!(parse(&"[".repeat(500), false)
            .unwrap_err()
            .message
            .contains("nesting"));
    }

    #[test]
    fn duplicate_keys_are_found_with_paths_and_positions() {
        let value = parse("{ a: 1, b: { c: [{ d: 1, d: 2 }] },\n  a: 3 }", false).unwrap();
        let found: Vec<(String, u32, u32)> = duplicate_keys(&value)
            .into_iter()
            .map(|(path, key)| (path, key.line, key.column))
            .collect();
        assert_eq!(
            found,
            vec![("b.c[0].d".to_owned(), 1, 26), ("a".to_owned(), 2, 3)]
        );
        let strict = parse(r#"[{"weight": 1, "weight": 2}]"#, true).unwrap();
        let found = duplicate_keys(&strict);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "[0].weight");
        assert!(duplicate_keys(&parse("{ a: { a: 1 } }", false).unwrap()).is_empty());
    }

    #[test]
    fn strict_mode_is_plain_json() {
        assert!(parse(r#"{"a": [1, 2.5e3, -0.5, "x\u0041"], "b": null}"#, true).is_ok());
        for bad in [
            "{a: 1}",
            "{\"a\": 1,}",
            "[1,]",
            "{\"a\": 'x'}",
            "// c\n{}",
            "{\"a\": 0x10}",
            "{\"a\": .5}",
            "{\"a\": +1}",
            "{\"a\": 01}",
        ] {
            assert!(
                parse(bad, true).is_err(),
                "{bad} must be rejected in strict mode"
            );
        }
    }
}
