//! Path templates: parsing, the canonical form, matching, and the specificity order.
//!
//! Grammar (after one leading and one trailing `/` are removed): `/` is a slash; `{name: regex}`
//! a regex piece (one segment at most, anchored); `{+name}` the rest of the path (may span
//! slashes, may be empty); `{.name}` an optional `.ext`; `{name}` (and the RFC 6570 prefixes
//! `?#/;&`) a non-empty piece of one segment; anything else is static text. Variable names are
//! dropped: `/u/{id}` and `/u/{uid}` are the same template.
//!
//! A template may carry a query part (`/{Bucket}?acl`, `/x?list-type=2&a`, as AWS documents
//! write them): each `name` or `name=value` there becomes a [`QueryPredicate`] the request's
//! query must satisfy. A fragment (`/#X-Amz-Target=...`) never reaches a server, so everything
//! from a `#` outside braces on is dropped and the template is routed on what precedes it.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use std::sync::Arc;

use regex::Regex;

/// Longest template accepted.
const MAX_TEMPLATE_LEN: usize = 2048;
/// Most tokens in one template.
const MAX_TOKENS: usize = 256;
/// Compiled size limit for one regex piece: hostile documents get an error, not a huge automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One token of a template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `/`.
    Slash,
    /// Literal text (case-sensitive).
    Static(Box<str>),
    /// `{.name}`: an optional `.ext` without slash.
    Extension,
    /// `{name}`: one non-empty piece of a segment.
    Variable,
    /// `{name: regex}`: the regex source, trimmed.
    Regex(Box<str>),
    /// `{+name}`: the rest of the path, slashes included, possibly empty.
    Rest,
}

impl Segment {
    /// Lower is more specific: slash < static < extension < variable < regex < rest.
    fn priority(&self) -> u8 {
        match self {
            Segment::Slash => 0,
            Segment::Static(_) => 1,
            Segment::Extension => 2,
            Segment::Variable => 3,
            Segment::Regex(_) => 4,
            Segment::Rest => 5,
        }
    }

    fn render(&self, out: &mut String) {
        match self {
            Segment::Slash => out.push('/'),
            Segment::Static(text) => out.push_str(text),
            Segment::Extension => out.push_str("{.}"),
            Segment::Variable => out.push_str("{}"),
            Segment::Regex(source) => {
                out.push_str("{:");
                out.push_str(source);
                out.push('}');
            }
            Segment::Rest => out.push_str("{+}"),
        }
    }

    /// The regex fragment matching this token inside a path (for compound segments).
    fn pattern(&self) -> String {
        match self {
            Segment::Slash => "/".to_owned(),
            Segment::Static(text) => regex::escape(text),
            Segment::Extension => r"(?:\.[^/]*)?".to_owned(),
            Segment::Variable => "[^/]+".to_owned(),
            Segment::Regex(source) => format!("(?:{source})"),
            Segment::Rest => ".*".to_owned(),
        }
    }
}

/// One condition of a template's query part on the request's query: a parameter `name` is
/// present (`?acl`, or `?versionId={v}`: a value that is a variable takes any value), or present
/// with exactly `value` (`?list-type=2`; `?x=` asks for an empty value). Names and values are
/// compared percent-decoded; `+` is not read as a space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryPredicate {
    pub name: Box<str>,
    pub value: Option<Box<str>>,
}

impl QueryPredicate {
    /// Does one of the query's `name[=value]` pairs satisfy this predicate?
    fn holds(&self, query: &str) -> bool {
        query.split('&').any(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            percent_decode(name) == *self.name
                && self
                    .value
                    .as_deref()
                    .is_none_or(|wanted| percent_decode(value) == wanted)
        })
    }
}

/// Why a template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path template {template:?}: {problem}")]
pub struct TemplateError {
    pub template: String,
    pub problem: String,
}

/// A parsed path template. Equality and hashing follow the canonical form; ordering is
/// specificity (`a < b` means `a` is more specific).
#[derive(Debug, Clone)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    canonical: String,
    /// Anchored regex of the whole template, only for a template with a [`TrieEdge::Unheld`]
    /// segment. Compiling one costs ~100 µs, and most templates never need it: a fleet of a
    /// thousand upstreams spent 45 % of its loading time here.
    full: Option<Arc<Regex>>,
    /// How the lookup trie holds each path segment, decided once here, when a doc is loaded,
    /// so that building a routing table — every ramp step does — only clones them. Behind
    /// `Arc`s: a template is cloned into every table built, and cloning a `Regex` itself
    /// allocates a fresh match-cache pool.
    edges: Arc<[TrieEdge]>,
    /// The query part's conditions, sorted and deduplicated; empty for almost every template.
    query: Box<[QueryPredicate]>,
}

