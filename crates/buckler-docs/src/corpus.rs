//! (feature `corpus`; for tests, benches and examples, not the gateway) The corpus of real
//! published API descriptions stored in `tests/corpus/` (see its README), and the loading that
//! the corpus test, the end-to-end corpus test and the `sweep` example share: unpack it, load a
//! document as the gateway would (format recognised from its content), build a routing table
//! of its operations, and write a request path that a template's operation must answer.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use buckler_route::{PathTemplate, RoutingTable, RoutingTableBuilder, Segment, TemplateError};

use crate::{
    endpoints, parse_openapi3, parse_swagger1, parse_swagger2, DocsError, Endpoint, Limits,
};

/// `tests/corpus/corpus.tar.gz`: a gzipped ustar archive of `documents/<name>`.
pub const ARCHIVE: &[u8] = include_bytes!("../tests/corpus/corpus.tar.gz");
/// `tests/corpus/verdicts.json`: name → `valid` or `invalid: <message>`.
pub const VERDICTS: &str = include_str!("../tests/corpus/verdicts.json");

/// Which parser a document needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Swagger 1.2 bundle: `{"listing": {...}, "declarations": {"/path": {...}, ...}}`, the
    /// resource listing and each API declaration under the listing's `path` (how the corpus
    /// stores them; the gateway fetches them one by one).
    Swagger1Bundle,
    Swagger2,
    OpenApi3,
}

impl Format {
    /// The `serviceType` an upstream serving this format is declared with.
    pub fn service_type(self) -> &'static str {
        match self {
            Format::Swagger1Bundle => "swagger1",
            Format::Swagger2 => "swagger2",
            Format::OpenApi3 => "openapi3",
        }
    }
}

/// The format from the content: a Swagger 1.2 bundle has a `"listing"` key holding a
/// `swaggerVersion`; otherwise the earliest of a `swagger` and an `openapi` key (JSON
/// `"swagger":`, or a YAML line starting `swagger:`) decides, and a document with neither is
/// read as OpenAPI 3. A heuristic for known corpora, not a validator.
pub fn format_of(bytes: &[u8]) -> Format {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1 << 20)]);
    let first_key = |key: &str| -> Option<usize> {
        let quoted = format!("\"{key}\"");
        let json = text
            .match_indices(&quoted)
            .map(|(at, _)| at)
            .find(|at| text[at + quoted.len()..].trim_start().starts_with(':'));
        // YAML: a key at the indentation of the document's first key (often 0, not always).
        let indent = |line: &str| line.len() - line.trim_start_matches(' ').len();
        let top = text
            .lines()
            .find(|l| {
                !l.trim().is_empty() && !l.starts_with("---") && !l.trim_start().starts_with('#')
            })
            .map_or(0, indent);
        let mut offset = 0;
        let mut yaml = None;
        for line in text.split_inclusive('\n') {
            let body = &line[indent(line).min(line.len())..];
            if indent(line) == top
                && [format!("{key}:"), format!("'{key}':"), quoted.clone() + ":"]
                    .iter()
                    .any(|prefix| body.starts_with(prefix.as_str()))
            {
                yaml = Some(offset);
                break;
            }
            offset += line.len();
        }
        json.into_iter().chain(yaml).min()
    };
    if first_key("listing").is_some() && first_key("swaggerVersion").is_some() {
        return Format::Swagger1Bundle;
    }
    match (first_key("swagger"), first_key("openapi")) {
        (Some(swagger), Some(openapi)) if swagger < openapi => Format::Swagger2,
        (Some(_), None) => Format::Swagger2,
        _ => Format::OpenApi3,
    }
}

/// Loads a document of any format, as the gateway's docs loader would.
pub fn load(bytes: &[u8], limits: &Limits) -> Result<openapiv3::OpenAPI, DocsError> {
    match format_of(bytes) {
        Format::Swagger2 => parse_swagger2(bytes, limits),
        Format::OpenApi3 => parse_openapi3(bytes, limits),
        Format::Swagger1Bundle => {
            let (listing, declarations) = swagger1_parts(bytes)?;
            let declarations: Vec<Vec<u8>> = declarations.into_iter().map(|(_, d)| d).collect();
            parse_swagger1(&listing, &declarations, limits)
        }
    }
}

/// A Swagger 1.2 listing's bytes and its declarations: (listing path, bytes).
pub type Swagger1Parts = (Vec<u8>, Vec<(String, Vec<u8>)>);

/// A Swagger 1.2 bundle's listing and its declarations, keyed by the listing's path for each
/// (`/pets`), in the listing's order, as bytes a server would send.
pub fn swagger1_parts(bytes: &[u8]) -> Result<Swagger1Parts, DocsError> {
    let invalid = |message: &str| DocsError::Invalid {
        path: "listing".to_owned(),
        message: message.to_owned(),
    };
    let bundle: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(&e.to_string()))?;
    let listing = bundle.get("listing").ok_or_else(|| invalid("no listing"))?;
    let declarations = bundle
        .get("declarations")
        .and_then(|d| d.as_object())
        .ok_or_else(|| invalid("no declarations"))?;
    let mut out = Vec::new();
    for api in listing["apis"].as_array().into_iter().flatten() {
        let path = api["path"].as_str().unwrap_or_default().to_owned();
        if let Some(declaration) = declarations.get(&path) {
            out.push((path, declaration.to_string().into_bytes()));
        }
    }
    Ok((listing.to_string().into_bytes(), out))
}

