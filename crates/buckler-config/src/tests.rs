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

/// Errors of the model alone, without the support gate (keys not built yet parse here).
fn ungated_errors(text: &str) -> Vec<String> {
    parse_gated(text, Path::new("gw.json5"), false)
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
    // SPEC §2 / §9 defaults of keys the gate refuses when present.
    assert_eq!(config.tls, None);
    assert_eq!(config.workers, Workers::Auto);
    assert_eq!(config.max_connections, 100_000);
    assert_eq!(config.client_header_timeout, Duration::from_secs(10));
    assert_eq!(config.client_idle_timeout, Duration::from_secs(60));
    assert_eq!(config.http2_max_concurrent_streams, 100);
    assert_eq!(domain.tls, None);
    assert_eq!(domain.upstream_weighting.guard, None);
    assert_eq!(domain.connect_timeout, Duration::from_secs(2));
    assert_eq!(domain.body_idle_timeout, Duration::from_secs(30));
    assert_eq!(domain.upstream_ca, None);
    assert_eq!(domain.upstream_protocol, UpstreamProtocol::Auto);
    assert_eq!(
        domain.circuit_breaker,
        CircuitBreakerConfig {
            max_failures: 50,
            endpoint_max_failures: 25,
            reset_timeout: Duration::from_secs(10),
            max_in_flight: 10_000,
        }
    );
    assert_eq!(domain.health_check, None);
    assert_eq!(
        domain.retry,
        RetryConfig {
            attempts: 1,
            budget_percent: 20
        }
    );
    assert!(domain.middleware_chain.is_empty() && domain.listeners.is_empty());
    assert_eq!(domain.log, LogConfig::default());
    assert!(domain.kvstores.is_empty());
}

/// SPEC §2's whole example, every key set, into typed fields (the model; the gate aside).
const EVERY_KEY: &str = r#"{
  listen: ["127.0.0.1:8080", "[::1]:8080"],
  tls: { listen: "0.0.0.0:8443", cert: "cert.pem", key: "key.pem", "min-version": "1.3" },
  admin: { listen: "127.0.0.1:9901", token: "env:BUCKLER_ADMIN_TOKEN" },
  workers: 4,
  "max-connections": 5000,
  "client-header-timeout": "7s",
  "client-idle-timeout": "45s",
  "http2-max-concurrent-streams": 250,
  "shutdown-grace": "20s",
  "trust-proxies": 2,
  "trust-x-forwarded-proto": true,
  "max-request-body": "10mb",
  paths: { healthcheck: "/hc", metrics: "/m", spec: "/s", swagger1: "/a", swagger2: "/b" },
  lambda: { region: "eu-west-1", "endpoint-url": "http://127.0.0.1:3001" },
  domains: [
    {
      "domain-name": "api.example.org",
      tls: { cert: "api.pem", key: "api.key" },
      "upstream-weighting": { "step-count": 5, "step-duration": "2s",
        guard: { "max-error-rate-increase": 0.05, "max-p99-ratio": 1.5, "p99-floor": "20ms",
                 "min-requests": 100, action: "pause" } },
      "drain-timeout": "30s",
      "connect-timeout": "1s",
      "request-timeout": "4s",
      "body-idle-timeout": "15s",
      "docs-refresh": "2m",
      "ignore-extensions": [".JSON"],
      "upstream-ca": "ca.pem",
      "upstream-protocol": "h2c",
      "circuit-breaker": { "max-failures": 5, "endpoint-max-failures": 3, "reset-timeout": "1s", "max-in-flight": 99 },
      "health-check": { path: "/health", interval: "2s", timeout: "500ms", "unhealthy-threshold": 4, "healthy-threshold": 1 },
      retry: { attempts: 2, "budget-percent": 50 },
      "upstream-watcher": "static",
      upstreams: [{ serviceType: "swagger2", serviceLocation: "http://127.0.0.1:9001", weight: 90 }],
      "middleware-chain": [
        { id: "auth", builder: "api-key-auth" },
        { id: "limit", builder: "rate-limit", sla: "5ms" },
        { id: "cache", builder: "response-cache" },
      ],
      middleware: {
        auth: { allowed: ["k1", "env:API_KEY", "sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"],
                "case-sensitive": false, "strip-header": true },
        limit: { "calls-per": 100, "per-seconds": 60, kvstore: "shared", "bypass-header": "X-Internal", "bypass-values": ["yes"] },
        cache: { kvstore: "local", "max-object-bytes": "256kb" },
      },
      listeners: [{ id: "access", builder: "access-log" }],
      "listener-config": { access: { path: "logs/access.log" } },
      log: { "request-headers": ["User-Agent"], "response-headers": ["X-Cache"] },
      kvstores: { local: { type: "memory", "max-bytes": "8mb" }, shared: { type: "redis", url: "rediss://r:6380" } },
    },
    {
      "domain-name": "fleet.example.org",
      "upstream-watcher": "etcd",
      etcd: { endpoints: ["http://127.0.0.1:2379"], key: "/buckler/fleet/upstreams" },
    },
  ],
}"#;

