//! What the telemetry and dashboard tests share: a control plane with a
//! fast telemetry window, a real Sinew mesh pushing to it, and polling
//! `/v1/graph` until it shows what a test waits for.

use crate::common::{DEADLINE, TOKEN, admin};
use http::{Method, StatusCode};
use serde_json::Value;
use sinew::mesh::Mesh;
use sinew::telemetry::push::PushSettings;
use sinew::xds::Bootstrap;
use sinew_control_plane::ControlPlane;
use std::time::Duration;

/// Service `reviews`, served by cluster `reviews-v1`: the endpoints are
/// the ones registered by the tests' servers.
pub const MESH: &str = "services:\n  reviews:\n    routes: [{ split: [{ cluster: reviews-v1 }] }]\nclusters:\n  reviews-v1:\n    endpoints: []\n";

/// How often the tests' meshes push.
pub const PUSH_EVERY: Duration = Duration::from_millis(150);

/// A mesh of service `service` (node `node`) pushing to `cp` over
/// plaintext xDS every [`PUSH_EVERY`].
pub async fn pushing_mesh(cp: &ControlPlane, service: &str, node: &str) -> Mesh {
    let mut bootstrap = Bootstrap::for_server(&format!("http://{}", cp.xds_addr()));
    bootstrap.node_cluster = service.to_owned();
    bootstrap.node_id = node.to_owned();
    crate::common::within(
        "the mesh",
        Mesh::builder()
            .bootstrap(bootstrap)
            .telemetry_push(PushSettings {
                interval: PUSH_EVERY,
                ..PushSettings::default()
            })
            .build(),
    )
    .await
    .unwrap()
}

/// [`MESH`], with `reviews-v1` spoken to over mutual TLS only, as the
/// identity the control plane's CA gives `shop`/`reviews`.
pub const MESH_MTLS: &str = "services:\n  reviews:\n    routes: [{ split: [{ cluster: reviews-v1 }] }]\nclusters:\n  reviews-v1:\n    identities: [\"spiffe://cluster.local/ns/shop/sa/reviews\"]\n    endpoints: []\n";

/// What the tests' `reviews` server answers: `/fail` with a 500, `/busy`
/// with a 503, `/slow` after 30 ms, anything else with a 200.
async fn reviews_app(
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<String>, std::convert::Infallible> {
    let status = match request.uri().path() {
        "/fail" => StatusCode::INTERNAL_SERVER_ERROR,
        "/busy" => StatusCode::SERVICE_UNAVAILABLE,
        "/slow" => {
            // The server's own work: what latency the edges should see.
            tokio::time::sleep(Duration::from_millis(30)).await;
            StatusCode::OK
        }
        _ => StatusCode::OK,
    };
    let mut response = http::Response::new("reviews".to_owned());
    *response.status_mut() = status;
    Ok(response)
}

/// A real `reviews` server of `mesh` on loopback, registered with `cp` as
/// an endpoint of `reviews-v1` (registered before this returns).
pub async fn serve_reviews(cp: &ControlPlane, mesh: &Mesh) -> sinew::mesh::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registration = sinew::mesh::Registration::builder(
        format!("http://{}", cp.admin_addr()),
        "reviews-v1",
        "127.0.0.1:0".parse().unwrap(),
    )
    .token(TOKEN);
    crate::common::within(
        "the reviews server",
        mesh.server("reviews")
            .register(registration)
            .serve(listener, tower::service_fn(reviews_app)),
    )
    .await
    .unwrap()
}

/// What a client saw of the requests it sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub requests: u64,
    pub failures: u64,
}