impl PathTemplate {
    /// Parses a Swagger path key such as `/users/{id}`, `/files/{+path}`, `/v{ver: [0-9]+}/x`
    /// or `/foo{.ext}`.
    pub fn parse(template: &str) -> Result<PathTemplate, TemplateError> {
        let error = |problem: String| TemplateError {
            template: template.to_owned(),
            problem,
        };
        if template.len() > MAX_TEMPLATE_LEN {
            return Err(error(format!("longer than {MAX_TEMPLATE_LEN} characters")));
        }
        let (path, _fragment) = split_outside_braces(template, '#');
        let (path, query) = split_outside_braces(path, '?');
        let query = query.map(query_predicates).unwrap_or_default();
        let body = path.strip_prefix('/').unwrap_or(path);
        let body = body.strip_suffix('/').unwrap_or(body);
        let segments = tokenize(body).map_err(error)?;
        if segments.len() > MAX_TOKENS {
            return Err(error(format!("more than {MAX_TOKENS} segments")));
        }
        // Two `{+name}` make a lookup try every way of splitting the path between them: with
        // k of them that is O(n^k) per request, a denial of service a hostile doc could ask for.
        if segments.iter().filter(|s| **s == Segment::Rest).count() > 1 {
            return Err(error("more than one `{+name}`".to_owned()));
        }
        for segment in &segments {
            if let Segment::Regex(source) = segment {
                // Compiled alone first: a source such as `a)|(b` would otherwise close the
                // wrapping group and escape the anchors, matching outside its segment.
                compile(source)
                    .and_then(|_| compile(&format!("^(?:{source})$")))
                    .map_err(|e| error(format!("invalid regex {source:?}: {e}")))?;
            }
        }
        let mut canonical = String::from("/");
        for segment in &segments {
            segment.render(&mut canonical);
        }
        for (index, predicate) in query.iter().enumerate() {
            canonical.push(if index == 0 { '?' } else { '&' });
            canonical.push_str(&predicate.name);
            if let Some(value) = &predicate.value {
                canonical.push('=');
                canonical.push_str(value);
            }
        }
        let edges: Arc<[TrieEdge]> = if segments.is_empty() {
            Arc::from([])
        } else {
            segments
                .split(|s| *s == Segment::Slash)
                .map(TrieEdge::of)
                .collect()
        };
        let needs_full = edges.iter().any(|edge| matches!(edge, TrieEdge::Unheld));
        let full = if needs_full {
            let mut pattern = String::from("^");
            for segment in &segments {
                pattern.push_str(&segment.pattern());
            }
            pattern.push('$');
            let full = compile(&pattern).map_err(|e| error(format!("cannot compile: {e}")))?;
            Some(Arc::new(full))
        } else {
            None
        };
        Ok(PathTemplate {
            segments,
            canonical,
            full,
            edges,
            query,
        })
    }

    /// The query part's conditions (sorted by name, then value), all of which a request's
    /// query must satisfy; empty when the template has no query part.
    pub fn query_predicates(&self) -> &[QueryPredicate] {
        &self.query
    }

    /// Does the request query (without `?`; `None` when the request has none) satisfy every
    /// query predicate? Always true for a template without a query part.
    pub fn query_matches(&self, query: Option<&str>) -> bool {
        self.query
            .iter()
            .all(|predicate| query.is_some_and(|query| predicate.holds(query)))
    }

    /// The tokens.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Canonical rendering with variable names dropped: `/users/{}`, `/files/{+}`,
    /// `/v{:[0-9]+}/x`, `/foo{.}`; the empty template renders as `/`.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The whole-template regex; `Some` exactly when a segment is [`TrieEdge::Unheld`].
    pub(crate) fn full_regex(&self) -> Option<&Regex> {
        self.full.as_deref()
    }

    /// How the lookup trie holds each path segment (the tokens between two slashes).
    pub(crate) fn trie_edges(&self) -> &[TrieEdge] {
        &self.edges
    }
}