#[test]
fn every_key_of_spec_section_2_has_a_typed_field() {
    let config = parse_gated(EVERY_KEY, Path::new("/etc/b/gw.json5"), false)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.tls,
        Some(TlsConfig {
            listen: vec!["0.0.0.0:8443".parse().unwrap()],
            cert: PathBuf::from("/etc/b/cert.pem"),
            key: PathBuf::from("/etc/b/key.pem"),
            min_version: TlsVersion::V1_3,
        })
    );
    assert_eq!(config.workers, Workers::Count(4));
    assert_eq!(config.max_connections, 5000);
    assert_eq!(config.client_header_timeout, Duration::from_secs(7));
    assert_eq!(config.client_idle_timeout, Duration::from_secs(45));
    assert_eq!(config.http2_max_concurrent_streams, 250);
    let d = &config.domains[0];
    assert_eq!(
        d.tls,
        Some(DomainTls {
            cert: PathBuf::from("/etc/b/api.pem"),
            key: PathBuf::from("/etc/b/api.key")
        })
    );
    assert_eq!(
        d.upstream_weighting.guard,
        Some(RampGuard {
            max_error_rate_increase: 0.05,
            max_p99_ratio: 1.5,
            p99_floor: Duration::from_millis(20),
            min_requests: 100,
            action: GuardAction::Pause,
        })
    );
    assert_eq!(d.connect_timeout, Duration::from_secs(1));
    assert_eq!(d.body_idle_timeout, Duration::from_secs(15));
    assert_eq!(d.ignore_extensions, vec!["json".to_owned()]);
    assert_eq!(d.upstream_ca, Some(PathBuf::from("/etc/b/ca.pem")));
    assert_eq!(d.upstream_protocol, UpstreamProtocol::H2c);
    assert_eq!(d.circuit_breaker.max_failures, 5);
    assert_eq!(d.circuit_breaker.endpoint_max_failures, 3);
    assert_eq!(d.circuit_breaker.reset_timeout, Duration::from_secs(1));
    assert_eq!(d.circuit_breaker.max_in_flight, 99);
    assert_eq!(
        d.health_check,
        Some(HealthCheckConfig {
            path: "/health".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            unhealthy_threshold: 4,
            healthy_threshold: 1,
        })
    );
    assert_eq!(
        d.retry,
        RetryConfig {
            attempts: 2,
            budget_percent: 50
        }
    );
    let mut digest = [0u8; 32];
    digest[..4].copy_from_slice(&[0x9f, 0x86, 0xd0, 0x81]);
    match &d.middleware_chain[0].builder {
        MiddlewareBuilder::ApiKeyAuth {
            header_name,
            allowed,
            case_sensitive,
            strip_header,
        } => {
            assert_eq!(header_name, "x-api-key", "the default header");
            assert_eq!(allowed[0], AllowedKey::Literal("k1".into()));
            assert_eq!(allowed[1], AllowedKey::Env("API_KEY".into()));
            assert!(
                matches!(allowed[2], AllowedKey::Sha256(d) if d[..4] == digest[..4] && d[31] == 0x08)
            );
            assert!(!case_sensitive && *strip_header);
            assert!(
                !format!("{allowed:?}").contains("k1"),
                "keys are not printed"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        d.middleware_chain[0].sla,
        Duration::from_millis(20),
        "default sla"
    );
    assert_eq!(d.middleware_chain[1].sla, Duration::from_millis(5));
    assert_eq!(
        d.middleware_chain[1].builder,
        MiddlewareBuilder::RateLimit {
            calls_per: 100,
            per_seconds: 60,
            bypass_header: Some("x-internal".into()),
            bypass_values: Some(vec!["yes".into()]),
            kvstore: Some("shared".into()),
        }
    );
    assert_eq!(
        d.middleware_chain[2].builder,
        MiddlewareBuilder::ResponseCache {
            kvstore: Some("local".into()),
            max_object_bytes: 256 << 10,
        }
    );
    assert_eq!(
        d.listeners[0].builder,
        ListenerBuilder::AccessLog {
            path: Some(PathBuf::from("/etc/b/logs/access.log"))
        }
    );
    assert_eq!(d.log.request_headers, vec!["user-agent".to_owned()]);
    assert_eq!(
        d.kvstores["local"],
        KvStoreSpec::Memory { max_bytes: 8 << 20 }
    );
    assert_eq!(
        d.kvstores["shared"],
        KvStoreSpec::Redis {
            url: "rediss://r:6380".into()
        }
    );
    assert_eq!(
        config.domains[1].upstream_watcher,
        UpstreamWatcher::Etcd {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            key: "/buckler/fleet/upstreams".into()
        }
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let open_bypass = parse_gated(
        "{ domains: [{ \"domain-name\": \"*\", \"middleware-chain\": [{ id: \"r\", builder: \"rate-limit\" }],\n  middleware: { r: { \"calls-per\": 1, \"per-seconds\": 1, \"bypass-header\": \"X-Internal\" } } }] }",
        Path::new("gw.json5"),
        false,
    )
    .unwrap();
    assert_eq!(
        open_bypass.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
        vec!["gw.json5:2:73: domains[0].middleware.r.bypass-header: without bypass-values, any value of this header skips the limit"]
    );
    // The defaults of what is absent.
    let cache = parse_gated(
        r#"{ domains: [{ "domain-name": "*", "middleware-chain": [{ id: "c", builder: "response-cache" }],
             kvstores: { m: { type: "memory" } } }] }"#,
        Path::new("g"),
        false,
    )
    .unwrap();
    assert_eq!(
        cache.domains[0].middleware_chain[0].builder,
        MiddlewareBuilder::ResponseCache {
            kvstore: None,
            max_object_bytes: 1 << 20
        }
    );
    assert_eq!(
        cache.domains[0].kvstores["m"],
        KvStoreSpec::Memory {
            max_bytes: 64 << 20
        }
    );
}

