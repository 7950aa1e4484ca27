//! Real servers and clients on loopback for the integration tests.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sinew::error::BoxError;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running server; dropping it stops accepting and closes connections.
pub struct Server {
    pub addr: SocketAddr,
    _stop: watch::Sender<()>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Serves `service` (HTTP/1.1 and HTTP/2) on a fresh loopback port.
pub async fn serve<S, B>(service: S) -> Server
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_at("127.0.0.1:0".parse().expect("an address"), service).await
}

/// Serves `service` at `addr` (a port a stopped server used, say).
pub async fn serve_at<S, B>(addr: SocketAddr, service: S) -> Server
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind(addr).await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, mut stopped) = watch::channel(());
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(_) => continue,
                },
                _ = stopped.changed() => return,
            };
            // As servers in production do: small responses go out at once.
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = conn => {}
                    _ = stopped.changed() => {}
                }
            });
        }
    });
    Server { addr, _stop: stop }
}

/// A handler made from an async function of the request.
pub fn handler<F, Fut>(
    f: F,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
+ Send
+ 'static
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tower::service_fn(move |req| {
        let f = f.clone();
        async move { Ok(f(req).await) }
    })
}

/// A response with a status and a text body.
pub fn text(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("valid status");
    response
}

/// A hyper-util client for any request body.
pub fn client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2-only client, for gRPC.
pub fn h2_client<B>() -> Client<HttpConnector, B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Reads a whole body as text.
pub async fn body_text<B>(body: B) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = body.collect().await.expect("read body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A loopback port with nothing listening on it.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    listener.local_addr().expect("local addr")
}

/// A server answering every request with 200 and `name`, and the count of
/// requests it served.
#[allow(dead_code)] // Not every test crate that includes this uses it.
pub async fn named(name: &'static str) -> (Server, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let server = serve(handler(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { text(200, name) }
    }))
    .await;
    (server, served)
}

/// Sends GET `uri` through `client` until `sent` reaches `total`,
/// `concurrency` at a time; every request must succeed. Counts the answers
/// by body.
#[allow(dead_code)] // Not every test crate that includes this uses it.
pub async fn send_all(
    client: sinew::mesh::HttpClient<http_body_util::Empty<Bytes>>,
    uri: &'static str,
    total: usize,
    concurrency: usize,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::collections::HashMap<String, usize> {
    use std::sync::atomic::Ordering;
    use tower::ServiceExt;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, sent) = (client.clone(), sent.clone());
            tokio::spawn(async move {
                let mut seen = std::collections::HashMap::new();
                while sent.fetch_add(1, Ordering::SeqCst) < total {
                    let request = Request::get(uri)
                        .body(http_body_util::Empty::new())
                        .expect("a request");
                    let response = client
                        .clone()
                        .oneshot(request)
                        .await
                        .expect("every request succeeds");
                    assert_eq!(response.status(), http::StatusCode::OK);
                    *seen
                        .entry(body_text(response.into_body()).await)
                        .or_insert(0) += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen = std::collections::HashMap::new();
    for task in tasks {
        for (name, n) in task.await.expect("a sender") {
            *seen.entry(name).or_insert(0) += n;
        }
    }
    seen
}

/// Waits until `condition` holds, yielding between checks; fails naming
/// `what` after 10 seconds instead of hanging.
#[allow(dead_code)] // Not every test crate that includes this uses it.
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}
