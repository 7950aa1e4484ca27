//! Authorization over xDS (gRFC A41): the control plane serves a mesh
//! file's `inbound.authorization` as RBAC filters on the server Listeners
//! of the service's endpoints, and a grpcio xDS-enabled server and a
//! Sinew server, each behind the same policies, give the same answers to
//! the same matrix of callers: grpcio xDS clients over mTLS, each with its
//! own SPIFFE ID (certificates from the bootstraps' `file_watcher`
//! providers), calling allowed and refused methods with and without a
//! header a deny policy matches.

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
#[path = "common/svid.rs"]
mod svid;

use common::{admin, scratch, start, within};
use http::Method;
use python::{Python, script};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use svid::{bootstrap, free_port, id, leaf, root};

/// The policies both services carry: a deny on one method, on a header
/// and on a source range (no caller is in), then allows by exact ID (any
/// Echo method, POST), by trust domain (methods matching a regex), by
/// source range, and for any authenticated caller with a header.
fn policies() -> String {
    format!(
        r#"
      authorization:
        - name: no-drop
          action: deny
          rules:
            - paths: [{{ exact: /sinew.test.Echo/Drop }}]
            - headers: [{{ name: x-deny, present: true }}]
            - source_ips: ["10.0.0.0/8"]
        - name: shop
          action: allow
          rules:
            - principals: [{{ id: "{}" }}]
              paths: [{{ prefix: /sinew.test.Echo/ }}]
              methods: [POST]
            - principals: [{{ trust_domain: example.org }}]
              paths: [{{ regex: "/sinew\\.test\\.Echo/Open.*" }}]
            - source_ips: ["127.0.0.0/8"]
              paths: [{{ exact: /sinew.test.Echo/Local }}]
            - principals: [authenticated]
              headers: [{{ name: x-team, exact: shop }}]
              paths: [{{ prefix: /sinew.test.Echo/Team }}]
"#,
        id("cart")
    )
}

/// Each caller, method and metadata, and the answer both servers must
/// give.
const MATRIX: &[(&str, &str, &str, &str)] = &[
    ("cart", "/sinew.test.Echo/Call", "", "OK"),
    ("cart", "/sinew.test.Echo/Other", "", "OK"),
    ("intruder", "/sinew.test.Echo/Call", "", "PERMISSION_DENIED"),
    ("intruder", "/sinew.test.Echo/OpenDoor", "", "OK"),
    ("cart", "/sinew.test.Echo/Drop", "", "PERMISSION_DENIED"),
    ("intruder", "/sinew.test.Echo/Drop", "", "PERMISSION_DENIED"),
    (
        "cart",
        "/sinew.test.Echo/Call",
        "x-deny=1",
        "PERMISSION_DENIED",
    ),
    ("cart", "/sinew.test.Echo/OpenDoor", "x-team=shop", "OK"),
    ("intruder", "/sinew.test.Echo/Local", "", "OK"),
    ("intruder", "/sinew.test.Echo/Team", "x-team=shop", "OK"),
    (
        "intruder",
        "/sinew.test.Echo/Team",
        "x-team=ops",
        "PERMISSION_DENIED",
    ),
];

/// The matrix's answers from `service`'s server, and how many calls its
/// handlers saw (the server's own count, from the last allowed reply).
async fn answers(callers: &mut [(&str, Python)], service: &str) -> (Vec<String>, Vec<Value>) {
    let mut codes = Vec::new();
    let mut replies = Vec::new();
    for (caller, method, metadata, _) in MATRIX {
        let client = &mut callers
            .iter_mut()
            .find(|(name, _)| name == caller)
            .unwrap()
            .1;
        client
            .send(&format!("call xds:///{service} {method} {metadata}"))
            .await;
        let answer: Value = serde_json::from_str(&client.line().await).unwrap();
        codes.push(answer["code"].as_str().unwrap().to_owned());
        if answer["code"] == "OK" {
            replies.push(answer["reply"].clone());
        }
    }
    (codes, replies)
}

/// Waits (with a deadline) for the mesh to hold the server Listener
/// `name`, accepted.
async fn server_listener_acked(mesh: &sinew::mesh::Mesh, name: &str) {
    let mut versions = mesh.versions();
    within("the server Listener to arrive", async {
        loop {
            let status = mesh.xds_status().unwrap();
            if status.resources.iter().any(|r| {
                r.kind == sinew::xds::Kind::Listener
                    && r.name == name
                    && r.state == sinew::xds::ResourceState::Acked
            }) {
                return;
            }
            versions.changed().await.unwrap();
        }
    })
    .await;
}

