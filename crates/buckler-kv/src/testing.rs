//! Test support (feature `testing`): a real `redis-server` on a free loopback port, in its own
//! temporary directory, stopped when dropped. Used by this crate's tests and by any crate that
//! tests against Redis (add `buckler-kv = { workspace = true, features = ["testing"] }` to its
//! dev-dependencies).
//!
//! When the binary is missing, [`RedisServer::start`] panics with the Debian package to
//! install, so the test fails and says why.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING`.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` process for one test.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Serves TLS only (`rediss://`) with the certificate files in `dir`.
    tls: bool,
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER") {
        return path.into();
    }
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let path = PathBuf::from(dir).join("redis-server");
        if path.exists() {
            return path;
        }
    }
    PathBuf::from("redis-server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn pings(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl RedisServer {
    /// Starts `redis-server` on a free port of 127.0.0.1 (no persistence, in a fresh temp
    /// directory) and waits until it answers `PING`.
    ///
    /// # Panics
    /// When `redis-server` is not installed (naming the package to install) or does not come
    /// up within 10 s.
    pub fn start() -> RedisServer {
        Self::launch(None)
    }

    /// Like [`start`](Self::start), serving only TLS with this certificate chain and key
    /// (PEM); no client certificates are asked for. Its URL is `rediss://`.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> RedisServer {
        Self::launch(Some((cert_pem, key_pem)))
    }

    fn launch(tls: Option<(&str, &str)>) -> RedisServer {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "buckler-kv-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the redis temp dir");
        if let Some((cert, key)) = tls {
            std::fs::write(dir.join("cert.pem"), cert).expect("write cert.pem");
            std::fs::write(dir.join("key.pem"), key).expect("write key.pem");
        }
        let mut server = RedisServer {
            port: 0,
            dir,
            child: None,
            tls: tls.is_some(),
        };
        // A port found free can be taken before redis binds it: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("redis-server did not start on a free loopback port (5 tries)");
    }

    /// Starts the process on `self.port`; true once it answers `PING`.
    fn spawn(&mut self) -> bool {
        let port = self.port.to_string();
        let mut command = Command::new(binary());
        if self.tls {
            command
                .args(["--port", "0", "--tls-port", &port])
                .arg("--tls-cert-file")
                .arg(self.dir.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(self.dir.join("key.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            command.args(["--port", &port]);
        }
        let spawned = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: install the Debian package `redis-server` \
                 (apt-get install -y redis-server)"
            ),
            Err(e) => panic!("could not run redis-server: {e}"),
        };
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            let ready = if self.tls {
                // A TLS port cannot be pinged in plain text: listening is enough.
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                pings(self.port)
            };
            if ready {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                // Exited: most likely the port was taken.
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not answer PING within {READY_WITHIN:?}");
    }

    /// The port it listens on (kept across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://127.0.0.1:PORT` for a TLS server (its
    /// certificate must name the IP address 127.0.0.1).
    pub fn url(&self) -> String {
        if self.tls {
            format!("rediss://127.0.0.1:{}", self.port)
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (with no data: persistence is off).
    ///
    /// # Panics
    /// When it does not come back within 10 s.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_WITHIN;
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
