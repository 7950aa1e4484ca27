use crate::support::{client, handler, serve, text};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{Empty, Full};
use sinew::deadline::PropagateDeadlineLayer;
use sinew::retry::{Attempts, ReplayBody, RetryConfig, RetryLayer};
use sinew::timeout::{Elapsed, TimeoutConfig, TimeoutLayer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};

fn timeout(ms: u64) -> TimeoutLayer {
    TimeoutLayer::new(TimeoutConfig::after(Duration::from_millis(ms))).unwrap()
}

/// A server whose first `hanging` requests never answer, recording the
/// budget each request carried.
async fn slow_then_fast(hanging: usize, budgets: Arc<Mutex<Vec<u64>>>) -> crate::support::Server {
    let seen = Arc::new(AtomicUsize::new(0));
    serve(handler(move |req: Request<hyper::body::Incoming>| {
        let (seen, budgets) = (seen.clone(), budgets.clone());
        async move {
            let budget = req
                .headers()
                .get("sinew-timeout-ms")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0);
            budgets.lock().unwrap().push(budget);
            if seen.fetch_add(1, Ordering::SeqCst) < hanging {
                std::future::pending::<()>().await;
            }
            text(200, "fast")
        }
    }))
    .await
}

#[tokio::test]
async fn a_request_timeout_fails_a_hanging_call() {
    let budgets = Arc::new(Mutex::new(Vec::new()));
    let server = slow_then_fast(usize::MAX, budgets.clone()).await;
    let svc = ServiceBuilder::new()
        .layer(timeout(150))
        .layer(PropagateDeadlineLayer::new())
        .service(client::<Empty<Bytes>>());
    let started = tokio::time::Instant::now();
    let err = svc
        .oneshot(Request::get(server.url("/")).body(Empty::new()).unwrap())
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        err.downcast_ref::<Elapsed>().map(Elapsed::timeout),
        Some(Duration::from_millis(150))
    );
    assert!(
        elapsed >= Duration::from_millis(150) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    let budgets = budgets.lock().unwrap().clone();
    assert!(
        matches!(budgets[..], [b] if b > 0 && b <= 150),
        "{budgets:?}"
    );
}

#[tokio::test]
async fn a_per_attempt_timeout_lets_a_retry_succeed_within_the_overall_deadline() {
    let budgets = Arc::new(Mutex::new(Vec::new()));
    let server = slow_then_fast(1, budgets.clone()).await;
    let mut config = RetryConfig::default();
    config.backoff.base = Duration::from_millis(1);
    config.backoff.max = Duration::from_millis(2);
    let svc = ServiceBuilder::new()
        .layer(timeout(2_000))
        .layer(RetryLayer::new(config).unwrap())
        .layer(timeout(100))
        .layer(PropagateDeadlineLayer::new())
        .service(client::<ReplayBody<Full<Bytes>>>());
    let request = Request::get(server.url("/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(2)));
    // Each attempt told the server its own, per-attempt budget.
    let budgets = budgets.lock().unwrap().clone();
    assert_eq!(budgets.len(), 2);
    assert!(budgets.iter().all(|&b| b > 0 && b <= 100), "{budgets:?}");
}
