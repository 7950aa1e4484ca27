//! What the control plane's tests share: a scratch directory, a control
//! plane on loopback reading that directory, and admin API calls.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use sinew_control_plane::{ControlPlane, Limits};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The token the tests' control planes require for writes.
pub const TOKEN: &str = "test-token";

/// A fresh directory for one test's files.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sinew-cp-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A control plane serving `dir`'s `mesh.yaml` (checked every 20 ms), with
/// its registry in `dir`, ADS on `xds` and the admin API on a free port.
pub async fn start(dir: &Path, xds: SocketAddr) -> ControlPlane {
    start_with(dir, xds, Limits::default()).await
}

/// [`start`], with these limits.
pub async fn start_with(dir: &Path, xds: SocketAddr, limits: Limits) -> ControlPlane {
    ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .mesh_file(dir.join("mesh.yaml"))
        .registry_store(dir.join("registry.json"))
        .token(TOKEN)
        .xds_addr(xds)
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .reload_interval(Duration::from_millis(20))
        .limits(limits)
        .start()
        .await
        .unwrap()
}

/// One admin API call as sent: any headers, any body bytes.
pub async fn raw_admin(
    cp: &ControlPlane,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", cp.admin_addr()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    let response = within("an admin API answer", client.request(request))
        .await
        .unwrap();
    let status = response.status();
    let bytes = within("an admin API body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// How long any one wait in these tests may take before the test fails
/// (generous: a busy machine is slow, a hang is forever).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test (naming `what`) if it takes longer
/// than [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not within {DEADLINE:?}"),
    }
}

/// One admin API call: the status and the JSON answer.
pub async fn admin(
    cp: &ControlPlane,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", cp.admin_addr()))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = within("an admin API answer", client.request(request))
        .await
        .unwrap();
    let status = response.status();
    let bytes = within("an admin API body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A raw ADS stream: what the control plane pushes, response by response.
pub struct RawStream {
    pub requests: tokio::sync::mpsc::UnboundedSender<
        envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest,
    >,
    pub inbound:
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
}

impl RawStream {
    pub async fn open(xds: SocketAddr) -> Self {
        use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
        let mut client = within(
            "a connection",
            AggregatedDiscoveryServiceClient::connect(format!("http://{xds}")),
        )
        .await
        .unwrap();
        let (requests, rx) = tokio::sync::mpsc::unbounded_channel();
        let outbound =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        let inbound = within("a stream", client.stream_aggregated_resources(outbound))
            .await
            .unwrap()
            .into_inner();
        Self { requests, inbound }
    }

    pub fn request(
        &self,
        type_url: &str,
        names: &[&str],
        version: &str,
        nonce: &str,
        error: Option<&str>,
    ) {
        use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
        self.requests
            .send(DiscoveryRequest {
                node: Some(envoy_types::pb::envoy::config::core::v3::Node {
                    id: "raw".to_owned(),
                    ..Default::default()
                }),
                type_url: type_url.to_owned(),
                resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
                version_info: version.to_owned(),
                response_nonce: nonce.to_owned(),
                error_detail: error.map(|message| envoy_types::pb::google::rpc::Status {
                    code: 3,
                    message: message.to_owned(),
                    details: Vec::new(),
                }),
                ..Default::default()
            })
            .unwrap();
    }

    /// The next response: its type, version, nonce and resource names.
    pub async fn next(&mut self) -> (String, String, String, Vec<String>) {
        use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
        use prost::Message;
        let r = within("a response", self.inbound.message())
            .await
            .unwrap()
            .unwrap();
        let names = r
            .resources
            .iter()
            .map(|any| {
                ClusterLoadAssignment::decode(any.value.as_slice())
                    .map(|c| c.cluster_name)
                    .unwrap_or_default()
            })
            .collect();
        (r.type_url, r.version_info, r.nonce, names)
    }
}