/// One GET of `path` to `reviews`: whether it failed as the mesh counts
/// it (a 5xx or no answer), and what came back.
async fn get(
    client: &sinew::mesh::HttpClient<http_body_util::Empty<bytes::Bytes>>,
    path: &str,
) -> (bool, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = http::Request::get(format!("http://reviews{path}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    match crate::common::within("an answer", client.clone().oneshot(request)).await {
        Ok(response) => {
            let status = response.status();
            let body = crate::common::within("a body", response.into_body().collect()).await;
            let body = body.map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
            (status.is_server_error(), format!("{status}: {body:?}"))
        }
        Err(e) => {
            let mut chain = format!("error: {e}");
            let mut source = std::error::Error::source(&*e);
            while let Some(e) = source {
                chain.push_str(&format!(": {e}"));
                source = e.source();
            }
            (true, chain)
        }
    }
}

/// Sends a GET of each of `paths` to `reviews` through `client`, one
/// after another; what came back, counted as the mesh counts it (a 5xx or
/// no answer is a failure).
pub async fn send(
    client: &sinew::mesh::HttpClient<http_body_util::Empty<bytes::Bytes>>,
    paths: &[&str],
) -> Sent {
    let mut sent = Sent::default();
    for path in paths {
        let (failed, _) = get(client, path).await;
        sent.requests += 1;
        sent.failures += u64::from(failed);
    }
    sent
}

/// Sends `/` to `reviews` until one answer is a 200 (the client may learn
/// of the registered endpoint a moment after the server registers); what
/// was sent, failures included: the edges count them too.
pub async fn until_reachable(
    client: &sinew::mesh::HttpClient<http_body_util::Empty<bytes::Bytes>>,
) -> Sent {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut every = tokio::time::interval(Duration::from_millis(20));
    let mut sent = Sent::default();
    loop {
        every.tick().await;
        let (failed, answer) = get(client, "/").await;
        sent.requests += 1;
        sent.failures += u64::from(failed);
        if !failed {
            return sent;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reviews never answered within {DEADLINE:?}; the last answer: {answer}"
        );
    }
}

/// `/v1/graph`, read with the admin token.
pub async fn graph(cp: &ControlPlane) -> Value {
    let (status, graph) = admin(cp, Method::GET, "/v1/graph", Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{graph}");
    graph
}

/// The edge `source` → `destination` of `graph`, as `direction` saw it.
pub fn edge<'a>(graph: &'a Value, source: &str, destination: &str, direction: &str) -> &'a Value {
    graph["edges"]
        .as_array()
        .and_then(|edges| {
            edges
                .iter()
                .find(|e| e["source"] == source && e["destination"] == destination)
        })
        .map_or(&Value::Null, |e| &e[direction])
}

/// Polls `/v1/graph` until `until` holds of it; the graph then.
pub async fn graph_until(cp: &ControlPlane, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        every.tick().await;
        let graph = graph(cp).await;
        if until(&graph) {
            return graph;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}; the graph: {graph:#}"
        );
    }
}

/// A certificate for `namespace`/`service` from `cp`'s CA, as a mesh
/// identity.
pub async fn identity(cp: &ControlPlane, namespace: &str, service: &str) -> sinew::tls::Identity {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let id = format!("spiffe://cluster.local/ns/{namespace}/sa/{service}");
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let (status, answer) = admin(
        cp,
        Method::POST,
        "/v1/certificates",
        Some(TOKEN),
        serde_json::json!({ "csr": csr }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let identity = sinew::tls::Identity::new();
    identity.set_credentials(
        sinew::tls::Credentials::from_pem(
            answer["certificate_chain"].as_str().unwrap().as_bytes(),
            key.serialize_pem().as_bytes(),
            cp.trust_bundle_pem().as_bytes(),
        )
        .unwrap(),
    );
    identity
}

/// A mesh with `identity`, node `node` of `cluster`, pushing to `cp`
/// over mutual TLS.
pub async fn pushing_mesh_tls(
    cp: &ControlPlane,
    identity: sinew::tls::Identity,
    cluster: &str,
    node: &str,
) -> Mesh {
    let port = cp.xds_addr().port();
    let bootstrap = Bootstrap::from_json(&format!(
        r#"{{"xds_servers": [{{"server_uri": "127.0.0.1:{port}", "channel_creds": [{{"type": "tls"}}]}}], "node": {{"id": "{node}", "cluster": "{cluster}"}}}}"#
    ))
    .unwrap();
    crate::common::within(
        "the mesh",
        Mesh::builder()
            .identity(identity)
            .bootstrap(bootstrap)
            .initial_fetch_timeout(Duration::from_secs(1))
            .telemetry_push(PushSettings {
                interval: PUSH_EVERY,
                ..PushSettings::default()
            })
            .build(),
    )
    .await
    .unwrap()
}
