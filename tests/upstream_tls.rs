//! Each domain's upstream pool (SPEC §2 `connect-timeout`, `upstream-ca`, `upstream-protocol`;
//! §9): an `https` upstream verified with the domain's CA (and never served without it), h2 by
//! ALPN, HTTP/1.1 forced, h2c, a connect that never completes cut at `connect-timeout`, and
//! reloads that change the protocol or bring a bad CA bundle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buckler_tests::pki::{Leaf, Pki};
use buckler_tests::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::AbortHandle;

/// How the test upstream speaks.
#[derive(Clone, Copy, PartialEq)]
enum Speaks {
    /// HTTP/1.1, and HTTP/2 (h2c by prior knowledge, or ALPN `h2` over TLS).
    Both,
    /// HTTP/2 only: an HTTP/1.1 request gets nothing.
    H2Only,
}

/// An upstream serving a Swagger 2.0 doc with `GET /proto`, recording the HTTP version each
/// `/proto` request came in.
struct ProtoUpstream {
    addr: SocketAddr,
    versions: Arc<Mutex<Vec<Version>>>,
    task: AbortHandle,
}

impl Drop for ProtoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProtoUpstream {
    async fn start(tls: Option<&Leaf>, speaks: Speaks) -> ProtoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let versions = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tls.map(|leaf| tokio_rustls::TlsAcceptor::from(server_config(leaf)));
        let seen = versions.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    match acceptor {
                        // A handshake the gateway refuses simply ends here.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(TokioIo::new(stream), speaks, seen).await;
                            }
                        }
                        None => serve(TokioIo::new(tcp), speaks, seen).await,
                    }
                });
            }
        })
        .abort_handle();
        ProtoUpstream {
            addr,
            versions,
            task,
        }
    }

    fn versions(&self) -> Vec<Version> {
        self.versions.lock().unwrap().clone()
    }
}

async fn serve<IO>(io: TokioIo<IO>, speaks: Speaks, seen: Arc<Mutex<Vec<Version>>>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let body = if request.uri().path() == "/spec" {
                Swagger2Doc::new("proto", "1").op("get", "/proto").to_json()
            } else {
                seen.lock().unwrap().push(request.version());
                format!("{{\"version\": \"{:?}\"}}", request.version())
            };
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
        }
    });
    match speaks {
        Speaks::Both => {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await;
        }
        Speaks::H2Only => {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await;
        }
    }
}

/// A server config presenting `leaf`, offering h2 and http/1.1 by ALPN.
fn server_config(leaf: &Leaf) -> Arc<rustls::ServerConfig> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Writes the CA certificate that signed `leaf` (the last one of its chain) to `DIR/ca.pem`.
fn write_ca(dir: &Path, leaf: &Leaf) -> PathBuf {
    let marker = "-----BEGIN CERTIFICATE-----";
    let last = leaf.cert_pem.rfind(marker).expect("a chain");
    let path = dir.join("ca.pem");
    std::fs::write(&path, &leaf.cert_pem[last..]).unwrap();
    path
}

/// A one-domain config routing to `location`, written to `DIR/gateway.json5`.
fn write_config(dir: &Path, location: &str, domain_extra: &str) -> PathBuf {
    let path = dir.join("gateway.json5");
    std::fs::write(&path, config_text(&[(location, 1)], domain_extra)).unwrap();
    path
}