/// How the lookup trie holds one path segment.
#[derive(Debug, Clone)]
pub(crate) enum TrieEdge {
    /// Literal text: looked up by exact match.
    Static(Box<str>),
    /// `{name}`: any one non-empty segment.
    Variable,
    /// `{+name}` alone in its segment: this and every following segment, or none.
    Rest,
    /// A compound or regex segment (`v{ver: [0-9]+}`, `{id}.json`), matched by its anchored
    /// regex, compiled alone.
    Pattern(Arc<Regex>),
    /// `{+name}` mixed with other tokens, or a segment whose regex did not compile alone: the
    /// trie cannot hold it, and its template is matched whole by regex instead.
    Unheld,
}

impl TrieEdge {
    fn of(tokens: &[Segment]) -> TrieEdge {
        match tokens {
            [Segment::Static(text)] => TrieEdge::Static(text.clone()),
            [Segment::Variable] => TrieEdge::Variable,
            [Segment::Rest] => TrieEdge::Rest,
            tokens if tokens.contains(&Segment::Rest) => TrieEdge::Unheld,
            tokens => segment_regex(tokens)
                .map(|regex| TrieEdge::Pattern(Arc::new(regex)))
                .unwrap_or(TrieEdge::Unheld),
        }
    }
}

/// `text` split at the first `separator` outside `{...}` (so the `{?x}` and `{#x}` variable
/// forms stay whole): what precedes it, and what follows it when it occurs.
fn split_outside_braces(text: &str, separator: char) -> (&str, Option<&str>) {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => return (&text[..at], Some(&text[at + 1..])),
            _ => {}
        }
    }
    (text, None)
}

/// The predicates of a template's query part (`acl&list-type=2`), sorted and deduplicated.
/// Empty pairs (`a&&b`) are skipped; a value holding a variable (`{v}`) asks only for presence.
fn query_predicates(query: &str) -> Box<[QueryPredicate]> {
    let mut predicates: Vec<QueryPredicate> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            let name = percent_decode(name);
            if name.is_empty() {
                return None;
            }
            let value = value
                .filter(|value| !value.contains('{'))
                .map(|value| percent_decode(value).as_ref().into());
            Some(QueryPredicate {
                name: name.as_ref().into(),
                value,
            })
        })
        .collect();
    predicates.sort();
    predicates.dedup();
    predicates.into_boxed_slice()
}

/// Decodes `%XX` escapes in one path segment. An escape that is not two hex digits is kept as
/// written, and so is the whole segment when the decoded bytes are not UTF-8 (`%FF`). `%2F`
/// becomes a `/` inside the segment: it is never a separator, since the path is split first.
pub(crate) fn percent_decode(segment: &str) -> std::borrow::Cow<'_, str> {
    if !segment.contains('%') {
        return std::borrow::Cow::Borrowed(segment);
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(high), Some(low)) => hex(*high).zip(hex(*low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(decoded) => std::borrow::Cow::Owned(decoded),
        Err(_) => std::borrow::Cow::Borrowed(segment),
    }
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Strips the query, the leading `/` and one trailing `/`: what templates are matched against.
pub(crate) fn normalize_path(path: &str) -> &str {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let path = path.strip_prefix('/').unwrap_or(path);
    path.strip_suffix('/').unwrap_or(path)
}

pub(crate) fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Builds the anchored regex for one compound path segment.
pub(crate) fn segment_regex(tokens: &[Segment]) -> Result<Regex, regex::Error> {
    let mut pattern = String::from("^");
    for token in tokens {
        pattern.push_str(&token.pattern());
    }
    pattern.push('$');
    compile(&pattern)
}

fn tokenize(body: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('/') {
            segments.push(Segment::Slash);
            rest = after;
        } else if rest.starts_with('{') {
            let (token, after) = variable(rest)?;
            segments.push(token);
            rest = after;
        } else if rest.starts_with('}') {
            return Err("unbalanced `}`".to_owned());
        } else {
            let end = rest.find(['/', '{', '}']).unwrap_or(rest.len());
            // Requests are compared decoded, so a template written encoded (`/a%20b`) is
            // decoded too and meets the request written either way.
            let text = percent_decode(&rest[..end]);
            segments.push(Segment::Static(text.as_ref().into()));
            rest = &rest[end..];
        }
    }
    Ok(segments)
}

