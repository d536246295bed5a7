//! HTTPS listeners: ALPN h2 and http/1.1 on one port, certificates by SNI, `min-version`,
//! certificate reloads (config reload and file change) that keep open connections, a broken
//! pair refused while the old one serves on, and the expiry metric.

use std::path::Path;

use buckler_tests::pki::{self, HttpConn, Leaf, Pki};
use buckler_tests::*;
use http::{StatusCode, Version};

async fn upstream() -> FakeUpstream {
    FakeUpstream::builder("one")
        .doc(
            Swagger2Doc::new("one", "1")
                .op("get", "/echo/{word}")
                .to_json(),
        )
        .start()
        .await
}

/// Writes a config with a default pair (`default.pem`/`.key`) and `api.test`'s pair
/// (`api.pem`/`.key`), both domains routed to `upstream`.
fn write_config(
    dir: &Path,
    upstream: &FakeUpstream,
    tls_extra: &str,
    top_extra: &str,
) -> std::path::PathBuf {
    let upstreams = upstreams_json(&[(&upstream.url(), 1)]);
    let text = format!(
        r#"{{
  listen: "127.0.0.1:0",
  tls: {{ listen: "127.0.0.1:0", cert: "default.pem", key: "default.key", {tls_extra} }},
  "shutdown-grace": "1s",
  {top_extra}
  domains: [
    {{ "domain-name": "api.test", tls: {{ cert: "api.pem", key: "api.key" }}, upstreams: {upstreams} }},
    {{ "domain-name": "*", upstreams: {upstreams} }},
  ],
}}"#
    );
    let path = dir.join("gateway.json5");
    std::fs::write(&path, text).expect("write config");
    path
}

struct Setup {
    pki: Pki,
    dir: TempDir,
    default: Leaf,
    api: Leaf,
    _upstream: FakeUpstream,
    gw: TestGateway,
}

impl Setup {
    async fn start(tag: &str, tls_extra: &str, top_extra: &str) -> Setup {
        let pki = Pki::new();
        let dir = temp_dir(tag);
        let default = pki.leaf(&["default.test", "127.0.0.1"]);
        let api = pki.leaf(&["api.test"]);
        default.write(&dir, "default");
        api.write(&dir, "api");
        let upstream = upstream().await;
        let config = write_config(&dir, &upstream, tls_extra, top_extra);
        let gw = TestGateway::start_file(&config).await;
        gw.wait_ready().await;
        Setup {
            pki,
            dir,
            default,
            api,
            _upstream: upstream,
            gw,
        }
    }

    fn tls_addr(&self) -> std::net::SocketAddr {
        self.gw.gateway.tls_addrs()[0]
    }

    /// The certificate a fresh handshake with `sni` gets.
    async fn served(&self, sni: &str) -> rustls::pki_types::CertificateDer<'static> {
        let stream = pki::connect(self.tls_addr(), self.pki.client(&[], &[]), sni)
            .await
            .expect("handshake");
        pki::served_certificate(&stream)
    }

    /// A fresh HTTPS connection with SNI `sni`, speaking what ALPN agreed.
    async fn https(&self, sni: &str, alpn: &[&[u8]]) -> (HttpConn, Option<Vec<u8>>) {
        let stream = pki::connect(self.tls_addr(), self.pki.client(alpn, &[]), sni)
            .await
            .expect("handshake");
        let agreed = pki::alpn(&stream);
        let h2 = agreed.as_deref() == Some(b"h2");
        (HttpConn::new(stream, h2).await, agreed)
    }
}

