//! The client stack around clients the application builds, and deadlines
//! through it and across hops.

use super::mesh_of;
use super::support::{body_text, handler, serve, text};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew::deadline::{Deadline, EnforceDeadlineConfig, EnforceDeadlineLayer};
use sinew::mesh::ServedBy;
use sinew::respond::ErrorResponseLayer;
use sinew::retry::ReplayBody;
use std::time::Duration;
use tokio::sync::mpsc;
use tower::{Layer, ServiceBuilder, ServiceExt};

/// A server that answers with the HTTP version and the budget headers it
/// received: `HTTP/2 sinew-timeout-ms=… grpc-timeout=…`.
async fn echo_server() -> super::support::Server {
    serve(handler(|req: Request<hyper::body::Incoming>| async move {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        text(
            200,
            format!(
                "{:?} {} {}",
                req.version(),
                header("sinew-timeout-ms"),
                header("grpc-timeout")
            ),
        )
    }))
    .await
}

fn millis(echo: &str) -> u64 {
    echo.split(' ')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no sinew-timeout-ms in {echo:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_layer_wraps_an_applications_own_hyper_client() {
    let server = echo_server().await;
    let other = echo_server().await;
    let mesh = mesh_of(&format!(
        "services:\n  plain:\n    routes: [{{ split: [{{ cluster: h1 }}], timeout: 5s }}]\n  multiplexed:\n    routes: [{{ split: [{{ cluster: h2 }}] }}]\nclusters:\n  h1:\n    endpoints: [{{ address: \"{}\" }}]\n  h2:\n    protocol: http2\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr, other.addr
    ))
    .await;
    // The application's own client, with its own pool settings, on the
    // mesh's connector.
    let own = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(2)
        .build::<_, ReplayBody<Full<Bytes>>>(mesh.connector());
    let plain = mesh.client_layer("plain").layer(own.clone());
    let multiplexed = mesh.client_layer("multiplexed").layer(own);

    let request = || Request::get("http://plain/").body(Full::default()).unwrap();
    let response = plain.oneshot(request()).await.unwrap();
    assert_eq!(
        response.extensions().get::<ServedBy>(),
        Some(&ServedBy(server.addr))
    );
    let echo = body_text(response.into_body()).await;
    assert!(echo.starts_with("HTTP/1.1 "), "{echo}");
    let budget = millis(&echo);
    assert!(
        (1..=5_000).contains(&budget),
        "the route's timeout went on the wire: {echo}"
    );

    // The same client speaks HTTP/2 to an endpoint whose cluster says so,
    // and without a deadline sends no budget.
    let echo = body_text(multiplexed.oneshot(request()).await.unwrap().into_body()).await;
    assert_eq!(echo, "HTTP/2.0 - -");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_and_the_routes_timeout_merge_and_the_earlier_wins() {
    let server = echo_server().await;
    let mesh = mesh_of(&format!(
        "services:\n  long:\n    routes: [{{ split: [{{ cluster: pool }}], timeout: 60s }}]\n  short:\n    routes: [{{ split: [{{ cluster: pool }}], timeout: 2s }}]\nclusters:\n  pool:\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    let send = |service: &'static str, request: Request<Full<Bytes>>, caller: Option<Duration>| {
        let client = mesh.http_client::<Full<Bytes>>(service);
        async move {
            let sent = client.oneshot(request);
            let response = match caller {
                Some(budget) => Deadline::after(budget).scope(sent).await,
                None => sent.await,
            };
            body_text(response.unwrap().into_body()).await
        }
    };
    let get = || Request::get("http://x/").body(Full::default()).unwrap();

    // The caller's 3 s beat the route's 60 s.
    let budget = millis(&send("long", get(), Some(Duration::from_secs(3))).await);
    assert!((1..=3_000).contains(&budget), "{budget}");
    // The route's 2 s beat the caller's 60 s.
    let budget = millis(&send("short", get(), Some(Duration::from_secs(60))).await);
    assert!((1..=2_000).contains(&budget), "{budget}");

    // gRPC carries it as grpc-timeout, and a caller's own grpc-timeout
    // (tonic's `set_timeout`) is a deadline the mesh keeps.
    let grpc = Request::post("http://x/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "1500m")
        .body(Full::default())
        .unwrap();
    let echo = send("long", grpc, None).await;
    let sent = echo.split(' ').nth(2).unwrap_or_default().to_owned();
    let budget = sinew::deadline::parse_grpc_timeout(sent.as_bytes())
        .unwrap_or_else(|| panic!("no grpc-timeout in {echo:?}"));
    assert!(
        budget <= Duration::from_millis(1500) && budget > Duration::ZERO,
        "{echo}"
    );
    assert_eq!(millis_or_none(&echo), None, "{echo}");
}

fn millis_or_none(echo: &str) -> Option<u64> {
    echo.split(' ').nth(1).and_then(|m| m.parse().ok())
}

/// Fires when dropped: a handler that was cancelled drops it.
struct Cancelled(mpsc::UnboundedSender<()>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_crosses_two_hops_and_the_second_hop_enforces_it() {
    // The second hop hangs until its deadline cancels it.
    let (cancelled, mut was_cancelled) = mpsc::unbounded_channel();
    let (seen_by_b, mut b_saw) = mpsc::unbounded_channel::<String>();
    let b = serve(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(EnforceDeadlineLayer::new(EnforceDeadlineConfig::default()).unwrap())
            .service(handler(move |req: Request<hyper::body::Incoming>| {
                let guard = Cancelled(cancelled.clone());
                let budget = req
                    .headers()
                    .get("sinew-timeout-ms")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                let _ = seen_by_b.send(budget);
                async move {
                    std::future::pending::<()>().await;
                    drop(guard);
                    text(200, "unreachable")
                }
            })),
    )
    .await;
    let mesh_b = mesh_of(&format!(
        "services:\n  b:\n    routes: [{{ split: [{{ cluster: b }}] }}]\nclusters:\n  b:\n    endpoints: [{{ address: \"{}\" }}]\n",
        b.addr
    ))
    .await;
    // The first hop calls b with no timeout of its own: what bounds the
    // call is the budget its caller sent.
    let to_b = mesh_b.http_client::<Full<Bytes>>("b");
    let a = serve(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(EnforceDeadlineLayer::new(EnforceDeadlineConfig::default()).unwrap())
            .service(handler(move |_req: Request<hyper::body::Incoming>| {
                let to_b = to_b.clone();
                async move {
                    let request = Request::get("http://b/").body(Full::default()).unwrap();
                    match to_b.oneshot(request).await {
                        Ok(response) => text(response.status().as_u16(), "from b"),
                        // a's own client gives up at the same deadline.
                        Err(error) if error.is::<sinew::deadline::DeadlineExceeded>() => {
                            text(504, error.to_string())
                        }
                        Err(error) => text(599, error.to_string()),
                    }
                }
            })),
    )
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  a:\n    routes: [{{ split: [{{ cluster: a }}], timeout: 1500ms }}]\nclusters:\n  a:\n    endpoints: [{{ address: \"{}\" }}]\n",
        a.addr
    ))
    .await;
    let started = tokio::time::Instant::now();
    let outcome = mesh
        .http_client::<Full<Bytes>>("a")
        .oneshot(Request::get("http://a/").body(Full::default()).unwrap())
        .await;
    // The caller gives up at its route's timeout (or gets a's 504).
    if let Ok(response) = &outcome {
        assert_eq!(response.status(), 504);
    }
    let within = Duration::from_secs(20);
    let budget = tokio::time::timeout(within, b_saw.recv())
        .await
        .expect("b was called")
        .unwrap_or_default();
    let budget: u64 = budget
        .parse()
        .unwrap_or_else(|_| panic!("b saw {budget:?}"));
    assert!(
        (1..1_500).contains(&budget),
        "b was sent what was left of a's budget: {budget} ms"
    );
    tokio::time::timeout(within, was_cancelled.recv())
        .await
        .expect("b cancelled its handler at the deadline");
    assert!(started.elapsed() < within);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_past_its_routes_timeout_is_deadline_exceeded() {
    let hung = serve(handler(|_req: Request<hyper::body::Incoming>| async {
        std::future::pending::<()>().await;
        text(200, "unreachable")
    }))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: g }}], timeout: 200ms }}]\nclusters:\n  g:\n    protocol: http2\n    endpoints: [{{ address: \"{}\" }}]\n",
        hung.addr
    ))
    .await;
    let mut client = tonic::client::Grpc::with_origin(
        mesh.grpc_channel("greeter"),
        "http://greeter".parse().unwrap(),
    );
    client.ready().await.unwrap();
    let status = client
        .unary(
            tonic::Request::new(Bytes::from_static(b"hi")),
            http::uri::PathAndQuery::from_static("/sinew.test.Greeter/Hello"),
            sinew::mesh::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_deadline_is_enforced_on_a_route_without_a_timeout() {
    let hung = serve(handler(|_req: Request<hyper::body::Incoming>| async {
        std::future::pending::<()>().await;
        text(200, "unreachable")
    }))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  slow:\n    routes: [{{ split: [{{ cluster: hung }}] }}]\nclusters:\n  hung:\n    endpoints: [{{ address: \"{}\" }}]\n",
        hung.addr
    ))
    .await;
    let sent = mesh
        .http_client::<Full<Bytes>>("slow")
        .oneshot(Request::get("http://slow/").body(Full::default()).unwrap());
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        Deadline::after(Duration::from_millis(300)).scope(sent),
    )
    .await
    .expect("the caller's deadline ended the call");
    let error = outcome.unwrap_err();
    assert!(error.is::<sinew::deadline::DeadlineExceeded>(), "{error}");
}
