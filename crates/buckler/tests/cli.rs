//! The `buckler` binary: `check` output and exit codes, startup failures, and graceful
//! shutdown on SIGTERM with a request in flight.

use std::process::Command;

use buckler_testkit::{FakeUpstream, Swagger2Doc};

mod support;
use support::{buckler, eventually, raw_get, temp_config, Running};

#[test]
fn check_accepts_a_valid_config() {
    let path = temp_config(
        "valid",
        r#"{ listen: "127.0.0.1:0", domains: [{ "domain-name": "*", upstreams: [
            { serviceType: "swagger2", serviceLocation: "http://127.0.0.1:9", weight: 2 } ] }] }"#,
    );
    let out = buckler()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn check_warns_about_a_bypass_header_without_values() {
    let path = temp_config(
        "bypass",
        r#"{ listen: "127.0.0.1:0", domains: [{ "domain-name": "*", upstreams: [],
            "middleware-chain": [{ id: "limit", builder: "rate-limit" }],
            middleware: { limit: { "calls-per": 1, "per-seconds": 1, "bypass-header": "X-Internal" } } }] }"#,
    );
    let out = buckler()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("domains[0].middleware.limit.bypass-header: without bypass-values"),
        "{stderr}"
    );
    assert_eq!(stdout.trim(), "ok");
}

#[test]
fn check_lists_every_problem_with_its_position() {
    let text = "{\n  listen: \"127.0.0.1:0\",\n  bogus: 1,\n  domains: [{\n    \"domain-name\": \"*\",\n    \"request-timeout\": 5,\n    upstreams: [{ serviceType: \"swagger9\", serviceLocation: \"http://h/\", weight: -1 }],\n  }],\n}\n";
    let path = temp_config("invalid", text);
    let out = buckler()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let file = path.display().to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 5, "every problem listed:\n{stdout}");
    for line in &lines {
        assert!(
            line.starts_with(&format!("{file}:")),
            "FILE:LINE:COL prefix: {line}"
        );
    }
    assert!(
        stdout.contains(&format!("{file}:3:3:")) && stdout.contains("bogus"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{file}:6:24:")) && stdout.contains("request-timeout"),
        "{stdout}"
    );
    assert!(
        stdout.contains("serviceType") && stdout.contains("swagger9"),
        "{stdout}"
    );
    assert!(stdout.contains("serviceLocation"), "{stdout}");
    assert!(stdout.contains("weight"), "{stdout}");
}

#[test]
fn run_fails_fast_with_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let path = temp_config(
        "taken",
        &format!(
            r#"{{ listen: "{}", domains: [{{ "domain-name": "*", upstreams: [] }}] }}"#,
            taken.local_addr().unwrap()
        ),
    );
    let out = buckler()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");

    let out = buckler()
        .args(["--config", "/nonexistent/buckler.json5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    sigterm_lets_in_flight_requests_finish_under(buckler()).await;
}

/// Pinned to one CPU, as in production and the load comparison, Buckler runs Tokio's
/// current-thread scheduler, where small sends wait in the socket's buffer for the end of the
/// scheduler's pass: the last answer must still go out before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_on_one_cpu() {
    let mut pinned = Command::new("taskset");
    // `taskset` execs Buckler in its own process, so the pid signalled below is Buckler's.
    pinned.args(["-c", "0", env!("CARGO_BIN_EXE_buckler")]);
    sigterm_lets_in_flight_requests_finish_under(pinned).await;
}

async fn sigterm_lets_in_flight_requests_finish_under(buckler: Command) {
    let upstream = FakeUpstream::builder("slow")
        .doc(
            Swagger2Doc::new("slow", "1")
                .op("get", "/slow/{ms}")
                .to_json(),
        )
        .start()
        .await;
    let path = temp_config(
        "graceful",
        &format!(
            r#"{{ listen: "127.0.0.1:0", "shutdown-grace": "10s", domains: [{{ "domain-name": "*",
                 "request-timeout": "10s",
                 upstreams: [{{ serviceType: "swagger2", serviceLocation: "{}" }}] }}] }}"#,
            upstream.url()
        ),
    );
    let gateway = Running::start(buckler, &[], &path);
    let addr = gateway.addr.clone();
    gateway.wait_for("/healthcheck", "HTTP/1.1 200", "ready");

    let slow_addr = addr.clone();
    let seen = upstream.request_count();
    let slow = std::thread::spawn(move || raw_get(&slow_addr, "/slow/1500"));
    // SIGTERM only once the request is in flight: it has reached the upstream.
    eventually("the slow request left", || upstream.request_count() != seen);
    gateway.signal("TERM");

    let reply = slow.join().unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "in-flight request finished: {reply}"
    );
    gateway.expect_clean_exit();
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_file_changes_nothing() {
    let first = FakeUpstream::builder("first")
        .doc(Swagger2Doc::new("first", "1").op("get", "/who").to_json())
        .start()
        .await;
    let second = FakeUpstream::builder("second")
        .doc(Swagger2Doc::new("second", "1").op("get", "/who").to_json())
        .start()
        .await;
    let config = |url: &str| {
        format!(
            r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*",
                 upstreams: [{{ serviceType: "swagger2", serviceLocation: "{url}" }}] }}] }}"#
        )
    };
    let path = temp_config("sighup", &config(&first.url()));
    let gateway = Running::start(buckler(), &[], &path);
    gateway.wait_for("/who", "\"upstream\":\"first\"", "first served");

    path.write("{ domains: [ broken");
    gateway.signal("HUP");
    // The rejection is counted once the reload has run; until then nothing could change.
    gateway.wait_for(
        "/metrics",
        "buckler_config_reloads_total{result=\"error\"} 1",
        "the broken reload counted",
    );
    assert!(
        gateway.get("/who").contains("\"upstream\":\"first\""),
        "a broken file changes nothing"
    );

    path.write(&config(&second.url()));
    gateway.signal("HUP");
    gateway.wait_for("/who", "\"upstream\":\"second\"", "SIGHUP reload applied");
    let metrics = gateway.get("/metrics");
    assert!(
        metrics.contains("buckler_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("buckler_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    gateway.stop();
}

/// `check` and `run` refuse a key that is not built yet with the same line
/// (`FILE:LINE:COL: key: not supported yet`), `check` with exit 1, and `run` before binding.
#[test]
fn check_and_run_refuse_a_key_that_is_not_built_yet() {
    // The ramp guard (SPEC §14) stands for any key not built yet.
    let text = "{\n  listen: \"127.0.0.1:0\",\n  domains: [{ \"domain-name\": \"*\",\n    \"upstream-weighting\": { guard: {} },\n  }],\n}\n";
    let path = temp_config("unbuilt-key", text);
    let expected = format!(
        "{}:4:29: domains[0].upstream-weighting.guard: not supported yet",
        path.display()
    );
    let out = buckler()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), expected);
    let out = buckler()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l == expected), "{stderr}");
}