/// Parses one `{...}` at the start of `input`; returns the token and what follows it.
fn variable(input: &str) -> Result<(Segment, &str), String> {
    let inner_start = 1;
    let bytes = input.as_bytes();
    // Find the closing brace: backslash escapes, nested braces (as in `{2,3}`) balanced.
    let mut depth = 0usize;
    let mut i = inner_start;
    let mut close = None;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' if depth == 0 => {
                close = Some(i);
                break;
            }
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    let close = close.ok_or_else(|| "unbalanced `{`".to_owned())?;
    let inner = &input[inner_start..close];
    let after = &input[close + 1..];
    let (prefix, name_and_rest) = match inner.chars().next() {
        Some(c @ ('+' | '.' | '?' | '#' | '/' | ';' | '&')) => (Some(c), &inner[1..]),
        _ => (None, inner),
    };
    let (name, regex) = match name_and_rest.split_once(':') {
        Some((name, regex)) => (name.trim(), Some(regex.trim())),
        None => (name_and_rest.trim(), None),
    };
    if name.is_empty() {
        return Err(format!("empty variable name in `{{{inner}}}`"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("invalid variable name {name:?}"));
    }
    // `{name:}` (an empty regex, seen in published documents) says nothing more than `{name}`.
    let regex = regex.filter(|regex| !regex.is_empty());
    let token = match (prefix, regex) {
        (None, Some(regex)) => Segment::Regex(regex.into()),
        (Some(_), Some(_)) => {
            return Err(format!(
                "a regex is only allowed on plain variables (`{{{inner}}}`)"
            ))
        }
        (Some('+'), None) => Segment::Rest,
        (Some('.'), None) => Segment::Extension,
        (_, None) => Segment::Variable,
    };
    Ok((token, after))
}

impl PartialEq for PathTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for PathTemplate {}

impl Hash for PathTemplate {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl PartialOrd for PathTemplate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathTemplate {
    /// Specificity, path segment by path segment (the tokens between two slashes); the first
    /// segment pair that differs decides ([`segment_cmp`]). When one template runs out while
    /// all overlapping segments tie, the longer is more specific; then canonical text.
    fn cmp(&self, other: &Self) -> Ordering {
        let mut mine = path_segments(&self.segments);
        let mut theirs = path_segments(&other.segments);
        loop {
            match (mine.next(), theirs.next()) {
                (Some(a), Some(b)) => match segment_cmp(a, b) {
                    Ordering::Equal => {}
                    decided => return decided,
                },
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => break,
            }
        }
        // The same path: a query condition narrows what a template matches.
        other
            .query
            .len()
            .cmp(&self.query.len())
            .then_with(|| self.canonical.cmp(&other.canonical))
    }
}

/// The path segments of a token list; none for the empty template `/`.
fn path_segments(tokens: &[Segment]) -> impl Iterator<Item = &[Segment]> {
    let split = (!tokens.is_empty()).then(|| tokens.split(|t| *t == Segment::Slash));
    split.into_iter().flatten()
}

/// One path segment against another, `Less` = more specific:
/// 1. literal text only beats a segment with a variable of any kind;
/// 2. between segments with variables, more literal characters is more specific
///    (`{y}.pbf` before `{y}.{format}`, `v{n}` before `{n}`), as JAX-RS and Spring decide;
/// 3. then token by token, extension < variable < regex < rest, the first difference deciding;
/// 4. then the segment with fewer tokens (fewer variables).
///
/// Two literal-only segments tie here (they never match the same text unless equal).
fn segment_cmp(a: &[Segment], b: &[Segment]) -> Ordering {
    let literal_only = |s: &[Segment]| s.iter().all(|t| matches!(t, Segment::Static(_)));
    match (literal_only(a), literal_only(b)) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (false, false) => {}
    }
    let literal_chars = |s: &[Segment]| -> usize {
        s.iter()
            .map(|t| match t {
                Segment::Static(text) => text.chars().count(),
                _ => 0,
            })
            .sum()
    };
    literal_chars(b)
        .cmp(&literal_chars(a))
        .then_with(|| {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.priority().cmp(&y.priority()))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
        .then_with(|| a.len().cmp(&b.len()))
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap()
    }

    fn segs(s: &str) -> Vec<Segment> {
        t(s).segments().to_vec()
    }

