//! The server side of the mesh over real sockets: hyper and tonic servers
//! behind the server stack (plaintext or mutual TLS), called by the mesh's
//! clients, by grpcio, curl and OpenSSL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../resilience/support.rs"]
mod support;

#[path = "../tls/cases.rs"]
mod cases;
#[path = "../tls/certs.rs"]
mod certs;

mod accept;
mod authz;
mod grpc;
mod hyper_server;
mod limits;
mod mtls;
mod mtls_grpc;
mod mtls_reject;
mod mtls_support;
mod rotation;
mod shutdown;
mod telemetry;
mod tls_metrics;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use sinew::config::MeshConfig;
use sinew::mesh::Mesh;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceExt;

/// Every wait in these tests ends by this.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Runs `future` to its end, or fails naming `what`.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A loopback listener and its address.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A mesh whose service `reviews` routes to `addr` (over `protocol`) and
/// whose inbound block is `inbound` (YAML flow mapping, or empty).
pub fn config(addr: SocketAddr, protocol: &str, inbound: &str) -> MeshConfig {
    let inbound = if inbound.is_empty() {
        String::new()
    } else {
        format!("\n    inbound: {inbound}")
    };
    MeshConfig::from_yaml(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]{inbound}\n\
         clusters:\n  reviews:\n    protocol: {protocol}\n    endpoints: [{{ address: \"{addr}\" }}]\n"
    ))
    .unwrap()
}

pub async fn mesh(config: MeshConfig) -> Mesh {
    Mesh::builder().config(config).build().await.unwrap()
}

/// An application that answers `hello`, or, for `/hold`, tells `arrived`
/// and answers once `release` gives it a permit. `dropped` counts handlers
/// dropped before they answered (cancelled).
#[derive(Clone)]
pub struct App {
    pub arrived: mpsc::UnboundedSender<()>,
    pub release: Arc<Semaphore>,
    pub dropped: Arc<AtomicUsize>,
}

pub fn app() -> (App, mpsc::UnboundedReceiver<()>) {
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let app = App {
        arrived,
        release: Arc::new(Semaphore::new(0)),
        dropped: Arc::default(),
    };
    (app, arrivals)
}

struct Unfinished(Arc<AtomicUsize>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl App {
    pub fn service(
        self,
    ) -> impl tower::Service<
        Request<Incoming>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
    > + Clone
    + Send
    + 'static {
        let app = self;
        tower::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move {
                if req.uri().path() == "/hold" {
                    let guard = Unfinished(app.dropped.clone());
                    let _ = app.arrived.send(());
                    let permit = app.release.acquire().await.unwrap();
                    permit.forget();
                    std::mem::forget(guard);
                    return Ok(support::text(200, "held"));
                }
                Ok(support::text(200, "hello"))
            }
        })
    }
}

/// GET `path` through the mesh's client for `reviews`, with `headers`.
pub async fn get(
    mesh: &Mesh,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let mut request = Request::get(format!("http://reviews{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within(
        "a response",
        mesh.http_client("reviews")
            .oneshot(request.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        support::body_text(response.into_body()).await,
    )
}
