//! gRPC's own proxyless client (grpcio, Python) reaching the control
//! plane over mutual TLS with the bootstrap's `tls` channel credentials
//! (gRFC A65), its certificate from the control plane's CA: served when
//! its `node.cluster` names its certificate's service, refused when not.
//! The interpreter is `SINEW_XDS_PYTHON` (set by `scripts/test.sh`), or
//! `python3`.

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

use common::{TOKEN, admin, scratch};
use http::{Method, StatusCode};
use python::{Python, script};
use rcgen::{CertificateParams, KeyPair, SanType};
use serde_json::{Value, json};
use sinew_control_plane::ControlPlane;
use std::path::{Path, PathBuf};

/// A grpcio server answering with its name, and its port.
async fn echo_server(name: &str) -> (Python, u16) {
    let mut server = Python::start(&[&script("echo_server.py"), name], &[]).await;
    let first = server.line().await;
    let port: u16 = first.strip_prefix("port ").unwrap().parse().unwrap();
    (server, port)
}

/// A certificate for `ns/default/sa/<service>` from `cp`'s CA, written
/// with the trust bundle as `<service>.pem`, `<service>.key`, `ca.pem`.
async fn certificate(cp: &ControlPlane, dir: &Path, service: &str) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let id = format!("spiffe://cluster.local/ns/default/sa/{service}");
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let (status, answer) = admin(
        cp,
        Method::POST,
        "/v1/certificates",
        Some(TOKEN),
        json!({ "csr": csr }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let chain = answer["certificate_chain"].as_str().unwrap();
    std::fs::write(dir.join(format!("{service}.pem")), chain).unwrap();
    std::fs::write(dir.join(format!("{service}.key")), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), cp.trust_bundle_pem()).unwrap();
}

fn bootstrap(dir: &Path, cp: &ControlPlane, service: &str, cluster: &str) -> PathBuf {
    let file = |name: String| dir.join(name).to_str().unwrap().to_owned();
    let path = dir.join(format!("{cluster}-bootstrap.json"));
    std::fs::write(
        &path,
        json!({
            "xds_servers": [{
                // The certificate names 127.0.0.1: gRPC checks the host.
                "server_uri": format!("127.0.0.1:{}", cp.xds_addr().port()),
                "channel_creds": [{ "type": "tls", "config": {
                    "ca_certificate_file": file("ca.pem".to_owned()),
                    "certificate_file": file(format!("{service}.pem")),
                    "private_key_file": file(format!("{service}.key"))
                }}],
                "server_features": ["xds_v3"]
            }],
            "node": { "id": format!("{cluster}-1"), "cluster": cluster }
        })
        .to_string(),
    )
    .unwrap();
    path
}

async fn calls(client: &mut Python, n: usize) -> Value {
    client.send(&format!("call {n}")).await;
    serde_json::from_str(&client.line().await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_reaches_the_control_plane_over_mtls_as_its_certificate_says() {
    let dir = scratch("grpc-access");
    let (_a, port) = echo_server("a").await;
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: greeter }}] }}]\nclusters:\n  greeter:\n    protocol: http2\n    endpoints: [{{ address: \"127.0.0.1:{port}\" }}]\n"
        ),
    )
    .unwrap();
    let cp = ControlPlane::builder()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    certificate(&cp, &dir, "client").await;

    let good = bootstrap(&dir, &cp, "client", "client");
    let mut client = Python::start(
        &[&script("xds_client.py"), "xds:///greeter"],
        &[("GRPC_XDS_BOOTSTRAP", good.to_str().unwrap())],
    )
    .await;
    assert_eq!(client.line().await, "ready");
    let answer = calls(&mut client, 3).await;
    assert_eq!(answer["served"]["a"], 3, "{answer}");
    let (_, clients) = admin(&cp, Method::GET, "/v1/clients", Some(TOKEN), Value::Null).await;
    assert!(
        clients.as_array().unwrap().iter().any(|c| c["spiffe_id"]
            == "spiffe://cluster.local/ns/default/sa/client"
            && c["user_agent"].as_str().unwrap_or("").starts_with("gRPC")),
        "{clients}"
    );

    // The same certificate, a node claiming another service: refused, so
    // the call never gets a configuration.
    let bad = bootstrap(&dir, &cp, "client", "payments");
    let mut impostor = Python::start(
        &[&script("xds_client.py"), "xds:///greeter"],
        &[("GRPC_XDS_BOOTSTRAP", bad.to_str().unwrap())],
    )
    .await;
    assert_eq!(impostor.line().await, "ready");
    let answer = calls(&mut impostor, 1).await;
    assert_eq!(answer["served"], json!({}), "{answer}");
    assert_eq!(
        answer["errors"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
