//! Loads every API description under a directory (JSON or YAML, any version; or the stored
//! corpus), routes a request built from every operation's template through a `buckler-route`
//! table of its document, and prints totals, every failure, and the load time of the largest
//! documents. The loading is `buckler_docs::corpus`, the same as the corpus tests'.
//!
//! ```text
//! cargo run --release -p buckler-docs --features corpus --example sweep -- DIR|--corpus [--json] [--top N]
//! ```
//!
//! With `--json`, the output is only one JSON object per line for each of the `N` (default 8)
//! largest documents, timed alone after the sweep:
//! `{"name", "bytes", "format", "operations", "load_ms", "table_ms", "peak_rss_bytes"}` where
//! `load_ms` is parsing into the model, `table_ms` endpoints plus the routing table, and
//! `peak_rss_bytes` the growth of the process's peak resident set over its size before the
//! load (Linux: `VmHWM` reset through `/proc/self/clear_refs`; `null` where unavailable).
//! `--json` skips the sweep. Memory freed by an earlier load is reused by the next, so for
//! each document's own peak run one process per file: `sweep FILE --json`.

use std::path::Path;
use std::time::{Duration, Instant};

use buckler_docs::corpus::{self, Routed};
use buckler_docs::Limits;
use buckler_route::RouteMatch;

/// One document's load, measured.
struct Timing {
    name: String,
    bytes: usize,
    format: corpus::Format,
    operations: usize,
    load: Duration,
    table: Duration,
    peak_rss: Option<u64>,
}

/// A `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Loads and routes one document alone, measuring time and peak memory.
fn time_one(name: &str, bytes: &[u8], limits: &Limits) -> Option<Timing> {
    // Writing 5 resets the peak RSS (VmHWM) to the current RSS (Linux 4.0+).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_bytes("VmRSS");
    let start = Instant::now();
    let model = corpus::load(bytes, limits).ok()?;
    let load = start.elapsed();
    let routed = corpus::route(&model);
    let table = start.elapsed() - load;
    let peak = status_bytes("VmHWM");
    let operations = routed.endpoints.len();
    drop((routed, model));
    Some(Timing {
        name: name.to_owned(),
        bytes: bytes.len(),
        format: corpus::format_of(bytes),
        operations,
        load,
        table,
        peak_rss: reset
            .then(|| peak.zip(before).map(|(p, b)| p.saturating_sub(b)))
            .flatten(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let top = args
        .iter()
        .position(|a| a == "--top")
        .and_then(|at| args.get(at + 1)?.parse().ok())
        .unwrap_or(8);
    let source = if args.iter().any(|a| a == "--corpus") {
        Some("--corpus")
    } else {
        args.iter()
            .enumerate()
            .find(|(at, a)| !a.starts_with("--") && (*at == 0 || args[at - 1] != "--top"))
            .map(|(_, a)| a.as_str())
    };
    let Some(source) = source else {
        eprintln!("usage: sweep DIR|--corpus [--json] [--top N]");
        std::process::exit(2);
    };
    let documents: Vec<(String, Vec<u8>)> = if source == "--corpus" {
        corpus::documents()
    } else {
        let source = Path::new(source);
        let paths = if source.is_file() {
            vec![source.to_path_buf()]
        } else {
            corpus::files_under(source)
        };
        paths
            .into_iter()
            .filter_map(|path| Some((path.display().to_string(), std::fs::read(&path).ok()?)))
            .collect()
    };
    let limits = Limits::default();
    let (mut loaded, mut operations, mut routed, mut elsewhere) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    // `--json` only times: the sweep would leave the heap grown and hide each load's peak.
    let sweep: &[(String, Vec<u8>)] = if json { &[] } else { &documents };
    for (name, bytes) in sweep {
        let model = match corpus::load(bytes, &limits) {
            Ok(model) => model,
            Err(error) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
        };
        loaded += 1;
        let Routed {
            endpoints,
            templates,
            table,
        } = corpus::route(&model);
        for (index, (endpoint, template)) in endpoints.iter().zip(&templates).enumerate() {
            operations += 1;
            let template = match template {
                Ok(template) => template,
                Err(error) => {
                    failures.push(format!("{name}: {error}"));
                    continue;
                }
            };
            let Some(request) = corpus::request_path(template, &endpoint.path) else {
                failures.push(format!("{name}: no sample for {}", endpoint.path));
                continue;
            };
            match table.lookup(&endpoint.method, &request) {
                RouteMatch::Matched { group, .. } if group.contains(&index) => routed += 1,
                RouteMatch::Matched {
                    template: other, ..
                } if other < template => elsewhere += 1,
                result => failures.push(format!(
                    "{name}: {} {} ({request}): {result:?}",
                    endpoint.method, endpoint.path
                )),
            }
        }
    }
    let mut largest: Vec<&(String, Vec<u8>)> = documents.iter().collect();
    largest.sort_by_key(|(name, bytes)| (std::cmp::Reverse(bytes.len()), name.clone()));
    let timings: Vec<Timing> = largest
        .into_iter()
        .take(top)
        .filter_map(|(name, bytes)| time_one(name, bytes, &limits))
        .collect();
    if json {
        for t in &timings {
            let line = serde_json::json!({
                "name": t.name,
                "bytes": t.bytes,
                "format": t.format.service_type(),
                "operations": t.operations,
                "load_ms": t.load.as_secs_f64() * 1e3,
                "table_ms": t.table.as_secs_f64() * 1e3,
                "peak_rss_bytes": t.peak_rss,
            });
            println!("{line}");
        }
        return;
    }
    println!(
        "documents {} loaded {loaded} operations {operations} routed {routed} to-more-specific {elsewhere} failures {}",
        documents.len(),
        failures.len()
    );
    for failure in &failures {
        println!("  FAIL {failure}");
    }
    println!("largest documents: bytes, load, endpoints+table, operations, peak RSS growth");
    for t in &timings {
        let peak = t
            .peak_rss
            .map_or("?".to_owned(), |b| format!("{} MiB", b >> 20));
        println!(
            "  {:>10} {:>10.1?} {:>10.1?} {:>6} {:>8} {}",
            t.bytes, t.load, t.table, t.operations, peak, t.name
        );
    }
}
