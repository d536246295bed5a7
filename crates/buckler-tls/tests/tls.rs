//! Real TLS handshakes on loopback, with certificates made at test time by rcgen (aws-lc-rs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use buckler_tls::{
    client_config, crypto_provider, CertName, CertSet, ClientTlsError, FileWatch, FileWatcher,
    HandshakeError, HttpVersion, MinVersion, PairError, PairPaths, SystemRoots, TlsTermination,
    TlsVersion, UpstreamProtocol,
};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- certificates and files

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("buckler-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA and a folder to write PEM files in.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: TempDir,
}

/// A leaf certificate's PEM files' contents and DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Buckler test CA {tag}"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        Pki {
            ca,
            dir: TempDir::new(tag),
        }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        self.sign(params)
    }

    fn leaf_valid(&self, names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params.not_before = date_time_ymd(from.0, from.1, from.2);
        params.not_after = date_time_ymd(to.0, to.1, to.2);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        Leaf {
            // The chain a server sends: its own certificate, then the CA (as an intermediate
            // would be; clients ignore a root they already trust).
            cert_pem: format!("{}{}", cert.pem(), self.ca.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.0.join(file)
    }

    /// Writes `leaf` as `STEM.pem` + `STEM.key`.
    fn write(&self, stem: &str, leaf: &Leaf) -> PairPaths {
        let paths = PairPaths::new(
            self.path(&format!("{stem}.pem")),
            self.path(&format!("{stem}.key")),
        );
        std::fs::write(&paths.key, &leaf.key_pem).expect("write key");
        std::fs::write(&paths.cert, &leaf.cert_pem).expect("write cert");
        paths
    }

    fn write_ca(&self) -> PathBuf {
        let path = self.path("ca.pem");
        std::fs::write(&path, self.ca.pem()).expect("write CA");
        path
    }
}

// ---------------------------------------------------------------- a TLS echo server

/// What the server saw of one handshake.
#[derive(Debug)]
struct ServerSide {
    http_version: HttpVersion,
    server_name: Option<String>,
    tls_version: TlsVersion,
}

/// Serves `termination` on a loopback port: each connection is handshaken, reported, then
/// echoes what it reads until the client closes.
async fn serve(
    termination: Arc<TlsTermination>,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<ServerSide, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (report, reports) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let termination = termination.clone();
            let report = report.clone();
            tokio::spawn(async move {
                match termination.accept(tcp, HANDSHAKE_TIMEOUT).await {
                    Ok(accepted) => {
                        let _ = report.send(Ok(ServerSide {
                            http_version: accepted.http_version,
                            server_name: accepted.server_name,
                            tls_version: accepted.tls_version,
                        }));
                        let mut stream = accepted.stream;
                        let mut buf = [0u8; 256];
                        while let Ok(n) = stream.read(&mut buf).await {
                            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(error) => {
                        let _ = report.send(Err(error.to_string()));
                    }
                }
            });
        }
    });
    (addr, reports)
}

fn client_trusting(
    pki: &Pki,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).expect("CA as root");
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

fn served_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("peer certificates")[0]
        .clone()
}

async fn echo(stream: &mut TlsStream<TcpStream>, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; text.len()];
    stream.read_exact(&mut buf).await.expect("read echo");
    String::from_utf8(buf).expect("utf-8")
}

async fn next_report(
    reports: &mut mpsc::UnboundedReceiver<Result<ServerSide, String>>,
) -> Result<ServerSide, String> {
    tokio::time::timeout(Duration::from_secs(10), reports.recv())
        .await
        .expect("server reported in time")
        .expect("server running")
}

/// A default pair for `*.example.test` and 127.0.0.1, and pairs for a.example.test and b.example.test.
struct Site {
    pki: Pki,
    default: Leaf,
    a: Leaf,
    b: Leaf,
    set: CertSet,
}

fn site(tag: &str) -> Site {
    let pki = Pki::new(tag);
    let default = pki.leaf(&["*.example.test", "127.0.0.1"]);
    let a = pki.leaf(&["a.example.test"]);
    let b = pki.leaf(&["b.example.test"]);
    let set = CertSet::new(pki.write("default", &default))
        .with_domain("A.example.test", pki.write("a", &a))
        .with_domain("b.example.test", pki.write("b", &b));
    Site {
        pki,
        default,
        a,
        b,
        set,
    }
}

// ---------------------------------------------------------------- listeners