#[test]
fn new_keys_are_validated_with_positions() {
    let all = ungated_errors(
        "{\n  workers: \"many\",\n  tls: { cert: \"c\", key: \"k\", \"min-version\": \"1.1\" },\n  \"client-idle-timeout\": \"0s\",\n  domains: [{ \"domain-name\": \"*\",\n    \"upstream-protocol\": \"h3\",\n    retry: { attempts: 11, \"budget-percent\": 101 },\n    \"health-check\": { interval: \"1s\" },\n    \"upstream-weighting\": { guard: { action: \"panic\", \"max-error-rate-increase\": 2 } },\n    \"circuit-breaker\": { \"max-failures\": 0 },\n  }],\n}",
    );
    let expect = [
        "gw.json5:2:12: workers: expected a thread count or \"auto\", found \"many\"",
        "gw.json5:3:8: tls.listen: required key is missing",
        "gw.json5:3:46: tls.min-version: unknown value \"1.1\"; valid: 1.2, 1.3",
        "gw.json5:4:26: client-idle-timeout: must be greater than zero",
        "gw.json5:6:26: domains[0].upstream-protocol: unknown value \"h3\"; valid: auto, http1, h2c",
        "gw.json5:7:24: domains[0].retry.attempts: 11 is out of range (0 to 10)",
        "gw.json5:7:46: domains[0].retry.budget-percent: 101 is out of range (0 to 100)",
        "gw.json5:8:21: domains[0].health-check.path: required key is missing",
        "gw.json5:9:46: domains[0].upstream-weighting.guard.action: unknown value \"panic\"; valid: pause, rollback",
        "gw.json5:9:82: domains[0].upstream-weighting.guard.max-error-rate-increase: 2 is out of range (0 to 1)",
        "gw.json5:10:42: domains[0].circuit-breaker.max-failures: 0 is out of range (1 to 4294967295)",
    ];
    assert_eq!(all, expect, "{all:#?}");
    let keys = ungated_errors(
        r#"{ domains: [{ "domain-name": "*", "middleware-chain": [{ id: "a", builder: "api-key-auth" }, { id: "r", builder: "rate-limit" }],
            middleware: { a: { "header-name": "bad header", allowed: ["", "sha256:abc", "env:"] }, r: { "calls-per": 1, "per-seconds": 1, "bypass-values": ["x"] } },
            kvstores: { m: { type: "memory", url: "redis://x" } } }] }"#,
    );
    for wanted in [
        r#"middleware.a.header-name: "bad header" is not a header name"#,
        "middleware.a.allowed[0]: an empty key is not a key",
        r#"middleware.a.allowed[1]: "sha256:abc" is not a key"#,
        r#"middleware.a.allowed[2]: "env:" is not a key"#,
        "middleware.r.bypass-values: only valid with bypass-header",
        "kvstores.m.url: only valid for a redis store",
    ] {
        assert!(
            keys.iter().any(|e| e.contains(wanted)),
            "{wanted}: {keys:#?}"
        );
    }
    let empty = ungated_errors(r#"{ listen: [], domains: [{ "domain-name": "*" }] }"#);
    assert!(
        empty[0].contains("listen: at least one address is required when there is no `tls`"),
        "{empty:#?}"
    );
    let tls_only = parse_gated(
        r#"{ listen: [], tls: { listen: ["127.0.0.1:8443"], cert: "c", key: "k" }, domains: [{ "domain-name": "*" }] }"#,
        Path::new("g"),
        false,
    )
    .unwrap();
    assert!(tls_only.listen.is_empty());
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
    let config = parse_gated(
        r#"{ domains: [{ "domain-name": "*",
            "middleware-chain": [{ id: "Auth", builder: "api-key-auth", sla: "10ms" }, { id: "rl", builder: "rate-limit" }],
            middleware: { auth: { "header-name": "X-Key", allowed: ["k1"] }, rl: { "calls-per": 10, "per-seconds": 1, kvstore: "shared" } },
            kvstores: { shared: { type: "redis", url: "redis://127.0.0.1:6379" } },
            listeners: [{ id: "log", builder: "access-log" }],
            "listener-config": { log: { path: "access.log" } },
        }] }"#,
        Path::new("/etc/b/gw.json5"),
        false,
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
    let bad = ungated_errors(
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
        schema::UPSTREAM_FIELDS,
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

/// The annotated example shows every key (the ones not built yet in comments).
#[test]
fn the_example_names_every_key() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../gateway-config/example.json5"
    );
    let example = std::fs::read_to_string(path).unwrap();
    let mut missing = Vec::new();
    let mut tables: Vec<&[schema::Field]> = vec![schema::ROOT];
    while let Some(fields) = tables.pop() {
        for field in fields {
            if let schema::Ty::Object(inner)
            | schema::Ty::ObjectList(inner)
            | schema::Ty::Map(inner) = field.ty
            {
                tables.push(inner);
            }
            let named = example.contains(&format!("{}:", field.key))
                || example.contains(&format!("\"{}\":", field.key));
            if !named {
                missing.push(field.key);
            }
        }
    }
    assert!(missing.is_empty(), "example.json5 lacks {missing:?}");
    for (pattern, built) in support::KEYS {
        if let (Some((_, value)), false) = (pattern.split_once('='), built) {
            assert!(
                example.contains(&format!("\"{value}\"")),
                "example.json5 lacks {value}"
            );
        }
    }
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
    // The example's `upstreams-file`, so the example starts as it is.
    let upstreams = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../gateway-config/upstreams.json"
    );
    let text = std::fs::read_to_string(upstreams).unwrap();
    parse_upstreams(&text, upstreams, &LambdaDefaults::default()).unwrap();
}

