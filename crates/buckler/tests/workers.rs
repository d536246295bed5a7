//! `workers`: the runtime the binary builds has as many request-serving threads as asked
//! for, as the runtime itself counts them (`buckler_runtime_workers` on `/metrics`).

mod support;
use support::{buckler, temp_config, Running};

/// Starts `buckler run` on `workers_line`'s config and returns the runtime's worker count.
fn runtime_workers(name: &str, workers_line: &str) -> String {
    let path = temp_config(
        &format!("workers-{name}"),
        &format!(
            r#"{{ listen: "127.0.0.1:0", {workers_line} domains: [{{ "domain-name": "*", upstreams: [] }}] }}"#
        ),
    );
    let reply = Running::start(buckler(), &[], &path).get("/metrics");
    reply
        .lines()
        .find_map(|l| l.strip_prefix("buckler_runtime_workers "))
        .unwrap_or_else(|| panic!("no worker gauge in {reply}"))
        .to_owned()
}

#[test]
fn two_workers_run_two_request_threads() {
    assert_eq!(runtime_workers("two", "workers: 2,"), "2");
}

#[test]
fn one_worker_runs_the_single_threaded_scheduler() {
    assert_eq!(runtime_workers("one", "workers: 1,"), "1");
}

#[test]
fn auto_runs_one_thread_per_cpu_allowed() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(runtime_workers("auto", ""), cpus.to_string());
}

/// `--runtime per-worker`: one single-threaded runtime per worker, each with its own
/// `SO_REUSEPORT` copy of the listener; every connection is served, whichever copy the
/// kernel gives it to, and the second worker is a thread of its own.
#[test]
fn per_worker_runtimes_share_the_port_and_serve_every_connection() {
    let path = temp_config(
        "workers-reuse",
        r#"{ listen: "127.0.0.1:0", workers: 2, domains: [{ "domain-name": "*", upstreams: [] }] }"#,
    );
    let gateway = Running::start(buckler(), &["--runtime", "per-worker"], &path);
    for _ in 0..40 {
        let reply = gateway.get("/healthcheck");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", gateway.child.id()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    assert!(
        threads.iter().any(|name| name == "buckler-wrk-1"),
        "no second worker thread: {threads:?}"
    );
}