#[tokio::test]
async fn alpn_h2_and_http1_on_one_port() {
    let site = site("alpn");
    let termination = Arc::new(
        TlsTermination::start(&site.set, MinVersion::Tls12, SystemTime::now()).expect("start"),
    );
    let (addr, mut reports) = serve(termination).await;

    let mut h2 = connect(
        addr,
        client_trusting(&site.pki, &[b"h2", b"http/1.1"], BOTH),
        "a.example.test",
    )
    .await
    .expect("h2 handshake");
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let server = next_report(&mut reports).await.expect("server handshake");
    assert_eq!(server.http_version, HttpVersion::Http2);
    assert_eq!(server.server_name.as_deref(), Some("a.example.test"));
    assert_eq!(echo(&mut h2, "over h2").await, "over h2");

    let http1 = connect(
        addr,
        client_trusting(&site.pki, &[b"http/1.1"], BOTH),
        "a.example.test",
    )
    .await
    .expect("http/1.1 handshake");
    assert_eq!(http1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        next_report(&mut reports)
            .await
            .expect("server handshake")
            .http_version,
        HttpVersion::Http1
    );

    let no_alpn = connect(
        addr,
        client_trusting(&site.pki, &[], BOTH),
        "a.example.test",
    )
    .await
    .expect("handshake without ALPN");
    assert_eq!(no_alpn.get_ref().1.alpn_protocol(), None);
    assert_eq!(
        next_report(&mut reports)
            .await
            .expect("server handshake")
            .http_version,
        HttpVersion::Http1,
        "a client offering no ALPN speaks HTTP/1.1"
    );
}

#[tokio::test]
async fn sni_picks_the_domain_certificate_and_anything_else_gets_the_default() {
    let site = site("sni");
    let termination = Arc::new(
        TlsTermination::start(&site.set, MinVersion::Tls12, SystemTime::now()).expect("start"),
    );
    let store = termination.store().clone();
    let (addr, mut reports) = serve(termination).await;
    let client = client_trusting(&site.pki, &[b"h2"], BOTH);

    let a = connect(addr, client.clone(), "a.example.test")
        .await
        .expect("a.example.test");
    assert_eq!(
        served_leaf(&a),
        site.a.der,
        "configured as A.test: compared case-insensitively"
    );
    let b = connect(addr, client.clone(), "b.example.test")
        .await
        .expect("b.example.test");
    assert_eq!(served_leaf(&b), site.b.der);
    let unknown = connect(addr, client.clone(), "c.example.test")
        .await
        .expect("c.example.test");
    assert_eq!(
        served_leaf(&unknown),
        site.default.der,
        "unknown SNI: the default"
    );
    let by_ip = connect(addr, client.clone(), "127.0.0.1")
        .await
        .expect("by IP");
    assert_eq!(served_leaf(&by_ip), site.default.der, "no SNI: the default");

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(
            next_report(&mut reports)
                .await
                .expect("server handshake")
                .server_name,
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            None,
            Some("a.example.test".into()),
            Some("b.example.test".into()),
            Some("c.example.test".into())
        ]
    );

    // The resolver itself, for what a rustls client will not send.
    assert_eq!(
        store
            .pair_for_server_name(Some("B.EXAMPLE.TEST"))
            .certified_key()
            .cert[0],
        site.b.der
    );
    assert_eq!(
        store
            .pair_for_server_name(Some("b.example.test."))
            .certified_key()
            .cert[0],
        site.b.der
    );
    assert_eq!(
        store.pair_for_server_name(None).certified_key().cert[0],
        site.default.der
    );
}

