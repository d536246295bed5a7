//! The corpus of real API descriptions (`crates/buckler-docs/tests/corpus/`), end to end: each
//! sampled document is served by its own test upstream on 127.0.0.1:0, a gateway fetches and
//! loads them all (one domain per document, so documents never compete for a path), and for
//! every operation a request through a real socket reaches the upstream that declares it (its
//! echo names it; a `HEAD` answer has no body, so there the status shows it).
//!
//! The sample is every `BUCKLER_CORPUS_STRIDE`-th document by name (default 4), so a run stays
//! well under a minute in a debug build; `BUCKLER_CORPUS_STRIDE=1` takes them all. Documents
//! the gateway refuses (the in-process corpus test covers why) and operations whose template
//! has no request sample are left out here.

use std::time::{Duration, Instant};

use buckler_docs::corpus::{self, Format};
use buckler_docs::Limits;
use buckler_route::RouteMatch;
use buckler_tests::*;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::Full;

/// Documents served by one gateway.
const DOCUMENTS_PER_GATEWAY: usize = 60;
/// Requests in flight at once.
const CONCURRENCY: usize = 16;
/// Where the test upstreams serve their documents and the gateway keeps its own endpoints:
/// paths no real document declares, so nothing is shadowed.
const DOC_PATH: &str = "/__corpus/doc";

/// One sampled document: its upstream's name, the `serviceType`, the text, and a request
/// (method, path with query) per operation.
struct Sampled {
    name: String,
    format: Format,
    text: String,
    requests: Vec<(Method, String)>,
}

fn sample() -> Vec<Sampled> {
    let stride: usize = std::env::var("BUCKLER_CORPUS_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(4);
    let limits = Limits::default();
    corpus::documents()
        .into_iter()
        .step_by(stride)
        .filter_map(|(name, bytes)| {
            let format = corpus::format_of(&bytes);
            // Bundles are split into listing and declarations by the upstream; the rest is
            // served as stored, JSON or YAML.
            let model = corpus::load(&bytes, &limits).ok()?;
            let routed = corpus::route(&model);
            let mut requests = Vec::new();
            for (endpoint, template) in routed.endpoints.iter().zip(&routed.templates) {
                let Ok(template) = template else { continue };
                let Some(path) = corpus::request_path(template, &endpoint.path) else {
                    continue;
                };
                if special_to_test_upstream(&path) {
                    continue;
                }
                // The in-process lookup must reach some operation of this document.
                if let RouteMatch::Matched { .. } = routed.table.lookup(&endpoint.method, &path) {
                    requests.push((endpoint.method.clone(), path));
                }
            }
            Some(Sampled {
                name,
                format,
                text: String::from_utf8(bytes).ok()?,
                requests,
            })
        })
        .collect()
}

/// A path the test upstream gives a meaning of its own (`/status/404` answers 404,
/// `/slow/N` waits, `/stream/N` streams): its answer would not be the echo.
fn special_to_test_upstream(path: &str) -> bool {
    let segments: Vec<&str> = path.split(['/', '?']).collect();
    segments.windows(2).any(|pair| {
        ["status", "slow", "stream"].contains(&pair[0]) && pair[1].parse::<u64>().is_ok()
    })
}

/// An upstream serving one document in the form its `serviceType` is fetched in.
async fn upstream_for(id: &str, document: &Sampled) -> FakeUpstream {
    let builder = FakeUpstream::builder(id).doc_path(DOC_PATH);
    let builder = match document.format {
        Format::Swagger1Bundle => {
            let (listing, declarations) =
                corpus::swagger1_parts(document.text.as_bytes()).expect("a bundle loads");
            let mut builder = builder.doc(String::from_utf8_lossy(&listing).into_owned());
            for (path, declaration) in declarations {
                builder = builder.doc_at(
                    &format!("{DOC_PATH}{path}"),
                    String::from_utf8_lossy(&declaration).into_owned(),
                );
            }
            builder
        }
        Format::Swagger2 | Format::OpenApi3 => builder.doc(document.text.clone()),
    };
    builder.start().await
}

fn host_of(index: usize) -> String {
    format!("d{index}.corpus.test")
}

/// Serves `batch` (documents numbered from `first`) through one gateway; returns the number
/// of requests sent and every failure.
async fn run_batch(first: usize, batch: &[Sampled]) -> (usize, Vec<String>) {
    let mut upstreams = Vec::new();
    let mut domains = Vec::new();
    for (offset, document) in batch.iter().enumerate() {
        let id = format!("doc{}", first + offset);
        let upstream = upstream_for(&id, document).await;
        domains.push(format!(
            r#"{{ "domain-name": "{}", upstreams: [{{ serviceType: "{}", serviceLocation: "{}" }}] }}"#,
            host_of(first + offset),
            document.format.service_type(),
            upstream.url()
        ));
        upstreams.push(upstream);
    }
    let config = format!(
        r#"{{
  listen: "127.0.0.1:0",
  "shutdown-grace": "1s",
  paths: {{ swagger1: "{DOC_PATH}", swagger2: "{DOC_PATH}", healthcheck: "/__gw/health",
           metrics: "/__gw/metrics", spec: "/__gw/spec" }},
  domains: [{}],
}}"#,
        domains.join(",\n")
    );
    let gateway = TestGateway::start(&config).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health = gateway.get("/__gw/health").await;
        if health.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "documents {first}..: the gateway never loaded them all: {}",
            String::from_utf8_lossy(&health.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jobs: Vec<(usize, &Method, &String)> = batch
        .iter()
        .enumerate()
        .flat_map(|(offset, document)| {
            document
                .requests
                .iter()
                .map(move |(method, path)| (first + offset, method, path))
        })
        .collect();
    let sent = jobs.len();
    let gateway = &gateway;
    let failures: Vec<String> = stream::iter(jobs)
        .map(|(index, method, path)| async move {
            let request = Request::builder()
                .method(method.clone())
                .uri(gateway.url(path))
                .header("host", host_of(index))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let reply = gateway.send(request).await;
            let expected = format!("doc{index}");
            let reached = reply.status == StatusCode::OK
                && (*method == Method::HEAD
                    || serde_json::from_slice::<serde_json::Value>(&reply.body)
                        .is_ok_and(|echo| echo["upstream"] == expected.as_str()));
            (!reached).then(|| {
                format!(
                    "{} ({expected}): {method} {path}: {} {}",
                    batch[index - first].name,
                    reply.status,
                    String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
                )
            })
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    drop(upstreams);
    (sent, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_of_every_sampled_document_reaches_its_upstream() {
    let started = Instant::now();
    let documents = sample();
    assert!(documents.len() >= 120, "sample of {}", documents.len());
    let sampled = started.elapsed();
    let (mut sent, mut failures) = (0, Vec::new());
    for (batch_index, batch) in documents.chunks(DOCUMENTS_PER_GATEWAY).enumerate() {
        let (batch_sent, batch_failures) =
            run_batch(batch_index * DOCUMENTS_PER_GATEWAY, batch).await;
        sent += batch_sent;
        failures.extend(batch_failures);
    }
    eprintln!(
        "corpus end to end: {} documents, {sent} requests, {} failures, {:?} ({sampled:?} to sample)",
        documents.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(sent >= 2500, "only {sent} requests");
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests did not reach their upstream:\n{}",
        failures.len(),
        failures[..failures.len().min(200)].join("\n")
    );
}
