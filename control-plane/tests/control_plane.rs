//! The control plane on loopback, driving a Sinew client to real HTTP
//! servers: registrations, mesh file edits, an invalid file, a restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;
#[path = "../../tests/resilience/support.rs"]
mod support;

use bytes::Bytes;
use common::{RawStream, TOKEN, admin, scratch, start, within};
use http::{Method, Request, StatusCode};
use http_body_util::Empty;
use serde_json::{Value, json};
use sinew::mesh::{HttpClient, Mesh};
use sinew_control_plane::ControlPlane;
use std::net::SocketAddr;
use support::{body_text, named};
use tower::ServiceExt;

fn mesh_file(static_endpoints: &[SocketAddr]) -> String {
    let endpoints: Vec<String> = static_endpoints
        .iter()
        .map(|a| format!("{{ address: \"{a}\" }}"))
        .collect();
    format!(
        "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: reviews-v1 }}]\n        timeout: 5s\nclusters:\n  reviews-v1:\n    lb: {{ policy: round_robin }}\n    endpoints: [{}]\n",
        endpoints.join(", ")
    )
}

async fn get(client: &HttpClient<Empty<Bytes>>) -> String {
    let request = Request::get("http://reviews/").body(Empty::new()).unwrap();
    let response = within("an answer", client.clone().oneshot(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    within("a body", body_text(response.into_body())).await
}

/// Requests until `name` answers; every request must succeed.
async fn until_served_by(client: &HttpClient<Empty<Bytes>>, name: &str) {
    within(&format!("{name} answering"), async {
        while get(client).await != name {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Waits until the client's configuration version moves past `version`.
async fn newer_than(mesh: &Mesh, version: u64) {
    let mut versions = mesh.versions();
    within("a newer version", async {
        while *versions.borrow_and_update() <= version {
            versions.changed().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn a_sinew_client_follows_registrations_file_edits_and_a_restart() {
    let dir = scratch("follow");
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    std::fs::write(dir.join("mesh.yaml"), mesh_file(&[a.addr])).unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let xds = cp.xds_addr();
    let mesh = within(
        "the mesh",
        Mesh::builder()
            .control_plane(&format!("http://{xds}"))
            .build(),
    )
    .await
    .unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    assert_eq!(get(&client).await, "a");

    // Registration: refused without the token, refused with a bad
    // address (naming the field), accepted with both right.
    let registration =
        json!({ "name": "reviews-v1", "address": b.addr.to_string(), "ttl_seconds": 60 });
    let (status, _) = admin(
        &cp,
        Method::POST,
        "/v1/registrations",
        None,
        registration.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let bad = json!({ "name": "reviews-v1", "address": "b:80" });
    let (status, answer) = admin(&cp, Method::POST, "/v1/registrations", Some(TOKEN), bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer["error"],
        "invalid registration: address: `b:80` is not an ip:port address"
    );
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/registrations",
        Some(TOKEN),
        registration,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let lease = answer["lease"].as_str().unwrap().to_owned();
    until_served_by(&client, "b").await;

    // The mesh file drops the static endpoint: only the registered one
    // serves.
    let version = *mesh.versions().borrow();
    std::fs::write(dir.join("mesh.yaml"), mesh_file(&[])).unwrap();
    newer_than(&mesh, version).await;
    for _ in 0..20 {
        assert_eq!(get(&client).await, "b");
    }

    // An invalid file: the previous stays in force; the error names the
    // field, in the API too.
    std::fs::write(
        dir.join("mesh.yaml"),
        "clusters:\n  reviews-v1:\n    lb: { policy: fastest }\n",
    )
    .unwrap();
    let error = within("the file's rejection", async {
        loop {
            if let Some(error) = cp.mesh_file_status().error {
                break error;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        error.starts_with("clusters.reviews-v1.lb.policy: unknown variant `fastest`"),
        "{error}"
    );
    let (_, health) = admin(&cp, Method::GET, "/v1/health", None, Value::Null).await;
    assert_eq!(health["mesh_file"]["error"], error.as_str());
    assert_eq!(get(&client).await, "b");

    // Which client holds which version.
    let (_, clients) = admin(&cp, Method::GET, "/v1/clients", None, Value::Null).await;
    let sinew_client = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["user_agent"] == "sinew")
        .expect("the Sinew client is listed");
    let published = cp.published().version.to_string();
    assert_eq!(
        sinew_client["types"]["ClusterLoadAssignment"]["acked"],
        published.as_str()
    );

    // A restart on the same port, with the same store: the client keeps
    // serving meanwhile, and the registration survives.
    cp.shutdown().await;
    assert_eq!(get(&client).await, "b");
    std::fs::write(dir.join("mesh.yaml"), mesh_file(&[a.addr])).unwrap();
    let cp = start(&dir, xds).await;
    let (_, leases) = admin(&cp, Method::GET, "/v1/registrations", None, Value::Null).await;
    assert_eq!(leases[0]["lease"], lease.as_str());
    until_served_by(&client, "a").await;

    // Deregistration takes the endpoint out.
    let path = format!("/v1/registrations/{lease}");
    let version = *mesh.versions().borrow();
    let (status, _) = admin(&cp, Method::DELETE, &path, Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    newer_than(&mesh, version).await;
    for _ in 0..20 {
        assert_eq!(get(&client).await, "a");
    }
    let (status, _) = admin(&cp, Method::PUT, &path, Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a renewal of an ended lease");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_library_registers_keeps_its_lease_and_deregisters() {
    let dir = scratch("library");
    let (a, _) = named("a").await;
    std::fs::write(dir.join("mesh.yaml"), mesh_file(&[])).unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let url = format!("http://{}", cp.admin_addr());
    let leases = || async {
        let (_, leases) = admin(&cp, Method::GET, "/v1/registrations", None, Value::Null).await;
        leases.as_array().unwrap().clone()
    };

    // A wrong token is refused with the control plane's reason.
    let refused = within(
        "a refusal",
        sinew::mesh::Registration::builder(&url, "reviews-v1", a.addr)
            .token("wrong")
            .start(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, sinew::mesh::RegistrationError::Refused { status: 401, message } if message == "wrong token"),
        "{refused}"
    );

    let registration = within(
        "a registration",
        sinew::mesh::Registration::builder(&url, "reviews-v1", a.addr)
            .token(TOKEN)
            .metadata("version", "v1")
            .heartbeat_interval(std::time::Duration::from_millis(10))
            .start(),
    )
    .await
    .unwrap();
    let first = registration.lease();
    let listed = leases().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["lease"], first.as_str());
    assert_eq!(listed[0]["registration"]["metadata"]["version"], "v1");

    // The control plane loses the lease: the next heartbeat registers
    // again, under a new lease.
    let path = format!("/v1/registrations/{first}");
    let (status, _) = admin(&cp, Method::DELETE, &path, Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    within("a new lease", async {
        loop {
            // The client learns its new lease when the answer arrives,
            // a moment after the control plane lists it.
            let listed = leases().await;
            if listed.len() == 1
                && listed[0]["lease"] != first.as_str()
                && listed[0]["lease"] == registration.lease().as_str()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;

    within("the deregistration", registration.deregister())
        .await
        .unwrap();
    assert!(leases().await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Everything the mesh file says reaches a Sinew client unchanged (what
/// xDS cannot carry, `sinew check` refuses): the control plane's
/// resources, read back by Sinew's own discovery client, give the file's
/// routes and clusters again. Every field has a value other than its
/// default somewhere.
#[tokio::test]
async fn the_mesh_file_reaches_a_sinew_client_unchanged() {
    let dir = scratch("fidelity");
    let yaml = r#"
services:
  reviews:
    routes:
      - match: { path: { prefix: /api }, method: GET, headers: [{ name: x-canary, exact: "1" }, { name: x-debug, present: false }] }
        split: [{ cluster: v2 }]
        timeout: 2s
        retry:
          max_attempts: 3
          per_try_timeout: 500ms
          backoff: { base: 10ms, max: 100ms }
          retry_on: { statuses: [409, 503], grpc: [unavailable], errors: true }
        hash_header: x-user
        fault: { abort: { http_status: 503, percent: 12.5 }, delay: { fixed: 20ms, percent: 1 }, max_active: 10 }
        classifier: strict-grpc
      - match: { path: { regex: "/v[0-9]+/.*" } }
        split: [{ cluster: v1, weight: 90 }, { cluster: v2, weight: 10 }, { cluster: v3, weight: 5 }]
        retry: { max_attempts: 2, hedge: { delay: 50ms, max_attempts: 2 }, retry_on: { grpc: [unavailable] } }
        classifier: default
      - match: { path: { exact: /exact }, headers: [{ name: x-a, prefix: p }, { name: x-b, regex: "r+" }] }
        split: [{ cluster: v4, weight: 1 }, { cluster: v5, weight: 2 }]
        fault: { abort: { grpc_status: UNAVAILABLE, percent: 50 } }
      - match: { path: { prefix: /retired } }
        fail: "retired: use /v2"
        classifier: strict-grpc
clusters:
  v1:
    protocol: http2
    lb: { policy: ring_hash, min_ring_size: 2048 }
    thresholds: { max_requests: 100, max_pending: 10, max_retries: 2 }
    outlier_detection:
      consecutive_5xx: 3
      consecutive_gateway_failure: 4
      consecutive_local_origin_failure: 6
      interval: 5s
      base_ejection_time: 10s
      max_ejection_time: 60s
      max_ejection_percent: 20
      success_rate: { minimum_hosts: 7, request_volume: 50, stdev_factor: 1.5 }
      failure_percentage: { threshold: 70, minimum_hosts: 3, request_volume: 20 }
    locality_lb: { prefer_local_zone: false, failover_threshold_percent: 55, panic_threshold_percent: 40 }
    identities: [spiffe://example.org/ns/shop/sa/reviews, spiffe://example.org/ns/shop/sa/reviews-v1]
    breaker:
      consecutive_failures: 3
      failure_rate: { threshold: 0.25, window: 30s, min_requests: 10 }
      open_for: 2500ms
      half_open_probes: 2
    classifier: strict-grpc
    endpoints:
      - { address: "127.0.0.1:1001", locality: { region: eu, zone: a } }
      - { address: "127.0.0.1:1002", weight: 3, locality: { region: eu, zone: b }, priority: 1 }
  v2:
    lb: { policy: round_robin }
    mtls: true
    locality_lb: { failover_threshold_percent: 0 }
    breaker: { consecutive_failures: ~, failure_rate: { threshold: 1 } }
    endpoints: [{ address: "127.0.0.1:1003", health: draining }]
  v3:
    lb: { policy: maglev }
    endpoints: [{ address: "127.0.0.1:1004", health: unhealthy }]
  v4:
    lb: { policy: least_request }
    endpoints: [{ address: "[::1]:1005" }]
  v5:
    lb: { policy: random }
    endpoints: [{ address: "127.0.0.1:1006" }]
"#;
    std::fs::write(dir.join("mesh.yaml"), yaml).unwrap();
    let file = sinew::config::MeshConfig::from_yaml(yaml).unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let strict =
        sinew::classify::StatusClassifier::default().fail_on_grpc(sinew::grpc::Code::NOT_FOUND);
    let mesh = within(
        "the mesh",
        Mesh::builder()
            .classifier("strict-grpc", strict)
            .control_plane(&format!("http://{}", cp.xds_addr()))
            .build(),
    )
    .await
    .unwrap();
    let _client = mesh.http_client::<Empty<Bytes>>("reviews");
    let mut versions = mesh.versions();
    let seen = within("the whole mesh", async {
        loop {
            let seen = mesh.snapshot().to_config();
            let endpoints: usize = seen.clusters.values().map(|c| c.endpoints.len()).sum();
            if seen.services.contains_key("reviews") && endpoints == 6 {
                break seen;
            }
            versions.changed().await.unwrap();
        }
    })
    .await;
    assert_eq!(seen.services, file.services);
    for (name, cluster) in &file.clusters {
        let mut got = seen.clusters[name].clone();
        // Locality weights are folded into endpoint weights, scaled by a
        // thousand to keep precision.
        for e in &mut got.endpoints {
            e.weight /= 1000;
        }
        got.endpoints.sort_by(|a, b| a.address.cmp(&b.address));
        assert_eq!(&got, cluster, "cluster {name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_change_pushes_only_the_assignment_that_changed_and_nacks_are_recorded() {
    use sinew_control_plane::generate::{CLUSTER, ENDPOINTS};
    let dir = scratch("push");
    std::fs::write(
        dir.join("mesh.yaml"),
        "clusters:\n  c1:\n    endpoints: [{ address: \"127.0.0.1:1001\" }]\n  c2:\n    endpoints: [{ address: \"127.0.0.1:1002\" }]\n",
    )
    .unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let mut stream = RawStream::open(cp.xds_addr()).await;
    stream.request(CLUSTER, &["c1", "c2"], "", "", None);
    stream.request(ENDPOINTS, &["c1", "c2"], "", "", None);
    for _ in 0..2 {
        let (type_url, version, nonce, _) = stream.next().await;
        stream.request(&type_url, &["c1", "c2"], &version, &nonce, None);
    }

    let register = |address: &'static str, cluster: &'static str| {
        let cp = &cp;
        async move {
            let body = json!({ "name": cluster, "address": address });
            let (status, _) = admin(cp, Method::POST, "/v1/registrations", Some(TOKEN), body).await;
            assert_eq!(status, StatusCode::CREATED);
        }
    };
    register("127.0.0.1:2001", "c1").await;
    let (type_url, version, nonce, names) = stream.next().await;
    assert_eq!(
        (type_url.as_str(), names),
        (ENDPOINTS, vec!["c1".to_owned()])
    );
    stream.request(ENDPOINTS, &["c1", "c2"], &version, &nonce, None);

    // The next push, for c2, comes straight after: nothing else was sent.
    register("127.0.0.1:2002", "c2").await;
    let (type_url, version, nonce, names) = stream.next().await;
    assert_eq!(
        (type_url.as_str(), names),
        (ENDPOINTS, vec!["c2".to_owned()])
    );

    // A NACK of it is recorded, with the client's message; the ACKed
    // version stays the previous one.
    stream.request(ENDPOINTS, &["c1", "c2"], "", &nonce, Some("c2: not today"));
    let view = within("the NACK recorded", async {
        loop {
            let (_, clients) = admin(&cp, Method::GET, "/v1/clients", None, Value::Null).await;
            let eds = clients[0]["types"]["ClusterLoadAssignment"].clone();
            if eds["last_nack"].is_object() {
                break eds;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(view["last_nack"]["version"], version.as_str());
    assert_eq!(view["last_nack"]["message"], "c2: not today");
    assert_ne!(view["acked"], version.as_str());
    assert_eq!(clients_node(&cp).await, "raw");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn clients_node(cp: &ControlPlane) -> String {
    cp.clients()[0].node_id.clone()
}

#[tokio::test]
async fn the_admin_api_refuses_oversized_or_unknown_input() {
    let dir = scratch("input");
    std::fs::write(dir.join("mesh.yaml"), "{}\n").unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let huge =
        json!({ "name": "x", "address": "127.0.0.1:1", "metadata": { "k": "v".repeat(70_000) } });
    let (status, answer) = admin(&cp, Method::POST, "/v1/registrations", Some(TOKEN), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let extra = json!({ "name": "x", "address": "127.0.0.1:1", "weight": 3 });
    let (status, answer) = admin(&cp, Method::POST, "/v1/registrations", Some(TOKEN), extra).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `weight`"),
        "{answer}"
    );
    let (status, _) = admin(
        &cp,
        Method::POST,
        "/v1/registrations",
        Some("nope"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin(&cp, Method::GET, "/v1/nothing", None, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin(
        &cp,
        Method::DELETE,
        "/v1/services",
        Some(TOKEN),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // Without a token configured, writes are refused.
    let closed = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let body = json!({ "name": "x", "address": "127.0.0.1:1" });
    let (status, answer) = admin(
        &closed,
        Method::POST,
        "/v1/registrations",
        Some(TOKEN),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer["error"],
        "writes are refused: the control plane has no token configured"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_expired_lease_takes_its_endpoint_out() {
    let dir = scratch("expiry");
    std::fs::write(dir.join("mesh.yaml"), "{}\n").unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let mut versions = cp.versions();
    let body = json!({ "name": "reviews", "address": "127.0.0.1:1001", "ttl_seconds": 1 });
    let (status, _) = admin(&cp, Method::POST, "/v1/registrations", Some(TOKEN), body).await;
    assert_eq!(status, StatusCode::CREATED);
    let registered = versions.borrow_and_update().clone();
    assert_eq!(registered.clusters["reviews"].endpoints.len(), 1);
    // No heartbeat: one second later the lease runs out.
    within("the expiry", versions.changed()).await.unwrap();
    let expired = versions.borrow_and_update().clone();
    assert!(expired.version > registered.version);
    assert!(!expired.clusters.contains_key("reviews"));
    let (_, leases) = admin(&cp, Method::GET, "/v1/registrations", None, Value::Null).await;
    assert_eq!(leases, json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}