/// The version of the server Listener `name` the mesh holds, accepted.
fn listener_version(mesh: &sinew::mesh::Mesh, name: &str) -> Option<String> {
    mesh.xds_status()
        .unwrap()
        .resources
        .into_iter()
        .find(|r| {
            r.kind == sinew::xds::Kind::Listener
                && r.name == name
                && r.state == sinew::xds::ResourceState::Acked
        })
        .map(|r| r.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_and_sinew_servers_enforce_the_same_policies_from_the_control_plane() {
    let dir = scratch("rbac-parity");
    root(&dir);
    leaf(&dir, "greeter", "1");
    leaf(&dir, "cart", "2");
    leaf(&dir, "intruder", "3");
    let python_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sinew_addr = listener.local_addr().unwrap();
    let policies = policies();
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "services:\n  py:\n    routes: [{{ split: [{{ cluster: py }}] }}]\n    inbound:{policies}  rs:\n    routes: [{{ split: [{{ cluster: rs }}] }}]\n    inbound:{policies}clusters:\n  py:\n    protocol: http2\n    identities: [\"{greeter}\"]\n    endpoints: [{{ address: \"{python_addr}\" }}]\n  rs:\n    protocol: http2\n    identities: [\"{greeter}\"]\n    endpoints: [{{ address: \"{sinew_addr}\" }}]\n",
            greeter = id("greeter"),
        ),
    )
    .unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let xds = cp.xds_addr();

    // The grpcio server.
    let mut python_server = Python::start(
        &[&script("xds_rbac_server.py"), &python_addr.to_string()],
        &[(
            "GRPC_XDS_BOOTSTRAP",
            bootstrap(&dir, "greeter", "rbac-py", xds).to_str().unwrap(),
        )],
    )
    .await;
    assert_eq!(python_server.line().await, "ready");

    // The Sinew server: its transport and policies from its server
    // Listener; it answers every Echo method as the Python server does.
    let mesh = sinew::mesh::Mesh::builder()
        .bootstrap(
            sinew::xds::Bootstrap::from_file(bootstrap(&dir, "greeter", "rbac-rs", xds)).unwrap(),
        )
        .certificate_files(sinew::tls::FileWatcherConfig::new(
            dir.join("greeter.pem"),
            dir.join("greeter.key"),
            dir.join("ca.pem"),
        ))
        .build()
        .await
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let counter = handled.clone();
    let app = tower::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let counter = counter.clone();
        async move {
            let path = request.uri().path().to_owned();
            let method = tower::service_fn(move |_: tonic::Request<bytes::Bytes>| {
                let calls = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let reply = json!({ "method": path, "calls": calls }).to_string();
                async move { Ok::<_, tonic::Status>(tonic::Response::new(bytes::Bytes::from(reply))) }
            });
            Ok::<_, std::convert::Infallible>(
                tonic::server::Grpc::new(sinew::mesh::RawCodec)
                    .unary(method, request)
                    .await,
            )
        }
    });
    let server = mesh.server("rs").serve(listener, app).await.unwrap();
    server_listener_acked(
        &mesh,
        &format!("grpc/server?xds.resource.listening_address={sinew_addr}"),
    )
    .await;

    // The callers, one grpcio process per identity.
    let mut callers = Vec::new();
    for caller in ["cart", "intruder"] {
        let mut client = Python::start(
            &[&script("xds_rbac_client.py")],
            &[(
                "GRPC_XDS_BOOTSTRAP",
                bootstrap(&dir, caller, &format!("rbac-{caller}"), xds)
                    .to_str()
                    .unwrap(),
            )],
        )
        .await;
        assert_eq!(client.line().await, "ready");
        callers.push((caller, client));
    }

    let expected: Vec<&str> = MATRIX.iter().map(|row| row.3).collect();
    let allowed = expected.iter().filter(|c| **c == "OK").count();
    let (python_codes, python_replies) = answers(&mut callers, "py").await;
    assert_eq!(
        python_codes, expected,
        "grpcio's server, against the matrix"
    );
    // Refused calls reached no handler: the last reply counts them all.
    assert_eq!(
        python_replies.last().unwrap()["calls"].as_u64(),
        Some(allowed as u64)
    );
    // Every peer took every resource: nothing NACKed.
    let (_, clients) = admin(&cp, Method::GET, "/v1/clients", None, Value::Null).await;
    for node in ["rbac-py", "rbac-rs", "rbac-cart", "rbac-intruder"] {
        let view = clients
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node_id"] == node)
            .unwrap_or_else(|| panic!("{node} is not listed: {clients}"));
        for (kind, types) in view["types"].as_object().unwrap() {
            assert!(types["last_nack"].is_null(), "{node} NACKed {kind}: {view}");
        }
    }
    let status = mesh.xds_status().unwrap();
    assert!(
        status.resources.iter().all(|r| r.error.is_none()),
        "{status:?}"
    );
    let (sinew_codes, _) = answers(&mut callers, "rs").await;
    assert_eq!(
        sinew_codes, python_codes,
        "Sinew's server answers as grpcio's does"
    );
    assert_eq!(handled.load(Ordering::SeqCst), allowed as u64);

    // A live change: `rs` closed to everyone. The running Sinew server
    // takes the new Listener and refuses every call, none reaching it.
    let name = format!("grpc/server?xds.resource.listening_address={sinew_addr}");
    let before = listener_version(&mesh, &name);
    let mesh_file = std::fs::read_to_string(dir.join("mesh.yaml")).unwrap();
    let (head, tail) = mesh_file.split_once("  rs:\n").unwrap();
    let (_, clusters) = tail.split_once("clusters:\n").unwrap();
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "{head}  rs:\n    routes: [{{ split: [{{ cluster: rs }}] }}]\n    inbound:\n      authorization: [{{ name: closed, action: deny, rules: [{{}}] }}]\nclusters:\n{clusters}"
        ),
    )
    .unwrap();
    within("the changed server Listener", async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        while listener_version(&mesh, &name) == before {
            tick.tick().await;
        }
    })
    .await;
    let (closed, _) = answers(&mut callers, "rs").await;
    assert!(
        closed.iter().all(|code| code == "PERMISSION_DENIED"),
        "{closed:?}"
    );
    assert_eq!(handled.load(Ordering::SeqCst), allowed as u64);

    drop((callers, python_server));
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
