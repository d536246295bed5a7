//! Publishing a new runtime table — what every ramp step does — with 1,000 upstreams and 1,000
//! templates: build the routing trie and every endpoint group's picker, then one atomic swap.

/// The allocator the `buckler` binary ships with, so allocation-heavy paths cost here what
/// they cost in production.
#[global_allocator]
static ALLOCATOR: buckler_alloc::Allocator = buckler_alloc::Allocator;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use buckler_benches::route_mix;
use buckler_gateway::table::{DomainInput, RuntimeTable};
use buckler_gateway::upstream::{DocsDigest, RoutableEndpoint, UpstreamDocs, UpstreamHandle};
use buckler_route::PathTemplate;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn publish(c: &mut Criterion) {
    let upstream_count = 1_000;
    let mut text = String::from(r#"{ domains: [{ "domain-name": "*", upstreams: ["#);
    for i in 0..upstream_count {
        text.push_str(&format!(
            r#"{{ serviceType: "swagger2", serviceLocation: "http://10.0.{}.{}:8080", weight: {} }},"#,
            i / 250,
            i % 250,
            1 + i % 5
        ));
    }
    text.push_str("] }] }");
    let config =
        Arc::new(buckler_config::parse(&text, Path::new("bench.json5")).expect("bench config"));
    let buckler_config::UpstreamWatcher::Static { upstreams } = &config.domains[0].upstream_watcher
    else {
        unreachable!("static watcher");
    };
    // 1,000 templates; every upstream serves 10 of them, so each group has 10 upstreams.
    let (templates, _, _) = route_mix(1_000);
    let parsed: Vec<PathTemplate> = templates
        .iter()
        .map(|t| PathTemplate::parse(t).expect("template"))
        .collect();
    let handles: Vec<Arc<UpstreamHandle>> = upstreams
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let handle = Arc::new(UpstreamHandle::new(spec.clone(), "*"));
            let endpoints = (0..10)
                .map(|k| RoutableEndpoint {
                    template: parsed[(i + k * 100) % parsed.len()].clone(),
                    path: templates[(i + k * 100) % parsed.len()].clone(),
                    parameters: Vec::new(),
                    method: http::Method::GET,
                    consumes: Vec::new(),
                    produces: Vec::new(),
                    disabled_middleware: Vec::new(),
                    disabled_listeners: Vec::new(),
                })
                .collect();
            handle.set_docs(Arc::new(UpstreamDocs {
                title: "bench".into(),
                version: "1".into(),
                endpoints,
                digest: DocsDigest::of("swagger2", &[&i.to_le_bytes()]),
            }));
            handle
        })
        .collect();
    let stats = Arc::new(Default::default());
    let store = ArcSwap::from_pointee(RuntimeTable::build(config.clone(), 0, Vec::new()));
    let mut generation = 0u64;
    c.bench_function("publish_table/1000_upstreams_1000_templates", |b| {
        b.iter(|| {
            generation += 1;
            let inputs = vec![DomainInput::new(
                &config.domains[0],
                handles
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (h.clone(), 1.0 + ((i as u64 + generation) % 7) as f64 * 0.5))
                    .collect(),
                Arc::clone(&stats),
            )];
            store.store(Arc::new(RuntimeTable::build(
                config.clone(),
                generation,
                inputs,
            )));
            black_box(store.load().generation)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = publish
}
criterion_main!(benches);
