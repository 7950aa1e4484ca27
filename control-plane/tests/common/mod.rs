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