/// Every document of the stored corpus: (name without `documents/`, bytes), sorted by name.
pub fn documents() -> Vec<(String, Vec<u8>)> {
    let mut archive = Vec::new();
    flate2::read::GzDecoder::new(ARCHIVE)
        .read_to_end(&mut archive)
        .expect("the stored corpus.tar.gz is gzip");
    let mut documents: Vec<(String, Vec<u8>)> = untar(&archive)
        .into_iter()
        .filter_map(|(name, bytes)| Some((name.strip_prefix("documents/")?.to_owned(), bytes)))
        .collect();
    documents.sort();
    documents
}

/// The validator's verdicts: name → `valid` or `invalid: <message>`.
pub fn verdicts() -> BTreeMap<String, String> {
    serde_json::from_str(VERDICTS).expect("the stored verdicts.json is a JSON object of strings")
}

/// The files of a ustar archive: (name, bytes). Enough for what `regenerate.sh` writes; a
/// truncated archive yields the files before the damage.
pub fn untar(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() {
        let header = &archive[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let text = |range: std::ops::Range<usize>| {
            let field = &header[range];
            let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
            String::from_utf8_lossy(&field[..end]).into_owned()
        };
        let Ok(size) = usize::from_str_radix(text(124..136).trim(), 8) else {
            break;
        };
        let (prefix, name) = (text(345..500), text(0..100));
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let Some(body) = archive.get(at + 512..at + 512 + size) else {
            break;
        };
        if header[156] == b'0' || header[156] == 0 {
            files.push((name, body.to_vec()));
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    files
}

/// Every `.json`, `.yaml` and `.yml` file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// A document's operations and a routing table of them, grouped as the gateway groups them.
pub struct Routed {
    pub endpoints: Vec<Endpoint>,
    /// Per endpoint, its parsed template (or why it did not parse).
    pub templates: Vec<Result<PathTemplate, TemplateError>>,
    /// Groups hold indices into `endpoints`.
    pub table: RoutingTable<Vec<usize>>,
}

/// The routing table of a loaded document.
pub fn route(model: &openapiv3::OpenAPI) -> Routed {
    let endpoints = endpoints(model);
    let mut builder = RoutingTableBuilder::new();
    let mut templates = Vec::with_capacity(endpoints.len());
    for (index, endpoint) in endpoints.iter().enumerate() {
        let template = PathTemplate::parse(&endpoint.path);
        if let Ok(template) = &template {
            builder
                .group_mut(template.clone(), endpoint.method.clone(), Vec::new)
                .push(index);
        }
        templates.push(template);
    }
    Routed {
        endpoints,
        templates,
        table: builder.build(),
    }
}

/// A value for a `{name: regex}` piece: the first sample the anchored regex accepts.
pub fn sample_for(regex: &str) -> Option<&'static str> {
    const SAMPLES: [&str; 14] = [
        "v7q",
        "1",
        "a",
        "A",
        "abc",
        "123",
        "0",
        "x1",
        "a-b",
        "2024-01-01",
        "true",
        "json",
        "ABC123",
        "a.b",
    ];
    let anchored = regex::Regex::new(&format!("^(?:{regex})$")).ok()?;
    SAMPLES.into_iter().find(|s| anchored.is_match(s))
}

/// Literal text as a client writes it in a request line: percent-encoded where RFC 3986
/// requires (`/Your API URL` → `/Your%20API%20URL`, `café` → `caf%C3%A9`). With `in_query`,
/// `&`, `=` and `+` are encoded too.
pub fn encode(text: &str, in_query: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        let plain = byte.is_ascii_alphanumeric() || b"-._~!$'()*,;:@".contains(&byte);
        let plain = plain || (!in_query && b"&=+".contains(&byte));
        if plain {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A request path (with a query when the template has query predicates) that the template
/// matches, or `None` when no sample fits one of its regexes. `declared` is the template as
/// written: the one trailing slash the parser drops is put back (`/wms//` is reached by
/// `/wms//`, `/wms/` by `/wms` or `/wms/`).
pub fn request_path(template: &PathTemplate, declared: &str) -> Option<String> {
    let mut path = String::from("/");
    for segment in template.segments() {
        match segment {
            Segment::Slash => path.push('/'),
            Segment::Static(text) => path.push_str(&encode(text, false)),
            Segment::Variable => path.push_str("v7q"),
            Segment::Regex(regex) => path.push_str(sample_for(regex)?),
            Segment::Extension => {}
            Segment::Rest => path.push_str("r/s"),
        }
    }
    let declared_path = declared.split(['?', '#']).next().unwrap_or_default();
    if declared_path.len() > 1 && declared_path.ends_with('/') {
        path.push('/');
    }
    for (index, predicate) in template.query_predicates().iter().enumerate() {
        path.push(if index == 0 { '?' } else { '&' });
        path.push_str(&encode(&predicate.name, true));
        path.push('=');
        path.push_str(&encode(predicate.value.as_deref().unwrap_or("v7q"), true));
    }
    Some(path)
}