/// `check` used to pass keys (`tls`, etcd domains, built since) that `run` then refused: now
/// both refuse a key not built yet the same way, every refusal listed.
#[test]
fn check_and_run_agree_on_a_key_not_built() {
    let text = "{\n  listen: \"127.0.0.1:0\",\n  domains: [{ \"domain-name\": \"*\",\n    \"upstream-weighting\": { guard: {} } }],\n}\n";
    let path = temp_config("unbuilt-key-agree", text);
    let file = path.display().to_string();
    let expected = format!("{file}:4:29: domains[0].upstream-weighting.guard: not supported yet");
    let out = buckler()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), expected);
    let out = buckler()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&expected),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_refuses_a_duplicate_key_with_its_position() {
    let text = "{\n  listen: \"127.0.0.1:0\",\n  domains: [{ \"domain-name\": \"*\",\n    \"request-timeout\": \"1s\", \"request-timeout\": \"2s\" }],\n}\n";
    let path = temp_config("duplicate-key", text);
    let out = buckler()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        format!(
            "{}:4:30: domains[0].request-timeout: duplicate key",
            path.display()
        )
    );
}

/// The annotated example passes `check` as shipped, and starts (its addresses moved to free
/// ports, its admin token set).
#[test]
fn the_example_config_passes_check_and_starts() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../gateway-config");
    let out = buckler()
        .args(["check", "--config"])
        .arg(format!("{shipped}/example.json5"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "exit {:?}",
        out.status
    );
    let example = std::fs::read_to_string(format!("{shipped}/example.json5")).unwrap();
    let moved = example
        .replace(
            r#"listen: ["127.0.0.1:8080", "[::1]:8080"],"#,
            r#"listen: ["127.0.0.1:0"],"#,
        )
        .replace(
            r#"admin: { listen: "127.0.0.1:9901","#,
            r#"admin: { listen: "127.0.0.1:0","#,
        );
    assert_eq!(
        moved.matches("127.0.0.1:0").count(),
        2,
        "the example's listen and admin lines moved"
    );
    let path = temp_config("example", &moved);
    std::fs::copy(
        format!("{shipped}/upstreams.json"),
        path.dir().join("upstreams.json"),
    )
    .unwrap();
    let mut command = buckler();
    command.env("BUCKLER_ADMIN_TOKEN", "example-token");
    Running::start(command, &[], &path).stop();
}

/// A reload refuses what `check` refuses: the old table stays and the error is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refuses_a_key_that_is_not_built_yet() {
    let upstream = FakeUpstream::builder("kept")
        .doc(Swagger2Doc::new("kept", "1").op("get", "/who").to_json())
        .start()
        .await;
    let config = |extra: &str| {
        format!(
            r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*", {extra}
                 upstreams: [{{ serviceType: "swagger2", serviceLocation: "{}" }}] }}] }}"#,
            upstream.url()
        )
    };
    let path = temp_config("reload-unbuilt", &config(""));
    let gateway = Running::start(buckler(), &[], &path);
    gateway.wait_for("/who", "HTTP/1.1 200", "served");
    path.write(&config(r#""upstream-weighting": { guard: {} },"#));
    gateway.signal("HUP");
    gateway.wait_for(
        "/metrics",
        "buckler_config_reloads_total{result=\"error\"} 1",
        "the reload refused",
    );
    assert!(
        gateway.get("/who").starts_with("HTTP/1.1 200"),
        "the old table stays: no key check appeared"
    );
    gateway.stop();
}

/// `check` reads the files the config names as `run` would: a missing `upstream-ca` bundle
/// or certificate pair fails `check` too, naming the key and the file.
#[test]
fn check_reads_the_certificate_files_the_config_names() {
    let path = temp_config(
        "missing-files",
        r#"{ listen: "127.0.0.1:0",
             tls: { listen: "127.0.0.1:0", cert: "missing-cert.pem", key: "missing-key.pem" },
             domains: [{ "domain-name": "*", "upstream-ca": "missing-ca.pem", upstreams: [] }] }"#,
    );
    let out = buckler()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("tls: ") && stdout.contains("missing-cert.pem"),
        "{stdout}"
    );
    assert!(
        stdout.contains("upstream-ca: ") && stdout.contains("missing-ca.pem"),
        "{stdout}"
    );
    let run = buckler()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!run.status.success(), "run refuses what check refuses");
}
