//! What the binary's tests share: a config file in a temporary directory, a `buckler run`
//! child with the address it printed, plain HTTP/1.1 requests to it, signals, and polling
//! with a deadline instead of sleeping for a guessed time.

// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `buckler` as built for these tests.
pub fn buckler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_buckler"))
}

/// A config file in a fresh temporary directory, removed with the directory when dropped.
pub struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    /// The directory holding the file (for files the config names beside it).
    pub fn dir(&self) -> &Path {
        self.path
            .parent()
            .expect("a temporary config sits in its own directory")
    }

    /// Replaces the file's text (what a reload then reads).
    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }
}

impl std::ops::Deref for TempConfig {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempConfig {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl AsRef<Path> for TempConfig {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.dir());
    }
}

/// A fresh temporary `buckler.json5` holding `text`; `name` keeps tests' directories apart.
pub fn temp_config(name: &str, text: &str) -> TempConfig {
    let dir = std::env::temp_dir().join(format!("buckler-cli-{}-{}", std::process::id(), name));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("buckler.json5");
    std::fs::write(&path, text).unwrap();
    TempConfig { path }
}

/// A running `buckler run` and the address it said it listens on. Dropping it kills the
/// process; [`Running::stop`] ends it the graceful way and checks its exit status.
pub struct Running {
    pub child: Child,
    pub addr: String,
}

impl Running {
    /// Runs `command` (a `buckler()` or a wrapper that execs it, such as `taskset`) with
    /// `run <args> --config <config>` and reads the first line it prints. Panics with that
    /// line and the exit status if it is not `buckler listening on ADDR`.
    pub fn start(mut command: Command, args: &[&str], config: &Path) -> Running {
        let mut child = command
            .arg("run")
            .args(args)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("buckler listening on") {
            let status = child.wait().unwrap();
            panic!("buckler did not start ({status:?}): {line:?}");
        }
        let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
        Running { child, addr }
    }

    /// `GET path` on the listener, the whole raw answer (empty if nothing answered).
    pub fn get(&self, path: &str) -> String {
        raw_get(&self.addr, path)
    }

    /// Sends a signal (`"HUP"`, `"TERM"`) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Polls `path` until its answer contains `wanted`, for at most ten seconds.
    pub fn wait_for(&self, path: &str, wanted: &str, what: &str) {
        eventually(what, || self.get(path).contains(wanted));
    }

    /// SIGTERM, then checks the process exits 0.
    pub fn stop(self) {
        self.signal("TERM");
        self.expect_clean_exit();
    }

    /// Waits for the process to end (after a signal sent earlier) and checks it exits 0.
    pub fn expect_clean_exit(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Already reaped by `stop`: both calls then fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after ten seconds.
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET path` over a new connection with `Connection: close`; the raw answer, or an empty
/// string when nothing listens or answers within ten seconds.
pub fn raw_get(addr: &str, path: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}