#[tokio::test]
async fn one_port_serves_http2_and_http1_by_alpn_and_upstreams_see_https() {
    let setup = Setup::start("tls-alpn", "", "").await;
    for (alpn, expect_alpn, expect_version) in [
        (
            &[&b"h2"[..], b"http/1.1"][..],
            Some(&b"h2"[..]),
            Version::HTTP_2,
        ),
        (
            &[&b"http/1.1"[..]][..],
            Some(&b"http/1.1"[..]),
            Version::HTTP_11,
        ),
        (&[][..], None, Version::HTTP_11),
    ] {
        let (mut conn, agreed) = setup.https("api.test", alpn).await;
        assert_eq!(agreed.as_deref(), expect_alpn);
        let (reply, version) = conn.get("api.test", "/echo/hi").await.expect("request");
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(version, expect_version);
        assert_eq!(
            reply.echoed_header("x-forwarded-proto").as_deref(),
            Some("https"),
            "{reply:?}"
        );
    }
    // The plain listener beside it still says http.
    let reply = setup.gw.get("/echo/plain").await;
    assert_eq!(
        reply.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
}

#[tokio::test]
async fn sni_picks_the_domains_certificate_else_the_default() {
    let setup = Setup::start("tls-sni", "", "").await;
    assert_eq!(setup.served("api.test").await, setup.api.der);
    assert_eq!(
        setup.served("API.test").await,
        setup.api.der,
        "case-insensitive"
    );
    assert_eq!(setup.served("default.test").await, setup.default.der);
    // An IP address: rustls sends no SNI, the default pair answers.
    assert_eq!(setup.served("127.0.0.1").await, setup.default.der);
}

#[tokio::test]
async fn min_version_1_3_refuses_a_tls_1_2_client() {
    let setup = Setup::start("tls-min", "\"min-version\": \"1.3\"", "").await;
    let tls12 = setup.pki.client(&[], &[&rustls::version::TLS12]);
    let refused = pki::connect(setup.tls_addr(), tls12, "api.test").await;
    assert!(refused.is_err(), "a TLS 1.2 client got in");
    let tls13 = setup.pki.client(&[], &[&rustls::version::TLS13]);
    let stream = pki::connect(setup.tls_addr(), tls13, "api.test")
        .await
        .expect("TLS 1.3 handshake");
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn a_reload_swaps_certificates_keeps_open_connections_and_refuses_a_broken_pair() {
    let setup = Setup::start("tls-reload", "", "").await;
    let (mut held, _) = setup.https("api.test", &[b"http/1.1"]).await;
    assert_eq!(
        held.get("api.test", "/echo/a").await.unwrap().0.status,
        StatusCode::OK
    );

    // A new pair for api.test, applied by a reload (what SIGHUP does).
    let rotated = setup.pki.leaf(&["api.test"]);
    rotated.write(&setup.dir, "api");
    let outcome = setup.gw.gateway.control().reload().await.expect("reload");
    assert!(outcome.refused.is_empty(), "{outcome}");
    assert_eq!(setup.served("api.test").await, rotated.der);
    assert_eq!(
        held.get("api.test", "/echo/b")
            .await
            .expect("held connection still serves")
            .0
            .status,
        StatusCode::OK
    );

    // A broken pair (the key of another certificate): refused, the rotated pair serves on.
    let other = setup.pki.leaf(&["api.test"]);
    std::fs::write(setup.dir.join("api.key"), &other.key_pem).unwrap();
    let (_, errors_before) = setup.gw.gateway.control().reload_counts();
    let outcome = setup
        .gw
        .gateway
        .control()
        .reload()
        .await
        .expect("reload applies the rest");
    assert_eq!(outcome.refused.len(), 1, "{outcome}");
    assert!(outcome.refused[0].contains("api.key"), "{outcome}");
    assert_eq!(
        setup.gw.gateway.control().reload_counts().1,
        errors_before + 1
    );
    assert_eq!(setup.served("api.test").await, rotated.der);
    assert_eq!(
        held.get("api.test", "/echo/c").await.unwrap().0.status,
        StatusCode::OK
    );
    assert_eq!(setup.served("default.test").await, setup.default.der);
}

#[tokio::test]
async fn a_certificate_file_change_is_picked_up_without_a_reload() {
    let setup = Setup::start("tls-watch", "", "").await;
    let (mut held, _) = setup.https("default.test", &[b"h2"]).await;
    assert_eq!(
        held.get("x.test", "/echo/a").await.unwrap().0.status,
        StatusCode::OK
    );

    let rotated = setup.pki.leaf(&["default.test"]);
    rotated.write(&setup.dir, "default");
    assert_eventually!(
        setup.served("default.test").await == rotated.der,
        "the rotated default certificate was never served"
    );
    assert_eq!(
        setup.served("api.test").await,
        setup.api.der,
        "api.test's pair untouched"
    );
    assert_eq!(
        held.get("x.test", "/echo/b")
            .await
            .expect("HTTP/2 connection held across the swap")
            .0
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_expiry_of_every_served_certificate_is_exported() {
    let setup = Setup::start("tls-metric", "", "").await;
    let metrics = String::from_utf8_lossy(&setup.gw.get("/metrics").await.body).into_owned();
    for domain in ["*", "api.test"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "buckler_tls_certificate_expiry_timestamp_seconds{{domain=\"{domain}\"}} "
                ))
            })
            .unwrap_or_else(|| panic!("no expiry sample for {domain}:\n{metrics}"));
        let not_after: i64 = line.rsplit(' ').next().unwrap().parse().expect("a number");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(not_after > now, "{line}");
    }
}

