//! Loads every API description under a directory (JSON or YAML, any version), routes a
//! request built from every operation's template through a `buckler-route` table of its
//! document, and prints totals, every failure, and the load time of the largest documents.
//!
//! `cargo run --release -p buckler-docs --example sweep -- DIR [--yaml]`: with `--yaml`, each
//! document is also timed after conversion to YAML is not done here (no YAML writer); the
//! YAML load time is measured on `.yaml` files found in DIR.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use buckler_docs::{endpoints, parse_openapi3, parse_swagger2, Limits};
use buckler_route::{PathTemplate, RouteMatch, RoutingTableBuilder, Segment};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
        {
            out.push(path);
        }
    }
}

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

fn request_path(template: &PathTemplate, declared: &str) -> Option<String> {
    let mut path = String::from("/");
    for segment in template.segments() {
        match segment {
            Segment::Slash => path.push('/'),
            Segment::Static(text) => path.push_str(&encode(text)),
            Segment::Variable => path.push_str("v7q"),
            Segment::Regex(regex) => {
                let anchored = regex::Regex::new(&format!("^(?:{regex})$")).ok()?;
                let sample = ["v7q", "1", "a", "A", "abc", "123", "0", "x1", "a-b"]
                    .into_iter()
                    .find(|s| anchored.is_match(s))?;
                path.push_str(sample);
            }
            Segment::Extension => {}
            Segment::Rest => path.push_str("r/s"),
        }
    }
    if declared.len() > 1 && declared.ends_with('/') {
        path.push('/');
    }
    Some(path)
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: sweep DIR");
    let mut paths = Vec::new();
    files(Path::new(&dir), &mut paths);
    paths.sort();
    let limits = Limits::default();
    let (mut loaded, mut operations, mut routed, mut elsewhere) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut timings: Vec<(usize, Duration, Duration, usize, String)> = Vec::new();
    for path in &paths {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let name = path.display().to_string();
        let start = Instant::now();
        let head = &bytes[..bytes.len().min(4096)];
        let is_swagger2 =
            head.windows(7).any(|w| w == b"swagger") && !head.windows(7).any(|w| w == b"openapi");
        let parsed = if is_swagger2 {
            parse_swagger2(&bytes, &limits)
        } else {
            parse_openapi3(&bytes, &limits)
        };
        let model = match parsed {
            Ok(model) => model,
            Err(error) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
        };
        let parse_time = start.elapsed();
        loaded += 1;
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
                    failures.push(format!("{name}: {error}"));
                    templates.push(None);
                }
            }
        }
        let table = builder.build();
        let table_time = start.elapsed();
        timings.push((
            bytes.len(),
            parse_time,
            table_time,
            endpoints.len(),
            name.clone(),
        ));
        for (index, endpoint) in endpoints.iter().enumerate() {
            operations += 1;
            let Some(template) = &templates[index] else {
                continue;
            };
            let Some(request) = request_path(template, &endpoint.path) else {
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
    println!(
        "documents {} loaded {loaded} operations {operations} routed {routed} to-more-specific {elsewhere} failures {}",
        paths.len(),
        failures.len()
    );
    for failure in &failures {
        println!("  FAIL {failure}");
    }
    timings.sort_by_key(|t| std::cmp::Reverse(t.0));
    println!("largest documents: bytes, parse, parse+endpoints+table, operations");
    for (bytes, parse, total, ops, name) in timings.iter().take(8) {
        println!("  {bytes:>10} {parse:>10.1?} {total:>10.1?} {ops:>6} {name}");
    }
}