#[tokio::test]
async fn min_version_13_refuses_a_tls12_only_client() {
    let site = site("minver");
    let termination = Arc::new(
        TlsTermination::start(&site.set, MinVersion::Tls13, SystemTime::now()).expect("start"),
    );
    let (addr, mut reports) = serve(termination.clone()).await;
    let tls12_only = client_trusting(&site.pki, &[b"h2"], &[&rustls::version::TLS12]);

    let refused = connect(addr, tls12_only.clone(), "a.example.test").await;
    assert!(
        refused.is_err(),
        "a TLS 1.2-only client must fail against min-version 1.3"
    );
    let server = next_report(&mut reports).await;
    assert!(
        matches!(&server, Err(message) if message.starts_with("TLS handshake failed")),
        "{server:?}"
    );

    connect(
        addr,
        client_trusting(&site.pki, &[b"h2"], BOTH),
        "a.example.test",
    )
    .await
    .expect("a TLS 1.3 client");
    assert_eq!(
        next_report(&mut reports)
            .await
            .expect("server handshake")
            .tls_version,
        TlsVersion::Tls13
    );

    // A reload that lowers min-version lets the TLS 1.2 client in, from the next handshake.
    let outcome = termination.reload(&site.set, MinVersion::Tls12, SystemTime::now());
    assert!(outcome.is_ok() && !outcome.changed(), "{outcome:?}");
    connect(addr, tls12_only, "a.example.test")
        .await
        .expect("TLS 1.2 after min-version 1.2");
    assert_eq!(
        next_report(&mut reports)
            .await
            .expect("server handshake")
            .tls_version,
        TlsVersion::Tls12
    );
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_handshake_timeout() {
    let site = site("silent");
    let termination =
        TlsTermination::start(&site.set, MinVersion::Tls12, SystemTime::now()).expect("start");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _silent = TcpStream::connect(addr).await.expect("connect");
    let (tcp, _) = listener.accept().await.expect("accept");
    let result = termination.accept(tcp, Duration::from_millis(50)).await;
    assert!(
        matches!(result, Err(HandshakeError::TimedOut(_))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------- reload

#[tokio::test]
async fn reload_keeps_open_connections_and_new_ones_get_the_new_certificate() {
    let site = site("reload");
    let termination = Arc::new(
        TlsTermination::start(&site.set, MinVersion::Tls12, SystemTime::now()).expect("start"),
    );
    let (addr, _reports) = serve(termination.clone()).await;
    let client = client_trusting(&site.pki, &[b"h2", b"http/1.1"], BOTH);

    let mut held = connect(addr, client.clone(), "a.example.test")
        .await
        .expect("first handshake");
    assert_eq!(echo(&mut held, "before").await, "before");
    assert_eq!(served_leaf(&held), site.a.der);

    let renewed = site.pki.leaf(&["a.example.test"]);
    site.pki.write("a", &renewed);
    let outcome = termination.reload(&site.set, MinVersion::Tls12, SystemTime::now());
    assert_eq!(
        outcome.replaced,
        vec![CertName::Domain("a.example.test".into())],
        "{outcome:?}"
    );
    assert_eq!(
        outcome.unchanged,
        vec![CertName::Default, CertName::Domain("b.example.test".into())]
    );
    assert!(outcome.is_ok());

    assert_eq!(
        echo(&mut held, "after").await,
        "after",
        "the open connection keeps working"
    );
    // A fresh client: one that resumes its session is not sent a certificate again (TLS
    // resumption), and keeps the one it authenticated.
    let fresh_client = client_trusting(&site.pki, &[b"h2"], BOTH);
    let fresh = connect(addr, fresh_client, "a.example.test")
        .await
        .expect("new handshake");
    assert_eq!(
        served_leaf(&fresh),
        renewed.der,
        "a new connection gets the new certificate"
    );
    let b = connect(addr, client, "b.example.test")
        .await
        .expect("b.example.test");
    assert_eq!(served_leaf(&b), site.b.der, "other names untouched");
}

#[tokio::test]
async fn a_broken_pair_is_rejected_and_the_old_one_stays() {
    let site = site("broken");
    let termination = Arc::new(
        TlsTermination::start(&site.set, MinVersion::Tls12, SystemTime::now()).expect("start"),
    );
    let (addr, _reports) = serve(termination.clone()).await;
    let client = client_trusting(&site.pki, &[b"h2"], BOTH);

    // Mid-rotation: a new certificate, the old key.
    let renewed = site.pki.leaf(&["a.example.test"]);
    let a_paths = site
        .set
        .iter()
        .find(|(n, _)| n.label() == "a.example.test")
        .expect("a")
        .1
        .clone();
    std::fs::write(&a_paths.cert, &renewed.cert_pem).expect("write cert");
    // And an expired certificate for b.example.test.
    let expired = site
        .pki
        .leaf_valid(&["b.example.test"], (2019, 1, 1), (2020, 1, 1));
    site.pki.write("b", &expired);

    let outcome = termination.reload(&site.set, MinVersion::Tls12, SystemTime::now());
    assert!(!outcome.is_ok());
    assert!(outcome.replaced.is_empty(), "{outcome:?}");
    let messages: Vec<String> = outcome.failed.iter().map(|f| f.to_string()).collect();
    assert_eq!(outcome.failed.len(), 2, "{messages:?}");
    assert!(outcome.failed.iter().all(|f| f.kept_old));
    assert!(
        matches!(&outcome.failed[0].error, PairError::KeyMismatch { key, .. } if *key == a_paths.key),
        "{messages:?}"
    );
    assert!(
        messages[0].contains("a.key: private key does not match the certificate in"),
        "{}",
        messages[0]
    );
    assert!(messages[0]
        .ends_with("(the certificate for a.example.test; the previous one stays in use)"));
    assert!(matches!(
        &outcome.failed[1].error,
        PairError::Expired { .. }
    ));
    assert!(
        messages[1].contains("b.pem: certificate expired at 2020-01-01T00:00:00Z"),
        "{}",
        messages[1]
    );

    let a = connect(addr, client.clone(), "a.example.test")
        .await
        .expect("a.example.test still served");
    assert_eq!(served_leaf(&a), site.a.der, "the old pair stays");
    let b = connect(addr, client.clone(), "b.example.test")
        .await
        .expect("b.example.test still served");
    assert_eq!(served_leaf(&b), site.b.der);

    // The rotation completes: the next reload takes it.
    std::fs::write(&a_paths.key, &renewed.key_pem).expect("write key");
    let outcome = termination.reload(&site.set, MinVersion::Tls12, SystemTime::now());
    assert_eq!(
        outcome.replaced,
        vec![CertName::Domain("a.example.test".into())]
    );
    let a = connect(
        addr,
        client_trusting(&site.pki, &[b"h2"], BOTH),
        "a.example.test",
    )
    .await
    .expect("a.example.test renewed");
    assert_eq!(served_leaf(&a), renewed.der);
}

#[tokio::test]
async fn reload_adds_and_removes_domains() {
    let site = site("domains");
    let termination =
        TlsTermination::start(&site.set, MinVersion::Tls12, SystemTime::now()).expect("start");
    let c = site.pki.leaf(&["c.example.test"]);
    let c_paths = site.pki.write("c", &c);
    let bad = PairPaths::new(site.pki.path("missing.pem"), site.pki.path("missing.key"));
    let default_paths = site.set.iter().next().expect("default").1.clone();
    let next = CertSet::new(default_paths)
        .with_domain("c.example.test", c_paths)
        .with_domain("d.example.test", bad);
    let outcome = termination.reload(&next, MinVersion::Tls12, SystemTime::now());
    assert_eq!(
        outcome.added,
        vec![CertName::Domain("c.example.test".into())]
    );
    assert_eq!(
        outcome.removed,
        vec![
            CertName::Domain("a.example.test".into()),
            CertName::Domain("b.example.test".into())
        ]
    );
    assert_eq!(outcome.failed.len(), 1);
    assert!(!outcome.failed[0].kept_old);
    assert!(outcome.failed[0]
        .to_string()
        .contains("missing.pem: cannot read"));
    let store = termination.store();
    assert_eq!(
        store
            .pair_for_server_name(Some("c.example.test"))
            .certified_key()
            .cert[0],
        c.der
    );
    assert_eq!(
        store
            .pair_for_server_name(Some("a.example.test"))
            .certified_key()
            .cert[0],
        site.default.der
    );
    assert!(store
        .pair(&CertName::Domain("d.example.test".into()))
        .is_none());
    let labels: Vec<String> = store
        .expiry_timestamps()
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert_eq!(labels, vec!["*", "c.example.test"]);
}

#[tokio::test]
async fn file_watch_reports_a_rotated_pair() {
    let site = site("watch");
    let watcher = FileWatcher::new(site.set.files());
    let mut watch = FileWatch::spawn(watcher, Duration::from_millis(20));
    let renewed = site.pki.leaf(&["a.example.test"]);
    let a_paths = site.pki.write("a", &renewed);
    let changed = tokio::time::timeout(Duration::from_secs(10), watch.changed())
        .await
        .expect("a change within 10 s")
        .expect("watch running");
    assert_eq!(
        changed,
        vec![a_paths.key.clone(), a_paths.cert.clone()],
        "a.key sorts first"
    );

    // New paths from a config reload are watched from then on.
    let extra = site.pki.path("extra.pem");
    std::fs::write(&extra, "one").expect("write");
    let mut paths: Vec<PathBuf> = site
        .set
        .files()
        .into_iter()
        .map(Path::to_path_buf)
        .collect();
    paths.push(extra.clone());
    watch.watched_paths().set(paths);
    // The new path's baseline is taken at the poll that picks up the new list, which this
    // test cannot see: rewrite until a rewrite lands after it and is reported.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut round = 0;
    let changed = loop {
        round += 1;
        std::fs::write(&extra, format!("rewrite {round}")).expect("rewrite");
        match tokio::time::timeout(Duration::from_millis(200), watch.changed()).await {
            Ok(changed) => break changed.expect("watch running"),
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "no change reported in 10 s"
            ),
        }
    };
    assert_eq!(changed, vec![extra]);
}

// ---------------------------------------------------------------- validation at load

#[test]
fn startup_fails_with_every_bad_pair_named() {
    let pki = Pki::new("startup");
    let good = pki.leaf(&["*.example.test"]);
    let other = pki.leaf(&["a.example.test"]);
    let mismatched = PairPaths::new(
        pki.write("good", &good).cert,
        pki.write("other", &other).key,
    );
    let set = CertSet::new(pki.write("default", &good))
        .with_domain("a.example.test", mismatched)
        .with_domain(
            "b.example.test",
            PairPaths::new(pki.path("nope.pem"), pki.path("nope.key")),
        );
    let error =
        TlsTermination::start(&set, MinVersion::Tls12, SystemTime::now()).expect_err("bad pairs");
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("other.key: private key does not match the certificate in"),
        "{text}"
    );
    assert!(lines[0].contains("good.pem"), "{text}");
    assert!(lines[1].contains("nope.pem: cannot read"), "{text}");
}

#[test]
fn pair_errors_say_what_is_wrong_and_name_the_file() {
    let pki = Pki::new("errors");
    let provider = crypto_provider();
    let now = SystemTime::now();
    let good = pki.leaf(&["a.example.test"]);
    let load = |cert: &str, key: &str| {
        let paths = PairPaths::new(pki.path("c.pem"), pki.path("k.pem"));
        std::fs::write(&paths.cert, cert).expect("write");
        std::fs::write(&paths.key, key).expect("write");
        buckler_tls::CertificatePair::load(&paths, &provider, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let c = pki.path("c.pem").display().to_string();
    let k = pki.path("k.pem").display().to_string();

    assert_eq!(load(&good.cert_pem, &good.key_pem), Ok(()));
    let swapped = load(&good.key_pem, &good.cert_pem).expect_err("swapped");
    assert!(
        swapped.starts_with(&format!("{c}: no PEM certificate")) && swapped.contains("swapped"),
        "{swapped}"
    );
    let no_key = load(&good.cert_pem, &good.cert_pem).expect_err("cert as key");
    assert!(
        no_key.starts_with(&format!("{k}: no PEM private key")) && no_key.contains("swapped"),
        "{no_key}"
    );
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let enc = load(&good.cert_pem, encrypted).expect_err("encrypted");
    assert!(
        enc.starts_with(&format!("{k}: no PEM private key")) && enc.contains("encrypted"),
        "{enc}"
    );
    let unclosed = "-----BEGIN CERTIFICATE-----\nMIIB\n";
    let pem = load(unclosed, &good.key_pem).expect_err("unclosed");
    assert_eq!(
        pem,
        format!(
            "{c}: malformed PEM: a section is not closed (no `-----END CERTIFICATE-----` line)"
        )
    );
    let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let x509 = load(garbage, &good.key_pem).expect_err("not X.509");
    assert!(
        x509.starts_with(&format!("{c}: the first certificate is not valid X.509")),
        "{x509}"
    );
    let empty = load("", &good.key_pem).expect_err("empty");
    assert_eq!(
        empty,
        format!("{c}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) found")
    );

    let ca_first = format!("{}{}", pki.ca.pem(), good.cert_pem);
    let order = load(&ca_first, &good.key_pem).expect_err("CA first");
    assert!(
        order.starts_with(&format!(
            "{k}: private key does not match the certificate in {c}"
        )),
        "{order}"
    );

    let future = pki.leaf_valid(&["a.example.test"], (2100, 1, 1), (2101, 1, 1));
    let early = load(&future.cert_pem, &future.key_pem).expect_err("not yet valid");
    assert_eq!(
        early,
        format!("{c}: certificate not valid before 2100-01-01T00:00:00Z")
    );
    let expired = pki.leaf_valid(&["a.example.test"], (2019, 1, 1), (2020, 1, 1));
    let late = load(&expired.cert_pem, &expired.key_pem).expect_err("expired");
    assert_eq!(
        late,
        format!("{c}: certificate expired at 2020-01-01T00:00:00Z")
    );
}

#[test]
fn expiry_timestamps_are_the_certificates_not_after() {
    let pki = Pki::new("expiry");
    let default = pki.leaf_valid(&["*.example.test"], (2020, 1, 1), (2049, 12, 31));
    let a = pki.leaf_valid(&["a.example.test"], (2020, 1, 1), (2051, 6, 1)); // a GeneralizedTime
    let set = CertSet::new(pki.write("default", &default))
        .with_domain("a.example.test", pki.write("a", &a));
    let termination =
        TlsTermination::start(&set, MinVersion::Tls12, SystemTime::now()).expect("start");
    assert_eq!(
        termination.store().expiry_timestamps(),
        vec![
            ("*".to_owned(), 2_524_521_600),
            ("a.example.test".to_owned(), 2_569_190_400)
        ]
    );
}

// ---------------------------------------------------------------- upstream side

#[tokio::test]
async fn upstream_client_verifies_with_upstream_ca_and_fails_without() {
    let pki = Pki::new("upstream");
    let leaf = pki.leaf(&["localhost", "127.0.0.1"]);
    let set = CertSet::new(pki.write("upstream", &leaf));
    let termination =
        Arc::new(TlsTermination::start(&set, MinVersion::Tls12, SystemTime::now()).expect("start"));
    let (addr, _reports) = serve(termination).await;
    let ca = pki.write_ca();
    let system = SystemRoots::load();

    let trusting = client_config(
        &system,
        Some(&ca),
        UpstreamProtocol::Auto,
        crypto_provider(),
    )
    .expect("client config");
    let mut stream = connect(addr, Arc::new(trusting), "localhost")
        .await
        .expect("verified");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "auto offers h2"
    );
    assert_eq!(echo(&mut stream, "hello").await, "hello");

    let http1 = client_config(
        &system,
        Some(&ca),
        UpstreamProtocol::Http1,
        crypto_provider(),
    )
    .expect("client config");
    let stream = connect(addr, Arc::new(http1), "127.0.0.1")
        .await
        .expect("verified by IP SAN");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let system_only = client_config(&system, None, UpstreamProtocol::Auto, crypto_provider())
        .expect("client config");
    let error = connect(addr, Arc::new(system_only), "localhost")
        .await
        .expect_err("an unknown CA must not verify");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );

    let trusting = client_config(
        &system,
        Some(&ca),
        UpstreamProtocol::Auto,
        crypto_provider(),
    )
    .expect("client config");
    let error = connect(addr, Arc::new(trusting), "other.test")
        .await
        .expect_err("a name the certificate does not carry must not verify");
    assert!(error.to_string().contains("not valid for name"), "{error}");
}

#[test]
fn upstream_ca_errors_name_the_file() {
    let pki = Pki::new("ca-errors");
    let system = SystemRoots::empty();
    let build = |path: &Path| {
        client_config(
            &system,
            Some(path),
            UpstreamProtocol::Auto,
            crypto_provider(),
        )
        .map(|_| ())
    };
    let missing = pki.path("missing-ca.pem");
    let error = build(&missing).expect_err("missing");
    assert!(matches!(error, ClientTlsError::Read { .. }));
    assert!(error
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));

    let key_only = pki.path("key-only.pem");
    std::fs::write(&key_only, KeyPair::generate().expect("key").serialize_pem()).expect("write");
    let error = build(&key_only).expect_err("no certificate");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: no PEM certificate (`-----BEGIN CERTIFICATE-----`) found",
            key_only.display()
        )
    );

    let garbage = pki.path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let error = build(&garbage).expect_err("garbage");
    assert!(
        error.to_string().starts_with(&format!(
            "{}: certificate 1 cannot be a trust anchor",
            garbage.display()
        )),
        "{error}"
    );

    assert!(build(&pki.write_ca()).is_ok());
    assert_eq!("auto".parse(), Ok(UpstreamProtocol::Auto));
    assert_eq!("http1".parse(), Ok(UpstreamProtocol::Http1));
    assert_eq!("h2c".parse(), Ok(UpstreamProtocol::H2c));
    assert_eq!(
        "h2".parse::<UpstreamProtocol>().map_err(|e| e.to_string()),
        Err("upstream-protocol \"h2\" is not one of \"auto\", \"http1\", \"h2c\"".to_owned())
    );
    assert_eq!("1.3".parse(), Ok(MinVersion::Tls13));
    assert!("1.1".parse::<MinVersion>().is_err());
}
