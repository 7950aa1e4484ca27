//! Interop acceptance: gRPC's own proxyless client (grpcio, Python),
//! pointed at the control plane by `GRPC_XDS_BOOTSTRAP` with the target
//! `xds:///greeter`, calls gRPC servers (grpcio too) through the control
//! plane's configuration, follows endpoint changes made by registration
//! and by mesh file edits, and keeps working across a control plane
//! restart. A Sinew client does the same beside it. The interpreter is
//! `SINEW_XDS_PYTHON` (set by `scripts/test.sh`, which installs grpcio),
//! or `python3`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;
#[path = "common/python.rs"]
mod python;

use bytes::Bytes;
use common::{TOKEN, admin, scratch, start, within};
use http::{Method, StatusCode};
use python::{Python, script};
use serde_json::{Value, json};
use sinew::mesh::{Mesh, RawCodec};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A grpcio server answering with its name.
async fn echo_server(name: &str) -> (Python, SocketAddr) {
    let mut server = Python::start(&[&script("echo_server.py"), name], &[]).await;
    let first = server.line().await;
    let port: u16 = first.strip_prefix("port ").unwrap().parse().unwrap();
    (server, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Calls made by gRPC's client: answers by server name, and errors.
async fn grpc_calls(client: &mut Python, n: usize) -> (HashMap<String, usize>, Vec<String>) {
    client.send(&format!("call {n}")).await;
    let answer: Value = serde_json::from_str(&client.line().await).unwrap();
    let served = answer["served"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
        .collect();
    let errors = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    (served, errors)
}

/// The same calls made by a Sinew client.
async fn sinew_calls(mesh: &Mesh, n: usize) -> (HashMap<String, usize>, Vec<String>) {
    let mut served = HashMap::new();
    let mut errors = Vec::new();
    for _ in 0..n {
        let mut grpc = tonic::client::Grpc::with_origin(
            mesh.grpc_channel("greeter"),
            "http://greeter".parse().unwrap(),
        );
        within("a ready channel", grpc.ready()).await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/sinew.test.Echo/Call");
        match within(
            "a call",
            grpc.unary(tonic::Request::new(Bytes::new()), path, RawCodec),
        )
        .await
        {
            Ok(reply) => {
                let name = String::from_utf8_lossy(reply.get_ref()).into_owned();
                *served.entry(name).or_insert(0) += 1;
            }
            Err(status) => errors.push(status.to_string()),
        }
    }
    (served, errors)
}

fn mesh_file(dir: &Path, endpoints: &[SocketAddr]) {
    mesh_file_with(dir, endpoints, "round_robin");
}

fn mesh_file_with(dir: &Path, endpoints: &[SocketAddr], lb: &str) {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|a| format!("{{ address: \"{a}\" }}"))
        .collect();
    let yaml = format!(
        "services:\n  greeter:\n    routes:\n      - split: [{{ cluster: greeter }}]\n        timeout: 10s\nclusters:\n  greeter:\n    protocol: http2\n    lb: {{ policy: {lb} }}\n    endpoints: [{}]\n",
        endpoints.join(", ")
    );
    std::fs::write(dir.join("mesh.yaml"), yaml).unwrap();
}

/// Calls through both clients until every answer comes from `expected`
/// (each of them at least once); no call may fail on the way.
async fn until_only(grpc: &mut Python, mesh: &Mesh, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for (who, client) in [("grpc", 0), ("sinew", 1)] {
        loop {
            let (served, errors) = if client == 0 {
                grpc_calls(grpc, 12).await
            } else {
                sinew_calls(mesh, 12).await
            };
            assert!(errors.is_empty(), "{who}: {errors:?}");
            let only = served.keys().all(|k| expected.contains(&k.as_str()));
            let all = expected.iter().all(|e| served.contains_key(*e));
            if only && all {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{who} never settled on {expected:?}: {served:?}"
            );
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_sinew_clients_follow_the_control_plane() {
    let dir = scratch("interop");
    let (_a, a) = echo_server("a").await;
    let (_b, b) = echo_server("b").await;
    let (_c, c) = echo_server("c").await;
    mesh_file(&dir, &[a]);
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let xds = cp.xds_addr();
    let bootstrap = dir.join("bootstrap.json");
    std::fs::write(
        &bootstrap,
        json!({
            "xds_servers": [{
                "server_uri": xds.to_string(),
                "channel_creds": [{ "type": "insecure" }],
                "server_features": ["xds_v3"]
            }],
            "node": { "id": "interop-python", "locality": { "zone": "z1" } }
        })
        .to_string(),
    )
    .unwrap();
    let mut grpc = Python::start(
        &[&script("xds_client.py"), "xds:///greeter"],
        &[("GRPC_XDS_BOOTSTRAP", bootstrap.to_str().unwrap())],
    )
    .await;
    assert_eq!(grpc.line().await, "ready");
    let mesh = within(
        "the mesh",
        Mesh::builder()
            .control_plane(&format!("http://{xds}"))
            .build(),
    )
    .await
    .unwrap();

    until_only(&mut grpc, &mesh, &["a"]).await;

    // A registration adds b.
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/registrations",
        Some(TOKEN),
        json!({ "name": "greeter", "address": b.to_string(), "ttl_seconds": 300 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let lease = answer["lease"].as_str().unwrap().to_owned();
    until_only(&mut grpc, &mesh, &["a", "b"]).await;

    // A mesh file edit replaces a with c.
    mesh_file(&dir, &[c]);
    until_only(&mut grpc, &mesh, &["b", "c"]).await;

    // Both gRPC clients are listed, each holding the version in force.
    let (_, clients) = admin(&cp, Method::GET, "/v1/clients", None, Value::Null).await;
    let version = cp.published().version.to_string();
    for (agent, node) in [("sinew", "sinew-"), ("gRPC C-core", "interop-python")] {
        let client = clients
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["user_agent"]
                    .as_str()
                    .is_some_and(|u| u.starts_with(agent))
            })
            .unwrap_or_else(|| panic!("{agent} is not listed: {clients}"));
        assert!(client["node_id"].as_str().unwrap().starts_with(node));
        assert_eq!(
            client["types"]["ClusterLoadAssignment"]["acked"],
            version.as_str(),
            "{client}"
        );
    }

    // The control plane goes away: calls go on with what the clients
    // hold. It comes back on the same port with its registrations, and
    // a deregistration made then is followed.
    cp.shutdown().await;
    until_only(&mut grpc, &mesh, &["b", "c"]).await;
    let cp = start(&dir, xds).await;
    let (status, _) = admin(
        &cp,
        Method::DELETE,
        &format!("/v1/registrations/{lease}"),
        Some(TOKEN),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the lease survived the restart");
    until_only(&mut grpc, &mesh, &["c"]).await;

    // A cluster gRPC cannot use (it has no Maglev): gRPC NACKs it and
    // keeps its last good one, Sinew takes it; the control plane shows
    // each client's standing.
    mesh_file_with(&dir, &[c], "maglev");
    let nack = within("gRPC's NACK", async {
        loop {
            let (_, clients) = admin(&cp, Method::GET, "/v1/clients", None, Value::Null).await;
            let python = clients
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["node_id"] == "interop-python")
                .cloned();
            if let Some(nack) =
                python.and_then(|p| p["types"]["Cluster"]["last_nack"].as_object().cloned())
            {
                break nack;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(nack["version"], cp.published().version.to_string().as_str());
    // gRPC names the field: "... errors validating Cluster resource:
    // [field:lb_policy error:LB policy is not supported]".
    assert!(
        nack["message"].as_str().unwrap().contains("lb_policy"),
        "{nack:?}"
    );
    until_only(&mut grpc, &mesh, &["c"]).await;

    // Sinew's default policy, which gRPC does not have, comes with least
    // request after it: gRPC takes the cluster again.
    mesh_file_with(&dir, &[c], "p2c_ewma");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let version = cp.published().version.to_string();
        let (_, clients) = admin(&cp, Method::GET, "/v1/clients", None, Value::Null).await;
        let acked = clients
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["types"]["Cluster"]["acked"] == version.as_str())
            .count();
        if acked == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ACKed by both clients: {clients}"
        );
        tokio::task::yield_now().await;
    }
    until_only(&mut grpc, &mesh, &["c"]).await;
    let _ = std::fs::remove_dir_all(&dir);
}
