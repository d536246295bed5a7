//! Route lookup over 10, 100 and 1,000 templates: hits and misses.

/// The allocator the `buckler` binary ships with, so allocation-heavy paths cost here what
/// they cost in production.
#[global_allocator]
static ALLOCATOR: buckler_alloc::Allocator = buckler_alloc::Allocator;

use buckler_benches::route_mix;
use buckler_route::{PathTemplate, RouteMatch, RoutingTableBuilder};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for size in [10usize, 100, 1_000] {
        let (templates, hits, misses) = route_mix(size);
        let mut builder = RoutingTableBuilder::new();
        for (i, template) in templates.iter().enumerate() {
            let parsed = PathTemplate::parse(template).expect("bench template parses");
            builder.group_mut(parsed, http::Method::GET, || i);
        }
        let table = builder.build();
        for path in &hits {
            assert!(
                matches!(
                    table.lookup(&http::Method::GET, path),
                    RouteMatch::Matched { .. }
                ),
                "bench hit {path} must match"
            );
        }
        let mut n = 0usize;
        group.bench_with_input(BenchmarkId::new("hit", size), &hits, |b, hits| {
            b.iter(|| {
                n = (n + 7) % hits.len();
                black_box(table.lookup(&http::Method::GET, black_box(&hits[n])));
            })
        });
        group.bench_with_input(BenchmarkId::new("miss", size), &misses, |b, misses| {
            b.iter(|| {
                n = (n + 7) % misses.len();
                black_box(table.lookup(&http::Method::GET, black_box(&misses[n])));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