/// The first upstream's `docsError` on `/healthcheck`, once there is one.
async fn docs_error(gw: &TestGateway) -> String {
    let error = || async {
        gw.get("/healthcheck").await.json()["domains"][0]["upstreams"][0]["docsError"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eventually!(error().await.is_some(), "no docsError");
    error().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_signed_by_upstream_ca_is_verified_and_spoken_to_in_h2() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["127.0.0.1"]);
    let upstream = ProtoUpstream::start(Some(&leaf), Speaks::Both).await;
    let dir = temp_dir("upstream-ca");
    let ca = write_ca(&dir, &leaf);
    let location = format!("https://{}", upstream.addr);
    let config = write_config(
        &dir,
        &location,
        &format!("\"upstream-ca\": {:?},", ca.display().to_string()),
    );
    let gw = TestGateway::start_file(&config).await;
    gw.wait_ready().await;
    let reply = gw.get("/proto").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(upstream.versions(), vec![Version::HTTP_2]);

    // A reload whose CA bundle is not PEM is refused, naming the key and the file; the
    // configuration in force keeps serving.
    let bad = dir.join("bad-ca.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    write_config(
        &dir,
        &location,
        &format!("\"upstream-ca\": {:?},", bad.display().to_string()),
    );
    let error = gw
        .gateway
        .control()
        .reload()
        .await
        .expect_err("a bad CA bundle refuses the reload")
        .to_string();
    assert!(error.contains("upstream-ca"), "{error}");
    assert!(error.contains("bad-ca.pem"), "{error}");
    assert_eq!(gw.get("/proto").await.status, StatusCode::OK);

    // A missing bundle, likewise.
    write_config(&dir, &location, "\"upstream-ca\": \"/nonexistent/ca.pem\",");
    let error = gw.gateway.control().reload().await.unwrap_err().to_string();
    assert!(
        error.contains("upstream-ca") && error.contains("/nonexistent/ca.pem"),
        "{error}"
    );
    assert_eq!(gw.get("/proto").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_whose_certificate_does_not_verify_never_serves() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["127.0.0.1"]);
    let upstream = ProtoUpstream::start(Some(&leaf), Speaks::Both).await;
    let gw = TestGateway::start(&config_text(
        &[(&format!("https://{}", upstream.addr), 1)],
        "",
    ))
    .await;
    let error = docs_error(&gw).await;
    assert!(error.contains("certificate"), "{error}");
    assert!(
        error.contains("UnknownIssuer") || error.contains("unknown issuer"),
        "{error}"
    );
    assert_ne!(gw.get("/proto").await.status, StatusCode::OK);
    assert_eq!(
        gw.get("/healthcheck").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        upstream.versions().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_protocol_http1_forces_http1_on_an_h2_capable_https_upstream() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["127.0.0.1"]);
    let upstream = ProtoUpstream::start(Some(&leaf), Speaks::Both).await;
    let dir = temp_dir("upstream-http1");
    let ca = write_ca(&dir, &leaf);
    let gw = TestGateway::start_ready(&config_text(
        &[(&format!("https://{}", upstream.addr), 1)],
        &format!(
            "\"upstream-ca\": {:?}, \"upstream-protocol\": \"http1\",",
            ca.display().to_string()
        ),
    ))
    .await;
    for _ in 0..2 {
        assert_eq!(gw.get("/proto").await.status, StatusCode::OK);
    }
    assert_eq!(upstream.versions(), vec![Version::HTTP_11; 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_protocol_h2c_reaches_an_h2c_only_upstream() {
    let upstream = ProtoUpstream::start(None, Speaks::H2Only).await;
    let location = format!("http://{}", upstream.addr);
    let gw = TestGateway::start_ready(&config_text(
        &[(&location, 1)],
        "\"upstream-protocol\": \"h2c\",",
    ))
    .await;
    let reply = gw.get("/proto").await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(upstream.versions(), vec![Version::HTTP_2]);

    // Without it, the same upstream is spoken to in HTTP/1.1, which it does not understand.
    let gw = TestGateway::start(&config_text(&[(&location, 1)], "")).await;
    let error = docs_error(&gw).await;
    assert_ne!(gw.get("/proto").await.status, StatusCode::OK, "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changing_upstream_protocol_takes_effect() {
    let upstream = ProtoUpstream::start(None, Speaks::Both).await;
    let location = format!("http://{}", upstream.addr);
    let dir = temp_dir("upstream-protocol-reload");
    let config = write_config(&dir, &location, "\"upstream-protocol\": \"http1\",");
    let gw = TestGateway::start_file(&config).await;
    gw.wait_ready().await;
    assert_eq!(gw.get("/proto").await.status, StatusCode::OK);
    write_config(&dir, &location, "\"upstream-protocol\": \"h2c\",");
    gw.gateway.control().reload().await.expect("reload");
    assert_eq!(gw.get("/proto").await.status, StatusCode::OK);
    assert_eq!(upstream.versions(), vec![Version::HTTP_11, Version::HTTP_2]);
}

/// A TCP relay to `target` that can be shut: then it stops accepting, closes what it relayed,
/// and its full accept queue (backlog 1, filled by the test) leaves new connects hanging.
struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    shut: Arc<tokio::sync::Notify>,
    relayed: Arc<Mutex<Vec<AbortHandle>>>,
    task: AbortHandle,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        for relayed in self.relayed.lock().unwrap().drain(..) {
            relayed.abort();
        }
    }
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let shut = Arc::new(tokio::sync::Notify::new());
        let relayed: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (still_open, shut_now, tasks) = (open.clone(), shut.clone(), relayed.clone());
        let task = tokio::spawn(async move {
            while still_open.load(Ordering::Acquire) {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        let relay = tokio::spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                        tasks.lock().unwrap().push(relay.abort_handle());
                    }
                    () = shut_now.notified() => {}
                }
            }
            // Listening, never accepting again.
            let _listening = listener;
            std::future::pending::<()>().await;
        })
        .abort_handle();
        Relay {
            addr,
            open,
            shut,
            relayed,
            task,
        }
    }

    /// Stops accepting, closes every relayed connection, and fills the accept queue; returns
    /// the connections filling it (keep them open).
    async fn black_hole(&self) -> Vec<TcpStream> {
        self.open.store(false, Ordering::Release);
        self.shut.notify_one();
        for relayed in self.relayed.lock().unwrap().drain(..) {
            relayed.abort();
        }
        let mut fillers = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(self.addr))
                .await
            {
                Ok(Ok(stream)) => fillers.push(stream),
                Ok(Err(error)) => panic!("connect to the full listener failed at once: {error}"),
                // Full: a connect now hangs.
                Err(_) => return fillers,
            }
            assert!(fillers.len() < 64, "the accept queue never filled");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_bounds_a_connect_that_never_completes() {
    let upstream = ProtoUpstream::start(None, Speaks::Both).await;
    let relay = Relay::start(upstream.addr).await;
    let gw = TestGateway::start_ready(&config_text(
        &[(&format!("http://{}", relay.addr), 1)],
        "\"connect-timeout\": \"300ms\", \"request-timeout\": \"10s\", retry: { attempts: 0 },",
    ))
    .await;
    assert_eq!(gw.get("/proto").await.status, StatusCode::OK);
    let _fillers = relay.black_hole().await;
    // The pooled connection the relay closed leaves the pool once its close arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let reply = gw.get("/proto").await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{reply:?}");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "answered after {elapsed:?}, connect-timeout 300ms, request-timeout 10s"
    );
}
