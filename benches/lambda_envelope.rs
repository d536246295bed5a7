//! Lambda envelope encode (request → JSON payload) and decode (payload → validated response)
//! with 1 KB and 1 MB bodies: the per-request cost a Lambda upstream adds before the network.

/// The allocator the `buckler` binary ships with, so allocation-heavy paths cost here what
/// they cost in production.
#[global_allocator]
static ALLOCATOR: buckler_alloc::Allocator = buckler_alloc::Allocator;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use buckler_upstream::{RequestEnvelope, ResponseEnvelope};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, USER_AGENT};
use std::hint::black_box;

fn envelope(c: &mut Criterion) {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static("bench/1.0"));
    headers.insert("x-request-id", HeaderValue::from_static("0f6c1e9a-5d1b"));

    let mut group = c.benchmark_group("lambda_envelope");
    for (label, size) in [("1KB", 1024usize), ("1MB", 1024 * 1024)] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("encode", label), &body, |b, body| {
            b.iter(|| {
                let envelope =
                    RequestEnvelope::new("POST", "/items?x=1", headers.iter(), Some(body));
                black_box(envelope.to_payload())
            })
        });
        let reply = serde_json::to_vec(&serde_json::json!({
            "status": 200,
            "headers": [["content-type", "application/json"], ["x-served-by", "lambda"]],
            "body": STANDARD.encode(&body),
        }))
        .expect("reply serialises");
        assert_eq!(
            ResponseEnvelope::parse(&reply)
                .expect("bench reply parses")
                .body
                .len(),
            size
        );
        group.bench_with_input(BenchmarkId::new("decode", label), &reply, |b, reply| {
            b.iter(|| black_box(ResponseEnvelope::parse(black_box(reply))))
        });
    }
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
