//! Sinew's metrics in Prometheus' text format, on the
//! `metrics-exporter-prometheus` crate: a small mesh on loopback (the
//! service `reviews`, served and called by this process), traffic that
//! retries and trips a breaker, and `/metrics` to scrape.
//!
//! ```text
//! cargo run --example prometheus -- 127.0.0.1:9464
//! curl -s http://127.0.0.1:9464/metrics | grep '^sinew_'
//! ```
//!
//! Sinew counts through the `metrics` facade: whichever recorder the
//! application installs receives the series (docs/metrics.md lists them).
//! Here it is the Prometheus exporter, which also serves the page.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};
use sinew::config::MeshConfig;
use sinew::error::BoxError;
use sinew::mesh::{Mesh, Server};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Installs the Prometheus recorder as the process's, and serves its page
/// at `addr` (any path; Prometheus asks for `/metrics`). Call it within a
/// Tokio runtime, before the mesh is built: the mesh registers its
/// series as it builds.
pub fn install_exporter(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new().with_http_listener(addr).install()
}

/// `reviews` on loopback, with two routes: `/broken` to the cluster
/// `errors` (whose breaker opens after two failures in a row), the rest
/// to the cluster `reviews` with retries.
fn config(addr: SocketAddr) -> MeshConfig {
    let yaml = format!(
        r#"
services:
  reviews:
    routes:
      - match: {{ path: {{ prefix: /broken }} }}
        split: [{{ cluster: errors }}]
      - split: [{{ cluster: reviews }}]
        retry: {{ max_attempts: 3, backoff: {{ base: 1ms, max: 5ms }} }}
clusters:
  reviews:
    endpoints: [{{ address: "{addr}" }}]
  errors:
    breaker: {{ consecutive_failures: 2, open_for: 30s }}
    endpoints: [{{ address: "{addr}" }}]
"#
    );
    MeshConfig::from_yaml(&yaml).expect("the example's configuration is valid")
}

/// The running mesh.
pub struct Demo {
    /// Serves and calls `reviews`.
    pub mesh: Mesh,
    /// The server of `reviews`.
    pub server: Server,
    /// Requests that reached the application, attempts included.
    pub reached: Arc<AtomicUsize>,
}

/// The application: `/flaky` fails with 503 every other time (so that the
/// mesh retries it), `/broken` always with 500, the rest answers 200.
fn app(
    reached: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let flaky = Arc::new(AtomicUsize::new(0));
    tower::service_fn(move |request: Request<Incoming>| {
        reached.fetch_add(1, Ordering::SeqCst);
        let status = match request.uri().path() {
            "/broken" => StatusCode::INTERNAL_SERVER_ERROR,
            "/flaky" if flaky.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::OK,
        };
        let mut response = Response::new(Full::new(Bytes::from_static(b"reviews\n")));
        *response.status_mut() = status;
        async move { Ok(response) }
    })
}

/// Builds the mesh and serves `reviews` on a loopback port of its own.
pub async fn start() -> Result<Demo, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mesh = Mesh::builder().config(config(addr)).build().await?;
    let reached = Arc::new(AtomicUsize::new(0));
    let server = mesh
        .serve("reviews", listener, app(reached.clone()))
        .await?;
    Ok(Demo {
        mesh,
        server,
        reached,
    })
}

impl Demo {
    /// GET `path` of `reviews` through the mesh: the status, or why none.
    pub async fn get(&self, path: &str) -> Result<StatusCode, BoxError> {
        let request = Request::get(format!("http://reviews{path}")).body(Empty::<Bytes>::new())?;
        let client = self.mesh.http_client::<Empty<Bytes>>("reviews");
        let response = tokio::time::timeout(Duration::from_secs(10), client.oneshot(request))
            .await
            .map_err(|_| "no answer in 10 s")??;
        Ok(response.status())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9464".to_owned())
        .parse()?;
    install_exporter(addr)?;
    let demo = start().await?;
    println!("metrics at http://{addr}/metrics; Ctrl-C to stop");
    let traffic = async {
        loop {
            for path in ["/", "/flaky", "/broken"] {
                let answer = demo.get(path).await;
                println!("GET {path}: {answer:?}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        () = traffic => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    demo.server.shutdown().await?;
    Ok(())
}
