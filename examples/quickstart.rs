//! `cargo run --release --example quickstart`: starts two demo Swagger 2 services (blue v1 and
//! green v2) on loopback and Buckler in front of them from `gateway-config/quickstart.json5`,
//! then prints commands to try. `-- --smoke` checks the whole setup and exits (used by CI).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use buckler_gateway::RunningGateway;
use buckler_testkit::{FakeUpstream, Swagger2Doc};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn demo_doc(title: &str, version: &str) -> String {
    Swagger2Doc::new(title, version)
        .produces_json()
        .op("get", "/hello")
        .op("get", "/users/{id}")
        .op_with("post", "/orders", serde_json::json!({"consumes": ["application/json"]}))
        .to_json()
}

#[tokio::main]
async fn main() -> ExitCode {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let config_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gateway-config/quickstart.json5");
    let mut config = match buckler_config::load(&config_path) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("quickstart: {errors}");
            return ExitCode::FAILURE;
        }
    };
    if smoke {
        // CI machines may have the demo ports taken: listen on a free port instead.
        config.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    }

    let blue = FakeUpstream::builder("blue-v1")
        .bind(SocketAddr::from(([127, 0, 0, 1], 9001)))
        .doc(demo_doc("demo", "1.0.0"))
        .try_start()
        .await;
    let green = FakeUpstream::builder("green-v2")
        .bind(SocketAddr::from(([127, 0, 0, 1], 9002)))
        .doc(demo_doc("demo", "2.0.0"))
        .try_start()
        .await;
    let (Ok(_blue), Ok(_green)) = (blue, green) else {
        eprintln!("quickstart: ports 9001 and 9002 must be free for the demo upstreams");
        return ExitCode::FAILURE;
    };

    let gateway = match RunningGateway::start(config).await {
        Ok(gateway) => gateway,
        Err(error) => {
            eprintln!("quickstart: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = gateway.addrs()[0];
    let base = format!("http://{addr}");
    println!("Buckler is listening on {base}; demo upstreams: blue v1 on :9001 (weight 3), green v2 on :9002 (weight 1).");

    if let Err(error) = wait_ready(&base).await {
        eprintln!("quickstart: {error}");
        return ExitCode::FAILURE;
    }
    println!("Both upstreams' Swagger docs are loaded.\n");

    let split = match measure_split(&base, 400).await {
        Ok(split) => split,
        Err(error) => {
            eprintln!("quickstart: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("400 requests to /hello went: {split:?} (weights 3:1)\n");

    if smoke {
        let blue_share = *split.get("blue-v1").unwrap_or(&0) as f64 / 400.0;
        gateway.shutdown().await;
        if (blue_share - 0.75).abs() > 0.02 {
            eprintln!("quickstart smoke: blue share {blue_share}, expected 0.75");
            return ExitCode::FAILURE;
        }
        println!("quickstart smoke: ok");
        return ExitCode::SUCCESS;
    }

    println!("Try:");
    println!("  curl -s {base}/hello                      # routed by the Swagger docs, echoes which upstream answered");
    println!("  curl -s {base}/users/7.json               # \".json\" is stripped (ignore-extensions)");
    println!("  curl -s -X DELETE {base}/hello -i         # 405 with Allow");
    println!("  curl -s -X POST {base}/orders -H 'content-type: text/plain' -d hi -i   # 415");
    println!("  curl -s {base}/healthcheck                # upstream states and endpoints");
    println!("  curl -s {base}/metrics                    # Prometheus metrics");
    println!("  for i in $(seq 100); do curl -s {base}/hello | grep -o '\"upstream\":\"[a-z0-9-]*\"'; done | sort | uniq -c");
    println!("\nPress Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    gateway.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_ready(base: &str) -> Result<(), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    for _ in 0..200 {
        let uri: http::Uri = format!("{base}/healthcheck").parse().map_err(|e| format!("{e}"))?;
        if let Ok(response) = client.get(uri).await {
            if response.status() == http::StatusCode::OK {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the demo upstreams' docs did not load within 10 s".to_owned())
}

async fn measure_split(base: &str, requests: usize) -> Result<BTreeMap<String, usize>, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut split = BTreeMap::new();
    for _ in 0..requests {
        let uri: http::Uri = format!("{base}/hello").parse().map_err(|e| format!("{e}"))?;
        let response = client.get(uri).await.map_err(|e| format!("GET /hello: {e}"))?;
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