/// Each key that is not built yet, set (mostly to its default value), is refused with exactly
/// one `FILE:LINE:COL: key: not supported yet` at the key (or at the value that is not built).
#[test]
fn the_gate_refuses_every_key_that_is_not_built_yet() {
    // (root line, domain line, refused key path, text the position points at)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("workers: \"auto\",", "", "workers", "workers"),
        ("workers: 2,", "", "workers", "workers"),
        (
            "",
            "\"upstream-weighting\": { \"step-count\": 10, guard: {} },",
            "domains[0].upstream-weighting.guard",
            "guard",
        ),
    ];
    let mut rows_tried = Vec::new();
    for (root, domain, key, at) in cases {
        let text = format!(
            "{{\n  {root}\n  domains: [{{ \"domain-name\": \"*\",\n    {domain}\n  }}],\n}}\n"
        );
        // The row of support::KEYS this case exercises: a key opened there is accepted.
        let mut row = key
            .replace("[0]", "[]")
            .replace(".m.", ".*.")
            .replace(".r.", ".*.");
        if key.ends_with(".builder") || key.ends_with(".type") {
            row = format!("{row}={}", at.trim_matches('"'));
        }
        rows_tried.push(row.clone());
        match support::is_built(&row) {
            None => panic!("no row {row} in support::KEYS"),
            Some(true) => {
                parse(&text, Path::new("gw.json5"))
                    .unwrap_or_else(|e| panic!("{row} is built: {e}"));
                continue;
            }
            Some(false) => {}
        }
        let (line, line_text) = if root.is_empty() {
            (4, format!("    {domain}"))
        } else {
            (2, format!("  {root}"))
        };
        let column = line_text.find(at).expect("the case names its position") + 1;
        assert_eq!(
            errors(&text),
            vec![format!(
                "gw.json5:{line}:{column}: {key}: not supported yet"
            )],
            "{text}"
        );
        // The model itself takes it: only the gate refuses.
        parse_gated(&text, Path::new("gw.json5"), false).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    for (row, built) in support::KEYS {
        assert!(
            *built || rows_tried.iter().any(|tried| tried == row),
            "no case above for the row {row} that is not built"
        );
    }
}

