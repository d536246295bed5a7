//! Whole-document tests: positions, every error at once, defaults, the schema.

use super::*;
use std::path::PathBuf;
use std::time::Duration;

fn errors(text: &str) -> Vec<String> {
    parse(text, Path::new("gw.json5"))
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn a_minimal_config_gets_the_defaults() {
    let config = parse(
        r#"{ domains: [{ "domain-name": "API.example.org" }] }"#,
        Path::new("/etc/b/gw.json5"),
    )
    .unwrap();
    assert_eq!(config.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.max_request_body, 100 << 20);
    assert_eq!(config.paths, Paths::default());
    let domain = &config.domains[0];
    assert_eq!(domain.domain_name, "api.example.org");
    assert_eq!(domain.request_timeout, Duration::from_secs(5));
    assert_eq!(domain.upstream_weighting.step_count, 10);
    assert_eq!(
        domain.upstream_watcher,
        UpstreamWatcher::Static { upstreams: vec![] }
    );
}

#[test]
fn every_error_is_listed_with_position_and_key() {
    let text = "{\n  listen: \"127.0.0.1:0\",\n  bogus: 1,\n  domains: [{\n    \"domain-name\": \"*\",\n    \"request-timeout\": 5,\n    upstreams: [{ serviceType: \"swagger9\", serviceLocation: \"http://h/\", weight: -1 }],\n  }],\n}\n";
    let all = errors(text);
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(
        all[0].starts_with("gw.json5:3:3: bogus: unknown key; valid keys here: listen, tls"),
        "{}",
        all[0]
    );
    assert!(all[1].starts_with("gw.json5:6:24: domains[0].request-timeout: expected a duration, found a number; durations are strings"), "{}", all[1]);
    assert!(all[2].contains("domains[0].upstreams[0].serviceType: unknown service type \"swagger9\"; valid: swagger1, swagger2, lambda, openapi3"), "{}", all[2]);
    assert!(
        all[3].contains(
            "domains[0].upstreams[0].serviceLocation: \"http://h/\": a path is not allowed"
        ),
        "{}",
        all[3]
    );
    assert!(
        all[4].contains("domains[0].upstreams[0].weight: -1 is negative"),
        "{}",
        all[4]
    );
}

#[test]
fn syntax_errors_have_positions() {
    let all = errors("{\n  domains: [\n}");
    assert_eq!(all.len(), 1);
    assert!(all[0].starts_with("gw.json5:3:1:"), "{}", all[0]);
}

#[test]
fn duplicates_required_keys_and_watcher_rules() {
    let all = errors(
        r#"{ domains: [{ "domain-name": "a", "domain-name": "b", upstreams: [], "upstreams-file": "x.json" }, {}] }"#,
    );
    assert!(
        all.iter()
            .any(|e| e.contains("domains[0].domain-name: duplicate key")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|e| e.contains("domains[0].upstreams-file: only valid with")),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|e| e.contains("domains[1].domain-name: required key is missing")),
        "{all:#?}"
    );
    let file = errors(r#"{ domains: [{ "domain-name": "a", "upstream-watcher": "file" }] }"#);
    assert!(
        file[0].contains("domains[0].upstreams-file: required with"),
        "{file:#?}"
    );
    let dup = errors(r#"{ domains: [{ "domain-name": "a" }, { "domain-name": "A" }] }"#);
    assert!(dup[0].contains("duplicate domain"), "{dup:#?}");
}

#[test]
fn upstream_lists_are_rejected_whole_with_every_error() {
    let defaults = LambdaDefaults::default();
    let ok = parse_upstreams(
        r#"[{"serviceType": "swagger2", "serviceLocation": "HTTP://Host:81"}]"#,
        "req",
        &defaults,
    )
    .unwrap();
    assert_eq!(ok[0].identity(), "http://host:81");
    assert_eq!(ok[0].weight, 1);
    let bad = parse_upstreams(
        "[\n {\"serviceType\": \"swagger2\", \"serviceLocation\": \"http://a\", \"weight\": 0.5},\n {\"serviceType\": \"swagger2\", \"serviceLocation\": \"http://a\"},\n {\"serviceType\": \"swagger2\", \"serviceLocation\": \"http://b\", \"weight\": \"3\"},\n {\"serviceType\": \"swagger2\", \"serviceLocation\": \"http://c\", \"extra\": 1}\n]",
        "upstreams.json",
        &defaults,
    )
    .unwrap_err();
    let text: Vec<String> = bad.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(text[0].starts_with("upstreams.json:2:"), "{}", text[0]);
    assert!(
        text[0].contains("[0].weight: 0.5 is not an integer"),
        "{}",
        text[0]
    );
    assert!(text[1].contains("found a string"), "{}", text[1]);
    assert!(text[2].contains("[3].extra: unknown key"), "{}", text[2]);
    let duplicate = parse_upstreams(
        r#"[{"serviceType": "swagger2", "serviceLocation": "http://a"}, {"serviceType": "swagger2", "serviceLocation": "HTTP://A"}]"#,
        "req",
        &defaults,
    )
    .unwrap_err();
    assert!(
        duplicate.0[0]
            .message
            .contains("duplicate upstream \"http://a\" (also at index 0)"),
        "{duplicate}"
    );
    assert!(
        parse_upstreams("[{serviceType: 'swagger2'}]", "req", &defaults).is_err(),
        "strict JSON"
    );
    assert!(parse_upstreams("{}", "req", &defaults).unwrap_err().0[0]
        .message
        .contains("expected an array"));
}

#[test]
fn middleware_listeners_and_kvstores() {
    let config = parse(
        r#"{ domains: [{ "domain-name": "*",
            "middleware-chain": [{ id: "Auth", builder: "api-key-auth", sla: "10ms" }, { id: "rl", builder: "rate-limit" }],
            middleware: { auth: { "header-name": "X-Key", allowed: ["k1"] }, rl: { "calls-per": 10, "per-seconds": 1, kvstore: "shared" } },
            kvstores: { shared: { type: "redis", url: "redis://127.0.0.1:6379" } },
            listeners: [{ id: "log", builder: "access-log" }],
            "listener-config": { log: { path: "access.log" } },
        }] }"#,
        Path::new("/etc/b/gw.json5"),
    )
    .unwrap();
    let domain = &config.domains[0];
    assert_eq!(domain.middleware_chain.len(), 2);
    assert_eq!(domain.middleware_chain[0].id, "auth");
    assert!(
        matches!(&domain.middleware_chain[1].builder, MiddlewareBuilder::RateLimit { kvstore: Some(k), .. } if k == "shared")
    );
    assert_eq!(
        domain.listeners[0].builder,
        ListenerBuilder::AccessLog {
            path: Some(PathBuf::from("/etc/b/access.log"))
        }
    );
    let bad = errors(
        r#"{ domains: [{ "domain-name": "*",
            "middleware-chain": [{ id: "a", builder: "api-key-auth" }, { id: "r", builder: "rate-limit" }, { id: "x", builder: "nope" }],
            middleware: { a: { "header-name": "k", allowed: "k1" }, r: { "calls-per": 1, "per-seconds": 1, kvstore: "missing" } },
        }] }"#,
    );
    assert!(
        bad.iter()
            .any(|e| e.contains("middleware.a.allowed: expected an array")),
        "{bad:#?}"
    );
    assert!(
        bad.iter()
            .any(|e| e.contains("no kvstore named \"missing\"")),
        "{bad:#?}"
    );
    assert!(bad.iter().any(|e| e.contains("builder")), "{bad:#?}");
}