    #[test]
    fn grammar_follows_shields_cases() {
        assert!(segs("").is_empty());
        assert!(segs("/").is_empty());
        assert_eq!(segs("/foo"), vec![Segment::Static("foo".into())]);
        assert_eq!(
            segs("/foo/bar"),
            vec![
                Segment::Static("foo".into()),
                Segment::Slash,
                Segment::Static("bar".into())
            ]
        );
        assert_eq!(
            segs("/foo/{bar}"),
            vec![
                Segment::Static("foo".into()),
                Segment::Slash,
                Segment::Variable
            ]
        );
        assert_eq!(segs("/foo/{+bar}")[2], Segment::Rest);
        assert_eq!(
            segs("/foo{.media}"),
            vec![Segment::Static("foo".into()), Segment::Extension]
        );
        assert_eq!(
            segs("/x/{id: [0-9]{2,3} }")[2],
            Segment::Regex("[0-9]{2,3}".into())
        );
        assert_eq!(
            segs("/{?q}/{;m}"),
            vec![Segment::Variable, Segment::Slash, Segment::Variable]
        );
    }

    #[test]
    fn bad_templates_are_rejected_with_the_reason() {
        for (bad, needle) in [
            ("/a/{id", "unbalanced `{`"),
            ("/a/id}", "unbalanced `}`"),
            ("/a/{}", "empty variable name"),
            ("/a/{ }", "empty variable name"),
            ("/a/{na me}", "invalid variable name"),
            ("/x/{id: [0-9+}", "invalid regex"),
            ("/x/{id: a)|(b}", "invalid regex"),
            ("/{+a}/{+b}", "more than one `{+name}`"),
            ("/a{+a}/x{+b}", "more than one `{+name}`"),
        ] {
            let error = PathTemplate::parse(bad).unwrap_err();
            assert!(error.to_string().contains(needle), "{bad}: {error}");
            assert!(error.to_string().contains(bad), "{bad}: {error}");
        }
        assert!(PathTemplate::parse(&"/a".repeat(2000)).is_err());
        assert!(
            PathTemplate::parse("/x/{id: a{1000}{1000}}").is_err(),
            "regex size limit"
        );
    }

    #[test]
    fn canonical_form_drops_names() {
        assert_eq!(t("/users/{id}").canonical(), "/users/{}");
        assert_eq!(t("/users/{id}"), t("/users/{userId}/"));
        assert_eq!(t("/files/{+path}").canonical(), "/files/{+}");
        assert_eq!(t("/v{ver: [0-9]+}/x").canonical(), "/v{:[0-9]+}/x");
        assert_eq!(t("/foo{.ext}").canonical(), "/foo{.}");
        assert_eq!(t("").canonical(), "/");
        assert_eq!(t(""), t("/"));
        assert_ne!(t("/x/{a: [0-9]+}"), t("/x/{a: [a-z]+}"));
    }

    #[test]
    fn only_templates_the_trie_cannot_hold_compile_a_whole_regex() {
        for held in [
            "/",
            "/users/{id}",
            "/files/{+path}",
            "/{+p}/meta",
            "/foo{.ext}",
            "/v{ver: [0-9]+}/x",
            "/a/b{id}c",
        ] {
            assert!(t(held).full_regex().is_none(), "{held}");
        }
        for whole in ["/pre{+rest}", "/a/{x}.{+rest}"] {
            assert!(t(whole).full_regex().is_some(), "{whole}");
        }
        assert!(t("/pre{+rest}").matches("/prefix/a/b"));
        assert!(t("/a/{x}.{+rest}").matches("/a/x.y/z"));
    }

    #[test]
    fn matching_rules() {
        assert!(t("/").matches("/"));
        assert!(t("/").matches(""));
        assert!(t("/users/{id}").matches("/users/7"));
        assert!(t("/users/{id}").matches("/users/7/"));
        assert!(!t("/users/{id}").matches("/users/"));
        assert!(!t("/users/{id}").matches("/users/7/x"));
        assert!(t("/files/{+p}").matches("/files/a/b/c"));
        assert!(t("/files/{+p}").matches("/files/"));
        assert!(t("/{+p}/meta").matches("/a/b/meta"));
        assert!(t("/foo{.ext}").matches("/foo.json"));
        assert!(t("/foo{.ext}").matches("/foo"));
        assert!(!t("/foo{.ext}").matches("/foox"));
        assert!(t("/x/{id: [0-9]+}").matches("/x/42"));
        assert!(!t("/x/{id: [0-9]+}").matches("/x/4a"), "anchored");
        assert!(
            !t("/x/{id: .*}").matches("/x/a/b"),
            "a regex piece stays in its segment"
        );
        assert!(t("/Users").matches("/Users?x=1"));
        assert!(!t("/Users").matches("/users"), "case-sensitive");
    }