#[test]
fn the_gate_lets_through_what_asks_for_nothing_and_what_is_built() {
    let config = parse(
        r#"{ listen: "127.0.0.1:0", admin: { listen: "127.0.0.1:0" }, "shutdown-grace": "1s",
             "trust-proxies": 1, "trust-x-forwarded-proto": true, "max-request-body": "1mb",
             paths: {}, lambda: { region: "us-east-1", "endpoint-url": null },
             domains: [{ "domain-name": "*", "upstream-weighting": { "step-count": 2, "step-duration": "1s" },
               "drain-timeout": "1s", "request-timeout": "1s", "docs-refresh": "1s", "ignore-extensions": [],
               "upstream-watcher": "static", upstreams: [],
               "middleware-chain": [], middleware: {}, listeners: [], "listener-config": {}, kvstores: {},
               "health-check": null, "upstream-ca": null },
             { "domain-name": "b", "connect-timeout": "1s", "upstream-ca": "ca.pem",
               "upstream-protocol": "h2c" },
               { "domain-name": "f", "upstream-watcher": "file", "upstreams-file": "u.json" }] }"#,
        Path::new("g"),
    );
    assert!(config.is_ok(), "{}", config.unwrap_err());
}

#[test]
fn the_gate_lists_every_refusal_with_the_other_errors() {
    let all = errors(
        "{\n  workers: 2,\n  bogus: 1,\n  domains: [{ \"domain-name\": \"*\", retry: {}, log: {} }],\n}",
    );
    // Rows opened since (the table is the truth) drop out of the expected list.
    let open = |row: &str| support::is_built(row) == Some(true);
    let expected: Vec<&str> = vec![
            (!open("workers")).then_some("gw.json5:2:3: workers: not supported yet"),
            Some("gw.json5:3:3: bogus: unknown key; valid keys here: listen, tls, admin, workers, max-connections, client-header-timeout, client-idle-timeout, http2-max-concurrent-streams, shutdown-grace, trust-proxies, trust-x-forwarded-proto, max-request-body, paths, lambda, docs-limits, domains"),
            (!open("domains[].retry")).then_some("gw.json5:4:35: domains[0].retry: not supported yet"),
            (!open("domains[].log")).then_some("gw.json5:4:46: domains[0].log: not supported yet"),
        ]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all, expected);
}

