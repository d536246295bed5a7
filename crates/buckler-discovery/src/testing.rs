//! Test support (feature `testing`): a real etcd on free loopback ports in a temp dir, that
//! tests can kill and restart on the same ports and data. The gateway's fleet tests use it too.
//!
//! These helpers panic on failure: they are for tests only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The etcd binary: `$BUCKLER_ETCD`, else `etcd` on the `PATH`.
fn etcd_binary() -> String {
    std::env::var("BUCKLER_ETCD").unwrap_or_else(|_| "etcd".to_owned())
}

/// A message naming the package, for a missing binary.
pub const MISSING_ETCD: &str = "the `etcd` binary was not found: install Debian's etcd-server \
(`apt-get install -y etcd-server`), or point BUCKLER_ETCD at an etcd 3.4+ binary";

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// One etcd member, listening on 127.0.0.1 only. Stopped (killed) and its data removed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Picks ports and a data dir, and starts nothing yet (for "started while etcd is down").
    pub fn prepared() -> EtcdServer {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "buckler-etcd-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("create the etcd temp dir");
        EtcdServer {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        }
    }

    /// A running etcd, ready to answer.
    pub fn started() -> EtcdServer {
        let mut server = EtcdServer::prepared();
        // Another process may take a port between our probe and etcd's bind: try fresh ones.
        for attempt in 0..3 {
            match server.try_start() {
                Ok(()) => return server,
                Err(error) if attempt < 2 && error.contains("address already in use") => {
                    server.client_port = free_port();
                    server.peer_port = free_port();
                }
                Err(error) => panic!("{error}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// `http://127.0.0.1:PORT`: the client URL (fixed for this server's life).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts etcd on this server's ports and data dir (again, after [`EtcdServer::kill`]) and
    /// waits until it answers `/health`.
    pub fn start(&mut self) {
        if let Err(error) = self.try_start() {
            panic!("{error}");
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "etcd is already running");
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log_path = self.dir.join("etcd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let spawned = Command::new(etcd_binary())
            .arg("--name")
            .arg("default")
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("default={peer}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(MISSING_ETCD.to_owned())
            }
            Err(error) => return Err(format!("cannot start etcd: {error}")),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "etcd exited ({status}) before answering:\n{}",
                    tail.join("\n")
                ));
            }
            if healthy(self.client_port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "etcd did not answer /health within 30 s; see {}",
                    log_path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True while this server's process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills etcd at once (SIGKILL, like a crash); the ports and data dir stay for a restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// True when etcd on `port` says it is healthy (it has a leader).
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.") && answer.contains("\"health\":\"true\"")
}
