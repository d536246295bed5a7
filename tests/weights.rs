//! Weights that move, end to end: ramps measured under load, retargets, draining, the three
//! ways in (admin API, watched file, reload) and invalid input changing nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use buckler_tests::*;
use http::{Method, StatusCode};

fn admin_config(upstreams: &[(&str, u32)], weighting: &str, extra_top: &str) -> String {
    format!(
        r#"{{ listen: "127.0.0.1:0", admin: {{ listen: "127.0.0.1:0" {extra_top} }},
             domains: [{{ "domain-name": "*", "upstream-weighting": {weighting}, "drain-timeout": "10s",
                          upstreams: {} }}] }}"#,
        upstreams_json(upstreams)
    )
}

/// Effective weights by upstream name ("blue"/"green") from the admin listing.
async fn effective(gw: &TestGateway, blue: &FakeUpstream) -> (f64, f64) {
    let mut blue_w = 0.0;
    let mut green_w = 0.0;
    for entry in gw.upstream_listing().await {
        let w = entry["effectiveWeight"].as_f64().unwrap();
        if entry["serviceLocation"] == blue.url() {
            blue_w = w;
        } else {
            green_w = w;
        }
    }
    (blue_w, green_w)
}

async fn count_batch(gw: &TestGateway, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let reply = gw.get("/w").await;
        assert_eq!(reply.status, StatusCode::OK);
        *counts
            .entry(reply.headers["x-upstream"].to_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_from_blue_to_green_follows_the_schedule() {
    let (blue, green) = blue_and_green().await;
    let config = admin_config(
        &[(&blue.url(), 100), (&green.url(), 0)],
        r#"{ "step-count": 4, "step-duration": "1500ms" }"#,
        "",
    );
    let gw = TestGateway::start_ready(&config).await;
    let before = count_batch(&gw, 200).await;
    assert_eq!(
        before.get("green"),
        None,
        "weight 0 gets nothing while blue has weight"
    );

    let put = gw
        .put_upstreams(&[(&blue.url(), 0), (&green.url(), 100)])
        .await;
    assert_eq!(
        put.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&put.body)
    );
    assert_eq!(put.json()["reweighted"].as_array().unwrap().len(), 2);

    // Sample batches; keep the ones during which the effective weights did not move.
    let mut seen_steps = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (b0, g0) = effective(&gw, &blue).await;
        let counts = count_batch(&gw, 200).await;
        let (b1, g1) = effective(&gw, &blue).await;
        if (b0, g0) != (b1, g1) {
            continue;
        }
        let green_share = *counts.get("green").unwrap_or(&0) as f64 / 200.0;
        let expected = g0 / (b0 + g0);
        assert!(
            (green_share - expected).abs() <= 0.02,
            "effective {b0}:{g0} expects green {expected:.3}, measured {green_share:.3}"
        );
        if !seen_steps.contains(&g0) {
            seen_steps.push(g0);
        }
        if g0 == 100.0 {
            break;
        }
    }
    // The schedule itself is checked exactly on a paused clock
    // (`the_ramp_schedule_on_a_paused_clock`); here, that traffic follows the weights while
    // they move: at least one step between the ends, and the end, were measured.
    assert!(
        seen_steps.iter().any(|g| [25.0, 50.0, 75.0].contains(g)),
        "no intermediate step measured, saw {seen_steps:?}"
    );
    assert!(
        seen_steps.contains(&100.0),
        "the ramp's end, saw {seen_steps:?}"
    );
    let after = count_batch(&gw, 100).await;
    assert_eq!(after.get("blue"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retarget_mid_ramp_starts_from_the_current_weight() {
    let (blue, green) = blue_and_green().await;
    let config = admin_config(
        &[(&blue.url(), 100), (&green.url(), 100)],
        r#"{ "step-count": 10, "step-duration": "400ms" }"#,
        "",
    );
    let gw = TestGateway::start_ready(&config).await;
    let (blue_url, green_url) = (blue.url(), green.url());
    let set = |b: u32| {
        let gw = &gw;
        let (blue, green) = (blue_url.clone(), green_url.clone());
        async move { gw.put_upstreams(&[(&blue, b), (&green, 100)]).await }
    };
    set(0).await;
    assert_eventually!(effective(&gw, &blue).await.0 <= 60.0, "ramp under way");
    let (mid, _) = effective(&gw, &blue).await;
    assert!(mid > 0.0 && mid < 100.0, "{mid}");
    set(200).await;
    let (restart, _) = effective(&gw, &blue).await;
    assert!(
        restart <= mid + 0.001 && restart >= mid - 20.0,
        "fresh ramp starts near {mid}, got {restart}"
    );
    assert_eventually!(
        effective(&gw, &blue).await.0 == 200.0,
        "reaches the new target"
    );
    // Same target again: nothing moves.
    let again = set(200).await;
    assert_eq!(again.json()["unchanged"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_drains_in_flight_requests_then_drops() {
    let (blue, green) = blue_and_green().await;
    let config = admin_config(
        &[(&blue.url(), 1), (&green.url(), 1)],
        r#"{ "step-count": 1, "step-duration": "1s" }"#,
        "",
    );
    let gw = Arc::new(TestGateway::start_ready(&config).await);

    // Start slow requests until one lands on blue.
    let mut slow = None;
    for _ in 0..4 {
        let gw2 = gw.clone();
        let task = tokio::spawn(async move { gw2.get("/slow/2000").await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let blue_in_flight = gw.upstream_entry(&blue.url()).await.expect("blue listed")["inFlight"]
            .as_i64()
            .unwrap();
        if blue_in_flight > 0 {
            slow = Some(task);
            break;
        }
    }
    let slow = slow.expect("a slow request in flight to blue");
    let removal = gw.put_upstreams(&[(&green.url(), 1)]).await;
    assert_eq!(removal.json()["removed"][0], blue.url());
    let blue_entry = gw.upstream_entry(&blue.url()).await.expect("listed");
    assert_eq!(blue_entry["state"], "draining");
    assert_eq!(blue_entry["effectiveWeight"], 0.0);

    let before = blue.request_count();
    let counts = count_batch(&gw, 50).await;
    assert_eq!(
        counts.get("blue"),
        None,
        "new requests avoid the draining upstream"
    );
    assert_eq!(blue.request_count(), before);

    let reply = slow.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the in-flight request finished"
    );
    assert_eq!(reply.upstream(), "blue");
    assert_eventually!(
        gw.upstream_listing().await.len() == 1,
        "blue dropped after draining"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_adding_a_draining_upstream_revives_it() {
    let (blue, green) = blue_and_green().await;
    let config = admin_config(
        &[(&blue.url(), 1), (&green.url(), 1)],
        r#"{ "step-count": 1, "step-duration": "1s" }"#,
        "",
    );
    let gw = Arc::new(TestGateway::start_ready(&config).await);
    // Keep blue busy so it stays draining.
    let gw2 = gw.clone();
    let busy = tokio::spawn(async move {
        for _ in 0..6 {
            let _ = gw2.get("/slow/1500").await;
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    gw.put_upstreams(&[(&green.url(), 1)]).await;
    let revived = gw
        .put_upstreams(&[(&blue.url(), 3), (&green.url(), 1)])
        .await
        .json();
    let revived_or_added =
        revived["revived"].as_array().unwrap().len() + revived["added"].as_array().unwrap().len();
    assert_eq!(revived_or_added, 1, "{revived}");
    let blue_entry = gw.upstream_entry(&blue.url()).await.expect("listed");
    assert_eq!(blue_entry["state"], "serving");
    assert_eq!(blue_entry["effectiveWeight"], 3.0);
    busy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_put_changes_nothing_and_token_is_required() {
    let (blue, green) = blue_and_green().await;
    // SAFETY of the env var: unique name, read once at start.
    let config = admin_config(
        &[(&blue.url(), 3), (&green.url(), 1)],
        r#"{ "step-count": 1, "step-duration": "1s" }"#,
        r#", token: "s3cret""#,
    );
    let gw = TestGateway::start_ready(&config).await;
    assert_eq!(
        gw.admin(Method::GET, "/admin/domains", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        gw.admin(Method::GET, "/admin/domains", Some("nope"), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let domains = gw
        .admin(Method::GET, "/admin/domains", Some("s3cret"), None)
        .await;
    assert_eq!(domains.status, StatusCode::OK);
    assert_eq!(domains.json()[0]["upstreams"], 2);

    let bad = r#"[{"serviceType": "swagger2", "serviceLocation": "http://x/", "weight": 1},
                  {"serviceType": "nope", "serviceLocation": "http://y", "weight": -2}]"#;
    let reply = gw
        .admin(
            Method::PUT,
            "/admin/domains/*/upstreams",
            Some("s3cret"),
            Some(bad),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let errors = reply.json()["errors"].as_array().unwrap().clone();
    assert!(errors.len() >= 3, "every error listed: {errors:?}");
    let listing = gw
        .admin(
            Method::GET,
            "/admin/domains/*/upstreams",
            Some("s3cret"),
            None,
        )
        .await
        .json();
    assert_eq!(listing.as_array().unwrap().len(), 2);
    let counts = count_batch(&gw, 400).await;
    assert!(
        (296..=304).contains(&counts["blue"]),
        "3:1 untouched: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_file_applies_edits_and_ignores_invalid_ones() {
    let (blue, green) = blue_and_green().await;
    let dir = temp_dir("file-watch");
    let upstreams = dir.join("upstreams.json");
    std::fs::write(&upstreams, upstreams_json(&[(&blue.url(), 1)])).unwrap();
    let config_path = dir.join("buckler.json5");
    std::fs::write(&config_path, watched_file_config("100ms")).unwrap();
    let gw = TestGateway::start_file(&config_path).await;
    gw.wait_ready().await;
    assert_eq!(count_batch(&gw, 10).await["blue"], 10);

    // An editor's save: write a temp file, rename it over.
    let temp = dir.join(".upstreams.json.swp");
    std::fs::write(
        &temp,
        upstreams_json(&[(&blue.url(), 1), (&green.url(), 1)]),
    )
    .unwrap();
    std::fs::rename(&temp, &upstreams).unwrap();
    assert_eventually!(
        count_batch(&gw, 20).await.contains_key("green"),
        "green joins"
    );
    let joined = count_batch(&gw, 200).await;
    assert!((98..=102).contains(&joined["green"]), "1:1 {joined:?}");

    // Invalid edit: nothing changes, the error is counted.
    std::fs::write(
        &upstreams,
        r#"[{"serviceType": "swagger2", "serviceLocation": "ftp://bad"}]"#,
    )
    .unwrap();
    assert_eventually!(
        String::from_utf8_lossy(&gw.get("/metrics").await.body)
            .contains("buckler_config_reloads_total{result=\"error\"} 1"),
        "error counted"
    );
    let kept = count_batch(&gw, 200).await;
    assert!(
        (98..=102).contains(&kept["green"]),
        "previous set kept: {kept:?}"
    );
    assert_eq!(gw.upstream_listing().await.len(), 2);

    // The admin API writes through to the file.
    let put = gw.put_upstreams(&[(&green.url(), 1)]).await;
    assert_eq!(put.status, StatusCode::OK);
    let on_disk = std::fs::read_to_string(&upstreams).unwrap();
    assert!(
        on_disk.contains(&green.url()) && !on_disk.contains(&blue.url()),
        "{on_disk}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request() {
    let (blue, green) = blue_and_green().await;
    let dir = temp_dir("reloads");
    let config_path = dir.join("buckler.json5");
    let write_config = |blue_weight: u32| {
        std::fs::write(
            &config_path,
            admin_config(
                &[(&blue.url(), blue_weight), (&green.url(), 1)],
                r#"{ "step-count": 2, "step-duration": "50ms" }"#,
                "",
            ),
        )
        .unwrap();
    };
    write_config(1);
    let gw = Arc::new(TestGateway::start_file(&config_path).await);
    gw.wait_ready().await;

    let failures = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (gw, failures, sent, stop) = (gw.clone(), failures.clone(), sent.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if gw.get("/w").await.status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for i in 0..20 {
        write_config(1 + i % 3);
        let reply = gw.admin(Method::POST, "/admin/reload", None, None).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // A broken file is rejected and changes nothing.
    std::fs::write(&config_path, "{ listen: \"127.0.0.1:0\", domains: [ }").unwrap();
    let rejected = gw.admin(Method::POST, "/admin/reload", None, None).await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert!(
        rejected.json()["errors"][0]
            .as_str()
            .unwrap()
            .contains("buckler.json5:1:"),
        "{}",
        rejected.json()
    );
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) > 100, "load was running");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed across 20 reloads"
    );
    let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
    assert!(
        metrics.contains("buckler_config_reloads_total{result=\"ok\"} 20"),
        "{metrics}"
    );
    assert!(
        metrics.contains("buckler_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
}

/// The ramp schedule on Tokio's paused clock: the effective weights at every step boundary,
/// exactly, whatever the machine is doing (the ramp clock is Tokio's, so a paused test moves
/// it by hand). A fresh target mid-ramp starts from the weight in force.
#[tokio::test(start_paused = true)]
async fn the_ramp_schedule_on_a_paused_clock() {
    let (blue, green) = ("http://127.0.0.1:1", "http://127.0.0.1:2");
    let config = format!(
        r#"{{ listen: "127.0.0.1:0", domains: [{{ "domain-name": "*",
             "upstream-weighting": {{ "step-count": 4, "step-duration": "1500ms" }},
             upstreams: {} }}] }}"#,
        upstreams_json(&[(blue, 100), (green, 0)])
    );
    let config = buckler_config::parse(&config, std::path::Path::new("test.json5")).unwrap();
    let gateway = buckler_gateway::RunningGateway::start(config)
        .await
        .unwrap();
    let control = gateway.control().clone();
    let weights = || {
        control.publish();
        let table = control.table();
        let upstreams = &table.domains()[0].upstreams;
        (
            upstreams[0].effective_weight(),
            upstreams[1].effective_weight(),
        )
    };
    // Through the domain's source, as the admin API writes (the static source answers at
    // once, so the paused clock does not move meanwhile).
    let set = |b: u32, g: u32| {
        let control = control.clone();
        async move {
            control
                .write_upstreams("*", &upstreams_json(&[(blue, b), (green, g)]))
                .await
                .unwrap()
        }
    };
    let step = Duration::from_millis(1500);

    set(0, 100).await;
    assert_eq!(
        weights(),
        (100.0, 0.0),
        "nothing moves before the first step"
    );
    tokio::time::advance(step - Duration::from_millis(1)).await;
    assert_eq!(weights(), (100.0, 0.0));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(weights(), (75.0, 25.0));
    tokio::time::advance(step).await;
    assert_eq!(weights(), (50.0, 50.0));

    // Back to blue mid-ramp: a fresh four-step ramp from 50:50.
    set(100, 0).await;
    assert_eq!(weights(), (50.0, 50.0));
    tokio::time::advance(step).await;
    assert_eq!(weights(), (62.5, 37.5));
    tokio::time::advance(step * 3).await;
    assert_eq!(weights(), (100.0, 0.0));
    tokio::time::advance(step * 10).await;
    assert_eq!(weights(), (100.0, 0.0), "a finished ramp stays put");
}
