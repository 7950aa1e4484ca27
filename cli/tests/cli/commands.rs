//! The commands against an ADS server and HTTP servers on loopback.

use crate::server::{self, Ads, CLUSTER, ENDPOINTS, LISTENER, ROUTE};
use crate::sinew;
use crate::support::{self, named};
use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;

#[tokio::test]
async fn call_and_config_through_a_control_plane() {
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let ads = Ads::default();
    ads.update(|r| {
        r.put(LISTENER, "reviews", server::listener("reviews", "reviews"));
        r.put(
            ROUTE,
            "reviews",
            server::route_config("reviews", &[("reviews-v1", 1)]),
        );
        r.put(
            CLUSTER,
            "reviews-v1",
            server::eds_cluster("reviews-v1", LbPolicy::RoundRobin),
        );
        r.put(
            ENDPOINTS,
            "reviews-v1",
            server::assignment("reviews-v1", &[a.addr, b.addr]),
        );
    });
    let control = ads.serve().await;
    let url = control.url("");

    let (code, out, err) = sinew(&[
        "call",
        "reviews",
        "--control-plane",
        &url,
        "--count",
        "10",
        "--concurrency",
        "2",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], 10);
    assert_eq!(report["served_by"][a.addr.to_string()], 5, "{report}");
    assert_eq!(report["served_by"][b.addr.to_string()], 5, "{report}");

    // A service the control plane does not have: every request fails with
    // the reason, and the exit code says so.
    let (code, out, _) = sinew(&[
        "call",
        "ratings",
        "--control-plane",
        &url,
        "--count",
        "2",
        "--wait",
        "1",
        "--json",
    ])
    .await;
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["failed"], 2);
    let reason = report["failures"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("service `ratings` is not configured"),
        "{reason}"
    );

    let (code, out, err) = sinew(&["config", "reviews", "--control-plane", &url]).await;
    assert_eq!(code, 0, "{err}");
    let dump: serde_json::Value = serde_json::from_str(&out).unwrap();
    let resources = dump["status"]["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 4);
    assert!(resources.iter().all(|r| r["state"] == "acked"), "{dump}");
    assert_eq!(
        dump["config"]["clusters"]["reviews-v1"]["endpoints"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let (code, _, err) = sinew(&["call", "reviews"]).await;
    assert_eq!(code, 2);
    // Clap's wording: the two flags, one of which is required.
    assert!(
        err.contains("required arguments were not provided")
            && err.contains("<--control-plane <URL>|--bootstrap <FILE>>"),
        "{err}"
    );
}

#[tokio::test]
async fn check_validates_a_mesh_file_offline() {
    let dir = std::env::temp_dir().join(format!("sinew-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        "services:\n  reviews:\n    routes: [{ split: [{ cluster: v1 }] }]\nclusters:\n  v1:\n    endpoints: [{ address: \"127.0.0.1:9001\" }]\n",
    )
    .unwrap();
    let (code, out, _) = sinew(&["check", good.to_str().unwrap()]).await;
    assert_eq!(code, 0);
    assert!(
        out.ends_with("valid (1 services, 1 clusters, 1 static endpoints)\n"),
        "{out}"
    );

    // A served service taking mTLS callers without policies: a warning.
    let open = dir.join("open.yaml");
    std::fs::write(
        &open,
        "services:\n  reviews:\n    inbound: { mtls: permissive }\n  ratings:\n    inbound: { authorization: [{ name: a, action: allow, rules: [{}] }] }\n  plain:\n    inbound: { mtls: disabled }\n",
    )
    .unwrap();
    // (The control plane refuses inbound blocks it cannot carry: the
    // warning comes whatever the verdict.)
    let (_, _, err) = sinew(&["check", open.to_str().unwrap()]).await;
    assert!(
        err.contains(
            "warning: services.reviews.inbound.authorization: none, so any workload of a trusted trust domain may call `reviews`\n"
        ),
        "{err}"
    );
    assert_eq!(err.matches("warning").count(), 1, "{err}");

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "services:\n  reviews:\n    routes: [{ split: [{ cluster: v2 }] }]\nclusters:\n  v1: {}\n",
    )
    .unwrap();
    let (code, _, err) = sinew(&["check", bad.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        err.ends_with("services.reviews.routes[0].split[0].cluster: unknown cluster `v2`\n"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sinew control-plane` serves the mesh file to `sinew call`, and takes a
/// registration with the token from its token file.
#[tokio::test]
async fn the_control_plane_command_serves_a_mesh_file_and_registrations() {
    use tokio::io::AsyncBufReadExt;
    let dir = std::env::temp_dir().join(format!("sinew-cp-cmd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let mesh = dir.join("mesh.yaml");
    std::fs::write(
        &mesh,
        format!(
            "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews-v1 }}] }}]\nclusters:\n  reviews-v1:\n    lb: {{ policy: round_robin }}\n    endpoints: [{{ address: \"{}\" }}]\n",
            a.addr
        ),
    )
    .unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args([
            "control-plane",
            "--mesh",
            mesh.to_str().unwrap(),
            "--xds",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
            "--max-leases-per-cluster",
            "1",
            "--insecure-xds",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.next_line().await.unwrap().unwrap();
    // "sinew control plane: xDS on ADDR, admin on http://ADDR"
    let xds = banner
        .split("xDS on ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let admin = banner.split("admin on ").nth(1).unwrap().to_owned();

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<String>();
    let body = format!(r#"{{"name":"reviews-v1","address":"{}"}}"#, b.addr);
    let request = http::Request::post(format!("{admin}/v1/registrations"))
        .header("authorization", "Bearer s3cret")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let answer = support::body_text(response.into_body()).await;
    assert_eq!(status, http::StatusCode::CREATED, "{answer}");

    let url = format!("http://{xds}");
    let (code, out, err) = sinew(&[
        "call",
        "reviews",
        "--control-plane",
        &url,
        "--count",
        "10",
        "--json",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["served_by"][a.addr.to_string()], 5, "{report}");
    assert_eq!(report["served_by"][b.addr.to_string()], 5, "{report}");

    // The limit given on the command line holds: a second lease in the
    // cluster is refused, naming the field.
    let (c, _) = named("c").await;
    let request = http::Request::post(format!("{admin}/v1/registrations"))
        .header("authorization", "Bearer s3cret")
        .header("content-type", "application/json")
        .body(format!(r#"{{"name":"reviews-v1","address":"{}"}}"#, c.addr))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let answer = support::body_text(response.into_body()).await;
    assert_eq!(status, http::StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert!(answer.contains("name"), "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn call_explains_without_sending_and_reports_each_decision() {
    let (a, served_a) = named("a").await;
    let (b, served_b) = named("b").await;
    let (_ads, control) = crate::control_plane("reviews", &[a.addr, b.addr]).await;
    let url = control.url("");

    let (code, out, err) = sinew(&["call", "reviews", "--control-plane", &url, "--explain"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("service reviews (config version "), "{out}");
    assert!(out.contains("routes[0]"), "{out}");
    assert!(
        out.contains("cluster reviews-v1: weight 1, 100.0%"),
        "{out}"
    );
    for endpoint in [a.addr, b.addr] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{endpoint} ")))
            .unwrap_or_else(|| panic!("{endpoint} in {out}"));
        assert!(line.contains("Healthy eu/eu-1a in rotation"), "{out}");
    }
    // Explaining sent nothing.
    let served = || {
        served_a.load(std::sync::atomic::Ordering::SeqCst)
            + served_b.load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(served(), 0);

    // A service the control plane does not have: why, and exit code 1.
    let (code, out, _) = sinew(&[
        "call",
        "ratings",
        "--control-plane",
        &url,
        "--explain",
        "--wait",
        "1",
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("GET / to ratings cannot be routed: service `ratings` is not configured"),
        "{out}"
    );

    // `--report` prints each request's decision.
    let (code, out, err) = sinew(&["call", "reviews", "--control-plane", &url, "--report"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("service reviews version "), "{out}");
    assert!(out.contains("cluster reviews-v1"), "{out}");
    assert!(out.contains("attempt 1 (first) to "), "{out}");
    assert!(out.contains(": 200"), "{out}");
    assert_eq!(served(), 1);
}
