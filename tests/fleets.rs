//! Fleets, end to end (SPEC §11): several gateways follow one etcd key (a real etcd, Debian's
//! `etcd-server`, started by each test on free loopback ports), admin writes go to etcd and
//! converge everywhere, ramps move in step, and etcd outages fail no request. Also the `file`
//! source's revision check. Without the `etcd` binary these tests fail naming `etcd-server`.

use std::time::{Duration, Instant};

use buckler_discovery::testing::EtcdServer;
use buckler_discovery::EtcdClient;
use buckler_tests::*;
use http::{Method, StatusCode};

const KEY: &str = "/buckler/fleet/upstreams";

/// A real etcd, or a failure naming the package to install.
fn etcd() -> EtcdServer {
    EtcdServer::started()
}

fn client(etcd: &EtcdServer) -> EtcdClient {
    EtcdClient::new(&[etcd.url()], Duration::from_secs(2)).expect("etcd client")
}

/// One gateway of the fleet: the `*` domain follows `KEY` at `etcd_url`.
fn fleet_config(etcd_url: &str, weighting: &str) -> String {
    format!(
        r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0" }}, "shutdown-grace": "1s",
             domains: [{{ "domain-name": "*", "upstream-weighting": {weighting}, "drain-timeout": "2s",
                          "upstream-watcher": "etcd",
                          etcd: {{ endpoints: ["{etcd_url}"], key: "{KEY}" }} }}] }}"#
    )
}

const QUICK: &str = r#"{ "step-count": 1, "step-duration": "50ms" }"#;

