//! `cargo run --release --example quickstart`: starts two demo Swagger 2 services (blue v1 and
//! green v2) and a Lambda function behind a local Invoke API on loopback, then Buckler in
//! front of them from `gateway-config/quickstart.json5`, and prints commands to try —
//! including a live weight ramp. It adds an HTTPS listener on 127.0.0.1:8443 with a
//! self-signed certificate for `localhost` made at first run (kept in the system's temporary
//! directory). `-- --smoke` checks the whole setup and exits (used by CI).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use buckler_gateway::RunningGateway;
use buckler_testkit::{FakeLambda, FakeUpstream, LambdaReply, Swagger2Doc};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn demo_doc(version: &str) -> String {
    Swagger2Doc::new("demo", version)
        .produces_json()
        .op("get", "/hello")
        .op("get", "/users/{id}")
        .op_with(
            "post",
            "/orders",
            serde_json::json!({"consumes": ["application/json"]}),
        )
        .to_json()
}

fn lambda_doc() -> String {
    Swagger2Doc::new("echo-function", "1")
        .op("get", "/lambda/echo")
        .to_json()
}

fn main() -> ExitCode {
    // The standard AWS credential chain must find something to sign with; the local Invoke
    // API only checks that requests are signed. Set before any thread starts.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        std::env::set_var("AWS_ACCESS_KEY_ID", "quickstart");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "quickstart");
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(smoke)),
        Err(error) => {
            eprintln!("quickstart: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(smoke: bool) -> ExitCode {
    match quickstart(smoke).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn quickstart(smoke: bool) -> Result<(), String> {
    let config_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gateway-config/quickstart.json5");
    let mut config = buckler_config::load(&config_path).map_err(|e| e.to_string())?;
    // In smoke mode (CI) every port is picked free, so nothing else on the machine interferes.
    let port = |fixed: u16| if smoke { 0 } else { fixed };
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));

    let blue = FakeUpstream::builder("blue-v1")
        .bind(addr(port(9001)))
        .doc(demo_doc("1.0.0"))
        .try_start()
        .await;
    let green = FakeUpstream::builder("green-v2")
        .bind(addr(port(9002)))
        .doc(demo_doc("2.0.0"))
        .try_start()
        .await;
    let lambda = FakeLambda::start_on(addr(port(9003))).await;
    let (Ok(blue), Ok(green), Ok(lambda)) = (blue, green, lambda) else {
        return Err(
            "ports 8080, 8443, 9001, 9002, 9003 and 9901 must be free for the demo".to_owned(),
        );
    };
    lambda.function("echo", |call| {
        let envelope = call.json();
        if envelope["uri"] == "/spec" {
            return LambdaReply::json(
                serde_json::json!({"status": 200, "body": B64.encode(lambda_doc())}),
            );
        }
        let body = serde_json::json!({"answered-by": "lambda", "envelope": envelope});
        LambdaReply::json(serde_json::json!({
            "status": 200,
            "headers": [["content-type", "application/json"], ["x-upstream", "lambda"]],
            "body": B64.encode(body.to_string()),
        }))
    });
    // HTTPS beside plain HTTP: the certificate made at first run (a fresh one per smoke run).
    let tls_dir = if smoke {
        std::env::temp_dir().join(format!("buckler-quickstart-smoke-{}", std::process::id()))
    } else {
        std::env::temp_dir().join("buckler-quickstart")
    };
    let (cert, key) = self_signed_certificate(&tls_dir)?;
    config.tls = Some(buckler_config::TlsConfig {
        listen: vec![addr(port(8443))],
        cert: cert.clone(),
        key,
        min_version: buckler_config::TlsVersion::default(),
    });
    if smoke {
        config.listen = vec![addr(0)];
        if let Some(admin) = &mut config.admin {
            admin.listen = addr(0);
        }
        config.lambda.endpoint_url = Some(lambda.endpoint());
        let rewritten = serde_json::json!([
            {"serviceType": "swagger2", "serviceLocation": blue.url(), "weight": 3},
            {"serviceType": "swagger2", "serviceLocation": green.url(), "weight": 1},
            {"serviceType": "lambda", "serviceLocation": "arn:aws:lambda:us-east-1:000000000000:function:echo"},
        ]);
        let specs =
            buckler_config::parse_upstreams(&rewritten.to_string(), "smoke", &config.lambda)
                .map_err(|e| e.to_string())?;
        config.domains[0].upstream_watcher =
            buckler_config::UpstreamWatcher::Static { upstreams: specs };
    }

    let gateway = RunningGateway::start(config)
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{}", gateway.addrs()[0]);
    let admin = format!(
        "http://{}",
        gateway.admin_addr().ok_or("no admin listener")?
    );
    let https_addr = *gateway.tls_addrs().first().ok_or("no HTTPS listener")?;
    let https = format!("https://localhost:{}", https_addr.port());
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    println!("Buckler is listening on {base} and {https} (admin API on {admin}).");
    println!("Demo upstreams: blue v1 (weight 3) at {}, green v2 (weight 1) at {}, Lambda `echo` via {}.", blue.url(), green.url(), lambda.endpoint());

    wait_ready(&client, &base).await?;
    println!("Every upstream's Swagger doc is loaded (the Lambda's by invoking it).\n");

    let split = measure_split(&client, &base, 400).await?;
    println!("400 requests to /hello went: {split:?} (weights 3:1)");
    let (status, body) = call(
        &client,
        "GET",
        &format!("{base}/lambda/echo?from=quickstart"),
        None,
    )
    .await?;
    println!(
        "GET /lambda/echo -> {status}: {}\n",
        String::from_utf8_lossy(&body)
            .chars()
            .take(160)
            .collect::<String>()
    );

    let ramp_body = format!(
        r#"[{{"serviceType":"swagger2","serviceLocation":"{}","weight":0}},{{"serviceType":"swagger2","serviceLocation":"{}","weight":100}},{{"serviceType":"lambda","serviceLocation":"arn:aws:lambda:us-east-1:000000000000:function:echo"}}]"#,
        blue.url(),
        green.url()
    );

    if smoke {
        let blue_share = *split.get("blue-v1").unwrap_or(&0) as f64 / 400.0;
        if (blue_share - 0.75).abs() > 0.02 {
            return Err(format!("smoke: blue share {blue_share}, expected 0.75"));
        }
        if status != 200 || !String::from_utf8_lossy(&body).contains("\"answered-by\":\"lambda\"") {
            return Err(format!("smoke: lambda answered {status}"));
        }
        let status = https_get(https_addr, &cert, "/hello").await?;
        let _ = std::fs::remove_dir_all(&tls_dir);
        if status != 200 {
            return Err(format!("smoke: GET /hello over HTTPS answered {status}"));
        }
        let (status, _) = call(
            &client,
            "PUT",
            &format!("{admin}/admin/domains/*/upstreams"),
            Some(ramp_body),
        )
        .await?;
        if status != 200 {
            return Err(format!("smoke: admin PUT answered {status}"));
        }
        for _ in 0..100 {
            let (_, listing) = call(
                &client,
                "GET",
                &format!("{admin}/admin/domains/*/upstreams"),
                None,
            )
            .await?;
            let listing: serde_json::Value =
                serde_json::from_slice(&listing).map_err(|e| e.to_string())?;
            let moved = listing.as_array().into_iter().flatten().any(|u| {
                u["serviceLocation"] == green.url()
                    && u["effectiveWeight"].as_f64().unwrap_or(0.0) > 1.0
            });
            if moved {
                gateway.shutdown().await;
                println!("quickstart smoke: ok");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return Err("smoke: the ramp did not move".to_owned());
    }

    println!("Try:");
    println!("  curl -s {base}/hello                       # routed by the Swagger docs; the echo says which upstream answered");
    println!(
        "  curl -s {base}/users/7.json                # \".json\" is stripped (ignore-extensions)"
    );
    println!(
        "  curl -s {base}/lambda/echo?x=1             # a Lambda function behind the same gateway"
    );
    println!("  curl -si -X DELETE {base}/hello            # 405 with Allow");
    println!("  curl -si -X POST {base}/orders -H 'content-type: text/plain' -d hi   # 415");
    println!(
        "  curl -s --cacert {} {https}/hello   # HTTPS (HTTP/2 by ALPN with --http2)",
        cert.display()
    );
    println!("  curl -s {base}/healthcheck                 # upstream states, weights, endpoints");
    println!("  curl -s {base}/metrics                     # Prometheus metrics");
    println!("  for i in $(seq 100); do curl -s {base}/hello | grep -o '\"upstream\":\"[a-z0-9-]*\"'; done | sort | uniq -c");
    println!();
    println!("Shift all traffic from blue to green, in 10 steps of 1 s:");
    println!("  curl -s -X PUT {admin}/admin/domains/*/upstreams -d '{ramp_body}'");
    println!("Watch the effective weights move (one line per second):");
    println!("  while sleep 1; do curl -s {admin}/admin/domains/*/upstreams | grep -o '\"serviceLocation\":\"[^\"]*\",\"weight\":[0-9]*,\"effectiveWeight\":[0-9.]*' | tr '\\n' ' '; echo; done");
    println!("\nPress Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    gateway.shutdown().await;
    Ok(())
}

async fn call(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Option<String>,
) -> Result<(u16, Bytes), String> {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// `DIR/localhost.pem` and `DIR/localhost.key`: a self-signed certificate for `localhost` and
/// 127.0.0.1, made when the files are not there yet (so `curl --cacert` keeps working across
/// runs).
fn self_signed_certificate(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let (cert, key) = (dir.join("localhost.pem"), dir.join("localhost.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| format!("making a certificate: {e}"))?;
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write(&key, made.signing_key.serialize_pem())?;
    write(&cert, made.cert.pem())?;
    Ok((cert, key))
}

/// `GET path` over HTTPS to `addr` as `localhost`, trusting the certificate at `cert`; the
/// status.
async fn https_get(addr: SocketAddr, cert: &Path, path: &str) -> Result<u16, String> {
    use rustls::pki_types::pem::PemObject;
    let fail = |e: &dyn std::fmt::Display| format!("HTTPS GET {path}: {e}");
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert).map_err(|e| fail(&e))?;
    roots.add(der).map_err(|e| fail(&e))?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail(&e))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| fail(&e))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| fail(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, "localhost")
        .body(Full::<Bytes>::default())
        .map_err(|e| fail(&e))?;
    let response = sender.send_request(request).await.map_err(|e| fail(&e))?;
    Ok(response.status().as_u16())
}

async fn wait_ready(client: &HttpClient, base: &str) -> Result<(), String> {
    for _ in 0..300 {
        if let Ok((200, _)) = call(client, "GET", &format!("{base}/healthcheck"), None).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = call(client, "GET", &format!("{base}/healthcheck"), None).await?;
    Err(format!(
        "the upstreams' docs did not load within 15 s: {}",
        String::from_utf8_lossy(&body)
    ))
}

async fn measure_split(
    client: &HttpClient,
    base: &str,
    requests: usize,
) -> Result<BTreeMap<String, usize>, String> {
    let mut split = BTreeMap::new();
    for _ in 0..requests {
        let request = http::Request::get(format!("{base}/hello"))
            .body(Full::default())
            .map_err(|e| e.to_string())?;
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("GET /hello: {e}"))?;
        let upstream = response
            .headers()
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned();
        let _ = response.into_body().collect().await;
        *split.entry(upstream).or_insert(0) += 1;
    }
    Ok(split)
}