#[test]
fn admin_token_is_not_printed() {
    let config = parse(r#"{ admin: { listen: "127.0.0.1:9901", token: "hunter2" }, domains: [{ "domain-name": "*" }] }"#, Path::new("g")).unwrap();
    let debug = format!("{:?}", config.admin);
    assert!(!debug.contains("hunter2"), "{debug}");
    let env = parse(r#"{ admin: { listen: "127.0.0.1:9901", token: "env:TOKEN" }, domains: [{ "domain-name": "*" }] }"#, Path::new("g")).unwrap();
    assert_eq!(env.admin.unwrap().token, Some(Secret::Env("TOKEN".into())));
}

#[test]
fn schema_mentions_every_key_and_the_checked_in_copy_is_current() {
    let schema = json_schema();
    let text = serde_json::to_string_pretty(&schema).unwrap();
    for table in [
        schema::ROOT,
        schema::DOMAIN,
        schema::TLS,
        schema::ADMIN,
        schema::PATHS,
        schema::LAMBDA,
        schema::WEIGHTING,
        schema::ETCD,
        schema::MIDDLEWARE_ENTRY,
        schema::MIDDLEWARE_SETTINGS,
        schema::LISTENER_ENTRY,
        schema::KVSTORE,
        schema::LOG,
        upstream::UPSTREAM_FIELDS,
    ] {
        for field in table {
            assert!(
                text.contains(&format!("\"{}\"", field.key)),
                "schema lacks {}",
                field.key
            );
        }
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../gateway-config/buckler.schema.json"
    );
    let expected = format!("{text}\n");
    if std::env::var_os("BUCKLER_BLESS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == expected,
        "gateway-config/buckler.schema.json is stale: run `BUCKLER_BLESS=1 cargo test -p buckler-config` and commit it"
    );
}

#[test]
fn the_shipped_configs_are_valid() {
    for name in ["quickstart.json5", "example.json5"] {
        let path =
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../gateway-config")).join(name);
        if let Err(errors) = load(&path) {
            panic!("{name}:\n{errors}");
        }
    }
}