/// `(location, target weight)` of every upstream listed, in listing order.
async fn listed(gw: &TestGateway) -> Vec<(String, u64)> {
    gw.upstream_listing()
        .await
        .iter()
        .map(|u| {
            (
                u["serviceLocation"].as_str().unwrap_or_default().to_owned(),
                u["weight"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Effective weight of `location` on `gw` (0 when not listed).
async fn effective(gw: &TestGateway, location: &str) -> f64 {
    gw.upstream_entry(location)
        .await
        .and_then(|u| u["effectiveWeight"].as_f64())
        .unwrap_or(0.0)
}

/// True when `name` answers one of 20 requests.
async fn serves(gw: &TestGateway, name: &str) -> bool {
    for _ in 0..20 {
        if gw.get("/w").await.upstream() == name {
            return true;
        }
    }
    false
}

async fn put(gw: &TestGateway, body: &str) -> Reply {
    gw.admin(Method::PUT, "/admin/domains/*/upstreams", None, Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_follow_one_key_and_one_admin_write_moves_them_all() {
    let etcd = etcd();
    let etcd_client = client(&etcd);
    let (blue, green) = blue_and_green().await;
    etcd_client
        .put(KEY, upstreams_json(&[(&blue.url(), 1)]).as_bytes())
        .await
        .unwrap();
    let config = fleet_config(&etcd.url(), QUICK);
    let fleet = [
        TestGateway::start_ready(&config).await,
        TestGateway::start_ready(&config).await,
        TestGateway::start_ready(&config).await,
    ];
    for gw in &fleet {
        assert_eq!(listed(gw).await, vec![(blue.url(), 1)]);
        assert_eq!(gw.get("/w").await.upstream(), "blue");
    }

    // A value put by another tool reaches every instance.
    etcd_client
        .put(KEY, upstreams_json(&[(&blue.url(), 2)]).as_bytes())
        .await
        .unwrap();
    for gw in &fleet {
        assert_eventually!(
            listed(gw).await == vec![(blue.url(), 2)] && effective(gw, &blue.url()).await == 2.0,
            "{:?}",
            listed(gw).await
        );
    }

    // An admin write on one instance lands in etcd (with its change record) and converges all.
    let both = upstreams_json(&[(&blue.url(), 1), (&green.url(), 3)]);
    let written = put(&fleet[0], &both).await;
    assert_eq!(written.status, StatusCode::OK, "{:?}", written.body);
    assert_eq!(written.json()["added"][0], green.url());
    let (stored, _) = etcd_client.get(KEY).await.unwrap().expect("the key");
    assert!(String::from_utf8_lossy(&stored).contains(&green.url()));
    let (meta, _) = etcd_client
        .get(&format!("{KEY}/meta"))
        .await
        .unwrap()
        .expect("KEY/meta written in the same transaction");
    let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    assert!(meta["changedAt"].is_string(), "{meta}");
    assert_eq!(meta["from"][blue.url()], 2.0, "{meta}");
    let wanted = vec![(blue.url(), 1), (green.url(), 3)];
    for gw in &fleet {
        assert_eventually!(listed(gw).await == wanted, "{:?}", listed(gw).await);
        assert_eventually!(serves(gw, "green").await, "green serves on every instance");
    }

    // An invalid value is rejected by every instance; the previous set stays.
    etcd_client
        .put(
            KEY,
            br#"[{"serviceType": "swagger2", "serviceLocation": "ftp://bad"}]"#,
        )
        .await
        .unwrap();
    for gw in &fleet {
        assert_eventually!(
            gw.metrics()
                .await
                .contains("buckler_config_reloads_total{result=\"error\"} 1"),
            "rejection counted: {}",
            gw.metrics().await
        );
        assert_eq!(listed(gw).await, wanted, "the previous set stays");
        assert_eq!(gw.get("/w").await.status, StatusCode::OK);
    }

    // An admin write fixing the bad value expects the bad value's revision: not a conflict.
    let fixed = put(&fleet[1], &upstreams_json(&[(&green.url(), 1)])).await;
    assert_eq!(
        fixed.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&fixed.body)
    );
    for gw in &fleet {
        assert_eventually!(
            listed(gw).await.first() == Some(&(green.url(), 1)),
            "{:?}",
            listed(gw).await
        );
    }
    // An invalid body is refused before etcd is asked.
    let invalid = put(&fleet[2], r#"[{"serviceLocation": "http://x"}]"#).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);

    // Two instances writing at once: one wins, the other answers 409 and changes nothing.
    let mut conflicts = 0;
    for round in 0..20u32 {
        let a = upstreams_json(&[(&green.url(), 10 + round)]);
        let b = upstreams_json(&[(&green.url(), 100 + round)]);
        let (first, second) = tokio::join!(put(&fleet[0], &a), put(&fleet[2], &b));
        for reply in [&first, &second] {
            assert!(
                reply.status == StatusCode::OK || reply.status == StatusCode::CONFLICT,
                "{} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        if first.status == StatusCode::CONFLICT || second.status == StatusCode::CONFLICT {
            assert_ne!(first.status, second.status, "one of the two wins");
            let loser = if first.status == StatusCode::CONFLICT {
                &first
            } else {
                &second
            };
            assert_eq!(loser.json()["status"], 409);
            let winner_weight = if first.status == StatusCode::OK {
                10 + round
            } else {
                100 + round
            };
            for gw in &fleet {
                assert_eventually!(
                    listed(gw).await == vec![(green.url(), u64::from(winner_weight))],
                    "the winner's value everywhere: {:?}",
                    listed(gw).await
                );
            }
            conflicts += 1;
            break;
        }
        // Both went through one after the other: let every instance catch up.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        conflicts, 1,
        "no lost race in 20 rounds of concurrent writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramps_move_in_step_on_every_instance_even_one_started_mid_ramp() {
    let etcd = etcd();
    let etcd_client = client(&etcd);
    let (blue, green) = blue_and_green().await;
    etcd_client
        .put(
            KEY,
            upstreams_json(&[(&blue.url(), 100), (&green.url(), 0)]).as_bytes(),
        )
        .await
        .unwrap();
    // Five steps of a second: "in step" is within one step (20) of each other.
    let config = fleet_config(&etcd.url(), r#"{ "step-count": 5, "step-duration": "1s" }"#);
    let mut fleet = vec![
        TestGateway::start_ready(&config).await,
        TestGateway::start_ready(&config).await,
        TestGateway::start_ready(&config).await,
    ];
    let written = put(
        &fleet[1],
        &upstreams_json(&[(&blue.url(), 0), (&green.url(), 100)]),
    )
    .await;
    assert_eq!(written.status, StatusCode::OK);
    let began = Instant::now();
    let mut joined = false;
    let mut samples = 0;
    while began.elapsed() < Duration::from_millis(6500) {
        if !joined && began.elapsed() > Duration::from_millis(2300) {
            // An instance started in the middle of the ramp joins it where the others are.
            let late = TestGateway::start(&config).await;
            assert_eventually!(
                listed(&late).await.len() == 2,
                "the late instance reads etcd"
            );
            fleet.push(late);
            joined = true;
        }
        let mut blues = Vec::new();
        let mut greens = Vec::new();
        for gw in &fleet {
            blues.push(effective(gw, &blue.url()).await);
            greens.push(effective(gw, &green.url()).await);
        }
        for weights in [&blues, &greens] {
            let spread = weights.iter().cloned().fold(f64::MIN, f64::max)
                - weights.iter().cloned().fold(f64::MAX, f64::min);
            assert!(
                spread <= 20.0,
                "at {:?}: effective weights {blues:?} / {greens:?} differ by more than a step",
                began.elapsed()
            );
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(samples >= 20, "sampled {samples} times");
    for gw in &fleet {
        assert_eventually!(
            effective(gw, &green.url()).await == 100.0,
            "the ramp ends everywhere"
        );
        assert_eq!(effective(gw, &blue.url()).await, 0.0);
    }
    let late = fleet.last().unwrap();
    late.wait_ready().await;
    assert_eq!(late.get("/w").await.upstream(), "green");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_under_load_fails_no_request_and_a_new_value_is_picked_up_after() {
    let mut etcd = etcd();
    let etcd_client = client(&etcd);
    let (blue, green) = blue_and_green().await;
    etcd_client
        .put(KEY, upstreams_json(&[(&blue.url(), 1)]).as_bytes())
        .await
        .unwrap();
    let config = fleet_config(&etcd.url(), QUICK);
    let fleet = [
        TestGateway::start_ready(&config).await,
        TestGateway::start_ready(&config).await,
    ];

    etcd.kill();
    let mut failures = 0;
    for round in 0..150 {
        for gw in &fleet {
            let reply = gw.get("/w").await;
            if reply.status != StatusCode::OK || reply.upstream() != "blue" {
                failures += 1;
            }
        }
        if round % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(failures, 0, "no request failed while etcd was down");
    for gw in &fleet {
        // Stale, named, and still ready: the last set serves.
        assert_eventually!(
            {
                let health = gw.get("/healthcheck").await;
                health.status == StatusCode::OK
                    && health.json()["domains"][0]["source"]["status"] == "stale"
            },
            "healthcheck: {}",
            String::from_utf8_lossy(&gw.get("/healthcheck").await.body)
        );
    }
    let refused = put(&fleet[0], &upstreams_json(&[(&green.url(), 1)])).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert!(String::from_utf8_lossy(&refused.body).contains("etcd"));

    etcd.start();
    etcd_client
        .put(
            KEY,
            upstreams_json(&[(&blue.url(), 1), (&green.url(), 1)]).as_bytes(),
        )
        .await
        .unwrap();
    for gw in &fleet {
        assert_eventually!(
            listed(gw).await.len() == 2,
            "picked up after the restart: {:?}",
            listed(gw).await
        );
        assert_eventually!(
            gw.get("/healthcheck").await.json()["domains"][0]["source"]["status"] == "live",
            "live again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_etcd_is_down_says_why_then_serves() {
    let mut etcd = EtcdServer::prepared();
    let (blue, _green) = blue_and_green().await;
    let gw = TestGateway::start(&fleet_config(&etcd.url(), QUICK)).await;
    let health = gw.get("/healthcheck").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    let reason = health.json()["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("etcd"), "{}", health.json());
    assert_eq!(health.json()["domains"][0]["source"]["status"], "waiting");
    assert_eq!(gw.get("/w").await.status, StatusCode::NOT_FOUND);

    etcd.start();
    client(&etcd)
        .put(KEY, upstreams_json(&[(&blue.url(), 1)]).as_bytes())
        .await
        .unwrap();
    gw.wait_ready().await;
    // Ready says every upstream has served its document; the first request after it once (in
    // many runs) got no echo, cause not yet found (an empty domain adds at full weight, so not
    // a ramp): wait for blue's answer, and the failure message shows what came instead.
    assert_eventually!(
        gw.get("/w").await.upstream() == "blue",
        "blue serves: {:?}",
        gw.get("/w").await
    );
    assert_eq!(
        gw.get("/healthcheck").await.json()["domains"][0]["source"]["status"],
        "live"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_write_racing_an_edit_of_the_upstreams_file_answers_409() {
    let (blue, green) = blue_and_green().await;
    let dir = temp_dir("file-409");
    let upstreams = dir.join("upstreams.json");
    std::fs::write(&upstreams, upstreams_json(&[(&blue.url(), 1)])).unwrap();
    let config_path = dir.join("buckler.json5");
    std::fs::write(&config_path, watched_file_config("50ms")).unwrap();
    let gw = TestGateway::start_file(&config_path).await;
    gw.wait_ready().await;
    // Someone edits the file, and an admin write follows before the gateway looked at it
    // (it polls every 250 ms): the write expects what the gateway last saw, so it loses.
    let mut conflict = None;
    for weight in 2..12 {
        std::fs::write(&upstreams, upstreams_json(&[(&blue.url(), weight)])).unwrap();
        let reply = put(&gw, &upstreams_json(&[(&green.url(), 1)])).await;
        if reply.status == StatusCode::CONFLICT {
            conflict = Some((reply, weight));
            break;
        }
        // The poll came first (rare): the write went through; restore and try again.
        assert_eq!(reply.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (reply, weight) = conflict.expect("no 409 in ten tries");
    assert_eq!(reply.json()["status"], 409);
    let on_disk = std::fs::read_to_string(&upstreams).unwrap();
    assert!(
        !on_disk.contains(&green.url()),
        "nothing written: {on_disk}"
    );
    assert_eventually!(
        listed(&gw).await == vec![(blue.url(), u64::from(weight))],
        "the edit is applied: {:?}",
        listed(&gw).await
    );
    // Now the gateway has seen the edit: the same write succeeds.
    let retried = put(&gw, &upstreams_json(&[(&green.url(), 1)])).await;
    assert_eq!(retried.status, StatusCode::OK);
    assert!(std::fs::read_to_string(&upstreams)
        .unwrap()
        .contains(&green.url()));
}