    #[test]
    fn an_empty_regex_is_a_plain_variable() {
        assert_eq!(
            segs("/x/{id:}"),
            vec![
                Segment::Static("x".into()),
                Segment::Slash,
                Segment::Variable
            ]
        );
        assert_eq!(t("/x/{id: }"), t("/x/{id}"));
        assert_eq!(segs("/{+p:}"), vec![Segment::Rest]);
    }

    #[test]
    fn statics_are_decoded_and_escapes_that_are_not_utf8_or_hex_are_kept() {
        assert_eq!(segs("/a%20b"), vec![Segment::Static("a b".into())]);
        assert_eq!(t("/a%20b"), t("/a b"));
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%FF"), "%FF", "not UTF-8: kept as written");
        assert!(matches!(
            percent_decode("plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    fn assert_order(more: &str, less: &str) {
        assert!(
            t(more) < t(less),
            "{more} should be more specific than {less}"
        );
        assert!(t(less) > t(more));
    }

    #[test]
    fn specificity_follows_shields_cases() {
        assert_order("/foo", "/{x}");
        assert_order("/{x}", "/{+p}");
        assert_order("/foo/{x}", "/{x}/bar");
        assert_order("/foo/bar/fizz", "/foo/bar/{x}");
        assert_order("/foo/bar/{x}", "/foo/{x}/fizz");
        assert_order("/foo/{x}/fizz", "/foo/{x}/{x}");
        assert_order("/foo/bar", "/foo");
        assert_order("/foo", "/");
        assert_order("/foo/{x}", "/foo");
        assert_order("/foo/{a}/{b}/{c}/{d}", "/foo/{+p}");
        assert_order("/foo/{+p}", "/{+p}");
        assert_order("/{+p}/foo", "/{+p}/{x}");
        assert_order("/{+p}/{x}", "/{+p}");
        assert_order("/x/{x}", "/x/{a: [0-9]+}");
        assert_order("/x/{a: [0-9]+}", "/x/{+r}");
        assert_order("/foo{.e}", "/{x}");
        assert_order("/foo", "/foo{.e}");
    }

    #[test]
    fn within_a_segment_more_literal_characters_is_more_specific() {
        assert_order("/{z}/{x}/{y}.pbf", "/{z}/{x}/{y}.{format}");
        assert_order("/{x}.json/y", "/{x}/y");
        assert_order("/v{n}", "/{n}");
        assert_order("/ab{n}", "/a{n}");
        assert_order("/a{n}b", "/{n}");
        assert_order("/{n}.json", "/{n}{.e}");
        assert_order("/{n}", "/{n}{.e}");
        assert_order("/pre{+r}", "/{x}");
        assert_order("/{x}", "/{+r}");
        assert_eq!(t("/").cmp(&t("")), Ordering::Equal);
    }

    #[test]
    fn query_parts_become_sorted_predicates_and_fragments_are_dropped() {
        let q = t("/{Bucket}/{Key}?uploads&a%20b=1&versionId={v}&&uploads");
        assert_eq!(q.canonical(), "/{}/{}?a b=1&uploads&versionId");
        assert_eq!(
            q.query_predicates()[0],
            QueryPredicate {
                name: "a b".into(),
                value: Some("1".into())
            }
        );
        assert!(q.query_matches(Some("versionId=7&uploads&a+c&a%20b=1")));
        assert!(!q.query_matches(Some("versionId=7&uploads")));
        assert!(!q.query_matches(None));
        assert!(t("/x").query_matches(None));
        assert_eq!(t("/#X-Amz-Target=A.B").canonical(), "/");
        assert_eq!(t("/a?b#c").canonical(), "/a?b");
        // `{?x}` and `{#x}` are variables, not a query or a fragment.
        assert_eq!(t("/s{?q}").canonical(), "/s{}");
        assert_eq!(t("/s/{#q}").canonical(), "/s/{}");
        assert_ne!(t("/a?b"), t("/a"));
        assert_order("/{x}?acl", "/{x}");
        assert_order("/{x}?acl&b", "/{x}?acl");
        // The path decides first.
        assert_order("/a", "/{x}?acl");
    }
}