#[test]
fn duplicate_keys_are_errors_with_their_position() {
    // In an object the validator walks, in a map of ids, deep inside, and case-insensitive
    // middleware ids.
    let all = ungated_errors(
        "{\n  listen: \"127.0.0.1:1\",\n  listen: \"127.0.0.1:2\",\n  domains: [{ \"domain-name\": \"*\",\n    kvstores: { a: { type: \"memory\" }, a: { type: \"memory\" } },\n    paths: 1,\n  }],\n}",
    );
    assert!(
        all.contains(&"gw.json5:3:3: listen: duplicate key".to_owned()),
        "{all:#?}"
    );
    assert!(
        all.contains(&"gw.json5:5:40: domains[0].kvstores.a: duplicate key".to_owned()),
        "{all:#?}"
    );
    let nested = errors(
        r#"{ domains: [{ "domain-name": "*", upstreams: [{ serviceType: "swagger2", serviceType: "swagger2", serviceLocation: "http://a" }] }] }"#,
    );
    assert_eq!(
        nested,
        vec!["gw.json5:1:74: domains[0].upstreams[0].serviceType: duplicate key"]
    );
    let ids = ungated_errors(
        r#"{ domains: [{ "domain-name": "*", "middleware-chain": [{ id: "c", builder: "response-cache" }],
            middleware: { c: {}, C: {} } }] }"#,
    );
    assert!(
        ids.iter()
            .any(|e| e.contains("middleware.c: duplicate middleware id \"c\"")),
        "{ids:#?}"
    );
    // Strict JSON upstream lists (file, etcd, admin body) too.
    let strict = parse_upstreams(
        "[{\"serviceType\": \"swagger2\", \"serviceLocation\": \"http://a\",\n  \"serviceLocation\": \"http://b\"}]",
        "upstreams.json",
        &LambdaDefaults::default(),
    )
    .unwrap_err();
    assert_eq!(
        strict.to_string(),
        "upstreams.json:2:3: [0].serviceLocation: duplicate key"
    );
}
