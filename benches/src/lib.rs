//! Inputs shared by the benchmarks: generated route sets that look like real APIs.

/// `count` templates mixing static, `{name}`, regex and `{+rest}` segments, the way a few
/// dozen services' Swagger docs would, plus request paths that hit and miss them.
pub fn route_mix(count: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut templates = Vec::with_capacity(count);
    let mut hits = Vec::new();
    let mut misses = Vec::new();
    for i in 0..count {
        let service = i / 10;
        let (template, hit) = match i % 5 {
            0 => (
                format!("/svc{service}/items{i}"),
                format!("/svc{service}/items{i}"),
            ),
            1 => (
                format!("/svc{service}/users{i}/{{id}}"),
                format!("/svc{service}/users{i}/42"),
            ),
            2 => (
                format!("/svc{service}/orders{i}/{{id: [0-9]+}}/lines"),
                format!("/svc{service}/orders{i}/123/lines"),
            ),
            3 => (
                format!("/svc{service}/files{i}/{{+path}}"),
                format!("/svc{service}/files{i}/a/b/c.txt"),
            ),
            _ => (
                format!("/svc{service}/v{i}/things/{{id}}/parts/{{part}}"),
                format!("/svc{service}/v{i}/things/9/parts/x"),
            ),
        };
        templates.push(template);
        hits.push(hit);
        misses.push(format!("/svc{service}/missing{i}/x"));
    }
    (templates, hits, misses)
}
