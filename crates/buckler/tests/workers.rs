//! `workers`: the runtime the binary builds has as many request-serving threads as asked
//! for, as the runtime itself counts them (`buckler_runtime_workers` on `/metrics`).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Starts `buckler run` on `workers_line`'s config and returns the runtime's worker count.
fn runtime_workers(name: &str, workers_line: &str) -> String {
    let dir = std::env::temp_dir().join(format!("buckler-workers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("buckler.json5");
    std::fs::write(
        &path,
        format!(
            r#"{{ listen: "127.0.0.1:0", {workers_line} domains: [{{ "domain-name": "*", upstreams: [] }}] }}"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_buckler"))
        .args(["run", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
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
    let dir = std::env::temp_dir().join(format!("buckler-workers-{}-reuse", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("buckler.json5");
    std::fs::write(
        &path,
        r#"{ listen: "127.0.0.1:0", workers: 2, domains: [{ "domain-name": "*", upstreams: [] }] }"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_buckler"))
        .args(["run", "--runtime", "per-worker", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
    for _ in 0..40 {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        threads.iter().any(|name| name == "buckler-wrk-1"),
        "no second worker thread: {threads:?}"
    );
}
