use crate::support::{client, handler, serve, text};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use sinew::limit::{
    ConcurrencyLimitConfig, ConcurrencyLimitLayer, LoadShedLayer, RateLimitConfig, RateLimitLayer,
};
use sinew::respond::ErrorResponseLayer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

/// A handler that holds each request until the test releases it.
fn held(
    arrived: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = http::Response<http_body_util::Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    handler(move |_req| {
        let (arrived, release) = (arrived.clone(), release.clone());
        async move {
            arrived.fetch_add(1, Ordering::SeqCst);
            let _permit = release.acquire().await;
            text(200, "done")
        }
    })
}

async fn get_status(url: String) -> StatusCode {
    let request = Request::get(url).body(Empty::<Bytes>::new()).unwrap();
    client().request(request).await.unwrap().status()
}

#[tokio::test]
async fn a_full_server_refuses_at_once_with_503() {
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let limit = ConcurrencyLimitLayer::new(ConcurrencyLimitConfig {
        max_concurrent: 2,
        max_queue: 1,
    })
    .unwrap();
    let server = serve(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(limit.clone())
            .service(held(arrived.clone(), release.clone())),
    )
    .await;

    let running: Vec<_> = (0..2)
        .map(|_| tokio::spawn(get_status(server.url("/"))))
        .collect();
    crate::support::until("two requests at the server", || {
        arrived.load(Ordering::SeqCst) >= 2
    })
    .await;
    let queued = tokio::spawn(get_status(server.url("/")));
    crate::support::until("one request queued", || limit.queued() >= 1).await;
    // Two in flight, one queued: the next is refused without waiting.
    assert_eq!(
        get_status(server.url("/")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    release.add_permits(3);
    for task in running {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(queued.await.unwrap(), StatusCode::OK);
    assert_eq!(arrived.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_rate_limited_server_answers_429_with_retry_after() {
    let server = serve(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(
                RateLimitLayer::new(RateLimitConfig {
                    per_second: 0.5,
                    burst: 3,
                })
                .unwrap(),
            )
            .service(handler(|_req| async { text(200, "ok") })),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let request = Request::get(server.url("/"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = client().request(request).await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "2");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn load_shedding_refuses_when_the_service_is_not_ready() {
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    // tower's concurrency limit makes the service not ready when full;
    // load shedding turns that into an immediate refusal.
    let server = serve(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(LoadShedLayer::new())
            .layer(tower::limit::ConcurrencyLimitLayer::new(1))
            .service(held(arrived.clone(), release.clone())),
    )
    .await;
    let first = tokio::spawn(get_status(server.url("/")));
    crate::support::until("one request at the server", || {
        arrived.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(
        get_status(server.url("/")).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    release.add_permits(1);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
}