#[tokio::test]
async fn a_bad_pair_at_startup_fails_the_start_naming_the_file() {
    let pki = Pki::new();
    let dir = temp_dir("tls-bad-start");
    let good = pki.leaf(&["default.test"]);
    good.write(&dir, "default");
    let api = pki.leaf(&["api.test"]);
    api.write(&dir, "api");
    std::fs::write(dir.join("api.key"), &good.key_pem).unwrap();
    let upstream = upstream().await;
    let config = write_config(&dir, &upstream, "", "");
    let config = buckler_config::load(&config).expect("valid config");
    let error = buckler_gateway::RunningGateway::start(config)
        .await
        .expect_err("a mismatched pair must stop the start")
        .to_string();
    assert!(error.contains("api.key"), "{error}");
}

#[tokio::test]
async fn a_silent_or_slow_handshake_is_closed_after_the_header_timeout() {
    let setup = Setup::start("tls-silent", "", r#""client-header-timeout": "300ms","#).await;
    let mut silent = tokio::net::TcpStream::connect(setup.tls_addr())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    // A client that completes its handshake is served as usual.
    let (mut conn, _) = setup.https("api.test", &[b"h2"]).await;
    assert_eq!(
        conn.get("api.test", "/echo/x").await.unwrap().0.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tls_listen_is_restart_only() {
    let setup = Setup::start("tls-restart", "", "").await;
    let path = setup.dir.join("gateway.json5");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        "tls: { listen: \"127.0.0.1:0\"",
        "tls: { listen: \"127.0.0.2:0\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let outcome = setup.gw.gateway.control().reload().await.expect("reload");
    assert_eq!(outcome.restart_required, vec!["tls.listen"], "{outcome}");
    assert_eq!(
        setup.served("api.test").await,
        setup.api.der,
        "still serving"
    );
}

#[tokio::test]
async fn tls_listeners_are_copied_to_every_worker_runtime() {
    trace_init();
    let pki = Pki::new();
    let dir = temp_dir("tls-workers");
    let default = pki.leaf(&["default.test"]);
    default.write(&dir, "default");
    pki.leaf(&["api.test"]).write(&dir, "api");
    let upstream = upstream().await;
    let config = buckler_config::load(&write_config(&dir, &upstream, "", "")).expect("config");
    // A second, single-threaded runtime, as `--runtime per-worker` runs one per worker.
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("worker runtime");
        handle_tx.send(runtime.handle().clone()).unwrap();
        runtime.block_on(async {
            let _ = stop_rx.await;
        });
    });
    let handle = handle_rx.recv().unwrap();
    let gateway = buckler_gateway::RunningGateway::start_on(config, &[handle])
        .await
        .expect("starts");
    let addr = gateway.tls_addrs()[0];
    assert_eq!(gateway.tls_addrs().len(), 1, "the copies share one address");
    for _ in 0..20 {
        let stream = pki::connect(addr, pki.client(&[], &[]), "default.test")
            .await
            .expect("every copy handshakes");
        assert_eq!(pki::served_certificate(&stream), default.der);
    }
    gateway.shutdown().await;
    let _ = stop_tx.send(());
    worker.join().unwrap();
}
