//! The chain's compilation per group and its order.

use super::*;
use buckler_config::Config;

fn config(chain: &str) -> Config {
    let auth = if chain.to_ascii_lowercase().contains("\"auth\"") {
        r#"auth: { allowed: ["k"] },"#
    } else {
        ""
    };
    let text = format!(
        r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*", upstreams: [],
             "middleware-chain": [{chain}],
             middleware: {{ {auth} limit: {{ "calls-per": 1, "per-seconds": 60 }} }},
             listeners: [{{ id: "Access", builder: "access-log" }}] }}] }}"#
    );
    buckler_config::parse(&text, std::path::Path::new("t.json5")).unwrap()
}

#[tokio::test]
async fn a_group_runs_the_chain_minus_what_its_endpoints_disabled() {
    let config = config(
        r#"{ id: "Auth", builder: "api-key-auth" }, { id: "limit", builder: "rate-limit" }"#,
    );
    let built = DomainMiddleware::build(&config.domains[0], None).unwrap();
    let ids = |chain: &Chain| -> Vec<String> {
        chain.entries.iter().map(|m| m.id().to_string()).collect()
    };
    assert_eq!(ids(&built.chain_for(&[])), ["auth", "limit"]);
    assert_eq!(ids(&built.chain_for(&["AUTH".to_owned()])), ["limit"]);
    assert!(built.listeners_for(&["access".to_owned()]).is_empty());
    assert!(!built.listeners_for(&[]).is_empty());
    assert!(built.needs_client_address());
    assert_eq!(built.describe(), (vec!["auth", "limit"], vec!["Access"]));
}

#[tokio::test]
async fn the_first_refusal_stops_the_chain() {
    let config = config(
        r#"{ id: "limit", builder: "rate-limit" }, { id: "auth", builder: "api-key-auth" }"#,
    );
    let built = DomainMiddleware::build(&config.domains[0], None).unwrap();
    let chain = built.chain_for(&[]);
    let mut outbound = crate::outbound::Outbound {
        method: http::Method::GET,
        path_and_query: http::uri::PathAndQuery::from_static("/x"),
        headers: HeaderMap::new(),
    };
    let info = RequestInfo {
        client_address: "1.2.3.4",
        request_timeout: Duration::from_secs(1),
    };
    let mut run = chain.run(&mut outbound, &info).await;
    // Auth refused (no key): the limit's headers are kept for the response.
    let answer = run.take_answer().unwrap();
    assert_eq!(answer.unwrap_err().status(), 401);
    assert_eq!(run.decorations["ratelimit-limit"], "1");
    assert_eq!(run.timings.len(), 2);
    let mut run = chain.run(&mut outbound, &info).await;
    assert_eq!(run.take_answer().unwrap().unwrap_err().status(), 429);
    assert_eq!(run.timings.len(), 1, "the limit stopped the chain");
}

#[tokio::test]
async fn a_reload_keeps_counters_and_stores_of_unchanged_entries() {
    let config = config(r#"{ id: "limit", builder: "rate-limit" }"#);
    let first = DomainMiddleware::build(&config.domains[0], None).unwrap();
    let second = DomainMiddleware::build(&config.domains[0], Some(&first)).unwrap();
    assert!(Arc::ptr_eq(
        first.entries[0].stats(),
        second.entries[0].stats()
    ));
    let mut outbound = crate::outbound::Outbound {
        method: http::Method::GET,
        path_and_query: http::uri::PathAndQuery::from_static("/x"),
        headers: HeaderMap::new(),
    };
    let info = RequestInfo {
        client_address: "1.2.3.4",
        request_timeout: Duration::from_secs(1),
    };
    assert!(first
        .chain_for(&[])
        .run(&mut outbound, &info)
        .await
        .take_answer()
        .is_none());
    // The limit of 1 is already used: the rebuilt chain shares the store.
    let mut run = second.chain_for(&[]).run(&mut outbound, &info).await;
    assert_eq!(run.take_answer().unwrap().unwrap_err().status(), 429);
}
