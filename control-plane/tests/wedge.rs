//! The control plane cannot be wedged: what it accepts it can always
//! publish, a failure to publish or to store shows in `/v1/health`, and a
//! store holding something the mesh cannot take never becomes an empty
//! mesh.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;

use common::{TOKEN, admin, scratch, start, within};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sinew_control_plane::ControlPlane;
use std::sync::Arc;

async fn register(cp: &ControlPlane, name: &str, address: &str) -> (StatusCode, Value) {
    let body = json!({ "name": name, "address": address });
    admin(cp, Method::POST, "/v1/registrations", Some(TOKEN), body).await
}

/// Waits until the published version passes `version`.
async fn past(cp: &ControlPlane, version: u64) -> Arc<sinew_control_plane::state::Published> {
    let mut versions = cp.versions();
    within("a newer version", async {
        loop {
            let current = versions.borrow_and_update().clone();
            if current.version > version {
                break current;
            }
            versions.changed().await.unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn one_address_written_two_ways_is_one_instance_and_publishing_goes_on() {
    let dir = scratch("two-ways");
    std::fs::write(
        dir.join("mesh.yaml"),
        "clusters:\n  c:\n    endpoints: [{ address: \"[0:0:0:0:0:0:0:2]:80\" }]\n",
    )
    .unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let (status, _) = register(&cp, "c", "[::1]:80").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, answer) = register(&cp, "c", "[0:0:0:0:0:0:0:1]:80").await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // The file's own address, written another way: not added twice.
    let (status, _) = register(&cp, "c", "[::2]:80").await;
    assert_eq!(status, StatusCode::CREATED);
    let published = cp.published();
    let addresses: Vec<&str> = published.clusters["c"]
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addresses, ["[0:0:0:0:0:0:0:2]:80", "[::1]:80"]);
    let (_, leases) = admin(&cp, Method::GET, "/v1/registrations", None, Value::Null).await;
    assert_eq!(leases.as_array().unwrap().len(), 2, "{leases}");

    // Later changes are still published: another registration, a file
    // edit.
    let version = published.version;
    let (status, _) = register(&cp, "d", "127.0.0.1:81").await;
    assert_eq!(status, StatusCode::CREATED);
    let after = past(&cp, version).await;
    assert!(after.clusters.contains_key("d"));
    std::fs::write(
        dir.join("mesh.yaml"),
        "clusters:\n  c: {}\n  e:\n    endpoints: [{ address: \"127.0.0.1:82\" }]\n",
    )
    .unwrap();
    let edited = past(&cp, after.version).await;
    assert!(edited.clusters.contains_key("e"));
    assert_eq!(
        edited.clusters["c"].endpoints.len(),
        2,
        "[::1]:80 and [::2]:80"
    );
    let (_, health) = admin(&cp, Method::GET, "/v1/health", None, Value::Null).await;
    assert_eq!(health["status"], "serving", "{health}");
    assert_eq!(health["publish"]["failures"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_store_holding_what_the_mesh_cannot_take_still_serves_the_mesh() {
    let dir = scratch("bad-store");
    std::fs::write(
        dir.join("mesh.yaml"),
        "services:\n  s:\n    routes: [{ split: [{ cluster: c }] }]\nclusters:\n  c:\n    endpoints: [{ address: \"127.0.0.1:80\" }]\n",
    )
    .unwrap();
    // Written by an earlier version: one address two ways, a lease that
    // does not decode, and one that does not validate.
    std::fs::write(
        dir.join("registry.json"),
        r#"{"leases": {
            "a": {"name": "c", "address": "[::1]:80"},
            "b": {"name": "c", "address": "[0:0:0:0:0:0:0:1]:80"},
            "x": {"name": "c", "address": 80},
            "y": {"name": "c", "address": "c:80"}
        }}"#,
    )
    .unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let published = cp.published();
    assert!(published.version >= 1);
    assert!(published.services.contains_key("s"), "the file is served");
    let addresses: Vec<&str> = published.clusters["c"]
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    assert_eq!(addresses, ["127.0.0.1:80", "[::1]:80"]);
    let (_, health) = admin(&cp, Method::GET, "/v1/health", None, Value::Null).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let dropped = health["store"]["dropped"].as_array().unwrap();
    assert_eq!(dropped.len(), 2, "{health}");
    assert!(
        dropped
            .iter()
            .any(|d| d.as_str().unwrap().starts_with("lease y: address: ")),
        "{health}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_store_that_cannot_be_written_is_an_error_in_health() {
    let dir = scratch("unwritable");
    std::fs::write(dir.join("mesh.yaml"), "{}\n").unwrap();
    let cp = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .mesh_file(dir.join("mesh.yaml"))
        .registry_store(dir.join("missing").join("registry.json"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let (status, answer) = register(&cp, "c", "127.0.0.1:80").await;
    // Served (memory has it), and the answer says it is not stored.
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(answer["stored"], false, "{answer}");
    assert!(cp.published().clusters.contains_key("c"));
    let (_, health) = admin(&cp, Method::GET, "/v1/health", None, Value::Null).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["store"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot write"),
        "{health}"
    );
    // Once the directory exists, the next attempt (a retry, every second)
    // writes it, and the error clears.
    std::fs::create_dir_all(dir.join("missing")).unwrap();
    within("the store written", async {
        loop {
            let (_, health) = admin(&cp, Method::GET, "/v1/health", None, Value::Null).await;
            if health["store"]["error"].is_null() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(dir.join("missing").join("registry.json").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(unix)]
#[tokio::test]
async fn the_store_is_private_and_written_before_the_answer() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("private");
    std::fs::write(dir.join("mesh.yaml"), "{}\n").unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let (status, answer) = register(&cp, "c", "[0:0::1]:80").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(answer["stored"], true);
    let path = dir.join("registry.json");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(stored.contains("\"[::1]:80\""), "normalised: {stored}");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A registration re-encodes its own cluster only: every other
/// cluster's resources are the very same between versions.
#[tokio::test]
async fn a_registration_re_encodes_only_its_cluster() {
    use sinew_control_plane::generate::{CLUSTER, ENDPOINTS};
    let dir = scratch("o-change");
    std::fs::write(dir.join("mesh.yaml"), "{}\n").unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    for i in 0..20 {
        let (status, _) = register(&cp, &format!("c{i}"), &format!("127.0.0.1:{}", 1000 + i)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let before = cp.published();
    let (status, _) = register(&cp, "c3", "127.0.0.1:2000").await;
    assert_eq!(status, StatusCode::CREATED);
    let after = past(&cp, before.version).await;
    for type_url in [CLUSTER, ENDPOINTS] {
        for (name, encoded) in &after.resources[type_url] {
            let same = Arc::ptr_eq(encoded, &before.resources[type_url][name]);
            assert_eq!(same, name != "c3", "{name} {type_url}");
        }
    }
    assert!(Arc::ptr_eq(&after.clusters["c4"], &before.clusters["c4"]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A response larger than gRPC's usual 4 MiB: the control plane sends it
/// and Sinew's client takes it, both sides agreeing on the largest
/// message.
#[tokio::test]
async fn client_and_server_agree_on_the_largest_message() {
    use sinew::config::{ClusterConfig, EndpointConfig, Locality, MeshConfig};
    assert_eq!(
        sinew::xds::MAX_MESSAGE_BYTES,
        sinew_control_plane::DEFAULT_MAX_MESSAGE_BYTES
    );
    // 15,000 endpoints, each in a zone of its own with a long name:
    // about 4.5 MB in one assignment.
    let endpoints: Vec<EndpointConfig> = (0..15_000u32)
        .map(|i| EndpointConfig {
            locality: Locality {
                region: "r".repeat(100),
                zone: format!("{i:0>200}"),
            },
            ..EndpointConfig::new(format!("127.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255))
        })
        .collect();
    let mut mesh =
        MeshConfig::from_yaml("services:\n  big:\n    routes: [{ split: [{ cluster: big }] }]\n")
            .unwrap();
    mesh.clusters.insert(
        "big".to_owned(),
        ClusterConfig {
            endpoints,
            ..ClusterConfig::default()
        },
    );
    let cp = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .mesh(mesh)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let size = cp.published().resources[sinew_control_plane::generate::ENDPOINTS]["big"]
        .any
        .value
        .len();
    assert!(size > 4 << 20, "{size} bytes");
    let client = within(
        "the mesh",
        sinew::mesh::Mesh::builder()
            .control_plane(&format!("http://{}", cp.xds_addr()))
            .build(),
    )
    .await
    .unwrap();
    let _big = client.http_client::<http_body_util::Empty<bytes::Bytes>>("big");
    let mut versions = client.versions();
    within("15,000 endpoints", async {
        loop {
            let seen = client.snapshot().to_config();
            if seen.clusters.get("big").map(|c| c.endpoints.len()) == Some(15_000) {
                break;
            }
            versions.changed().await.unwrap();
        }
    })
    .await;
}

/// The value of `name`, a counter, in the recorder's snapshot.
fn counter(snapshotter: &metrics_util::debugging::Snapshotter, name: &str) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

// Single-threaded (the default): the control plane's tasks record to
// the recorder set on this thread.
#[tokio::test]
async fn failures_to_publish_or_store_show_in_health_and_metrics() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let dir = scratch("failures");
    std::fs::write(dir.join("mesh.yaml"), "clusters:\n  c: {}\n").unwrap();
    let cp = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .mesh_file(dir.join("mesh.yaml"))
        .registry_store(dir.join("missing").join("registry.json"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .reload_interval(std::time::Duration::from_millis(20))
        .limits(sinew_control_plane::Limits {
            max_message_bytes: 4096,
            ..Default::default()
        })
        .start()
        .await
        .unwrap();
    let (status, _) = register(&cp, "c", "127.0.0.1:80").await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        counter(
            &snapshotter,
            "sinew_control_plane_store_write_failures_total"
        ) >= 1
    );

    // A file whose clusters no longer fit in one response: not published,
    // and said so.
    let version = cp.published().version;
    let clusters: String = (0..100).map(|i| format!("  cluster-{i}: {{}}\n")).collect();
    std::fs::write(dir.join("mesh.yaml"), format!("clusters:\n{clusters}")).unwrap();
    let error = within("the rejection", async {
        loop {
            if let Some(error) = cp.mesh_file_status().error {
                break error;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(error.contains("exceed the largest xDS message"), "{error}");
    assert_eq!(cp.published().version, version);
    let (_, health) = admin(&cp, Method::GET, "/v1/health", None, Value::Null).await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["publish"]["failures"], 1, "{health}");
    assert!(
        health["publish"]["error"]
            .as_str()
            .unwrap()
            .contains("exceed")
    );
    assert_eq!(
        counter(&snapshotter, "sinew_control_plane_publish_failures_total"),
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
