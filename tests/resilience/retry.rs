use crate::support::{body_text, client, closed_port, handler, serve, text};
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use sinew::retry::{Attempts, Idempotency, ReplayBody, RetryConfig, RetryLayer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::{Layer, ServiceExt};

fn fast_retries() -> RetryConfig {
    let mut config = RetryConfig {
        max_attempts: 4,
        ..RetryConfig::default()
    };
    config.backoff.base = Duration::from_millis(1);
    config.backoff.max = Duration::from_millis(5);
    config
}

/// A server that answers 503 to its first `failures` requests, and echoes
/// the request body after that.
async fn flaky(failures: usize, seen: Arc<AtomicUsize>) -> crate::support::Server {
    serve(handler(move |req: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if n < failures {
                text(503, "unavailable")
            } else {
                text(200, body)
            }
        }
    }))
    .await
}

#[tokio::test]
async fn retries_a_server_that_fails_its_first_requests() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = flaky(2, seen.clone()).await;
    let layer = RetryLayer::new(fast_retries()).unwrap();
    let svc = layer.layer(client::<ReplayBody<Full<Bytes>>>());

    let request = Request::get(server.url("/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(3)));
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(layer.stats().retries, 2);
}

#[tokio::test]
async fn replays_the_body_of_a_declared_idempotent_post() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = flaky(1, seen.clone()).await;
    let svc = RetryLayer::new(fast_retries())
        .unwrap()
        .layer(client::<ReplayBody<Full<Bytes>>>());

    let payload = Bytes::from(vec![b'x'; 10_000]);
    let mut request = Request::post(server.url("/put"))
        .body(Full::new(payload.clone()))
        .unwrap();
    request.extensions_mut().insert(Idempotency::Idempotent);
    let response = svc.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response.into_body()).await.len(), payload.len());
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // The same POST without the declaration may have been processed:
    // it is not retried.
    let seen2 = Arc::new(AtomicUsize::new(0));
    let server = flaky(1, seen2.clone()).await;
    let request = Request::post(server.url("/order"))
        .body(Full::new(payload))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen2.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retries_a_post_whose_connection_was_refused() {
    // The first attempt goes to a closed port, the next to the live server:
    // a connect error proves the POST was never processed.
    let seen = Arc::new(AtomicUsize::new(0));
    let server = flaky(0, seen.clone()).await;
    let dead = closed_port().await;
    let live = server.addr;
    let attempts = Arc::new(AtomicUsize::new(0));
    let http = client::<ReplayBody<Full<Bytes>>>();
    let counted = attempts.clone();
    let routed = tower::service_fn(move |mut req: Request<ReplayBody<Full<Bytes>>>| {
        let target = if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            dead
        } else {
            live
        };
        *req.uri_mut() = Uri::try_from(format!("http://{target}/pay")).unwrap();
        http.request(req)
    });
    let svc = RetryLayer::new(fast_retries()).unwrap().layer(routed);
    let mut request = Request::new(Full::new(Bytes::from_static(b"once")));
    *request.method_mut() = Method::POST;
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response.into_body()).await, "once");
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the server saw the POST once"
    );
}

#[tokio::test]
async fn hedging_answers_from_the_second_attempt_and_cancels_the_first() {
    use sinew::retry::HedgeConfig;

    // The first request hangs until the client gives up on it.
    let seen = Arc::new(AtomicUsize::new(0));
    let (cancelled_tx, cancelled_rx) = tokio::sync::oneshot::channel::<()>();
    let cancelled_tx = Arc::new(std::sync::Mutex::new(Some(cancelled_tx)));
    let s = seen.clone();
    let server = serve(handler(move |_req| {
        let n = s.fetch_add(1, Ordering::SeqCst);
        let notify = cancelled_tx.clone();
        async move {
            if n == 0 {
                struct OnDrop(Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        if let Some(tx) = self.0.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }
                let _guard = OnDrop(notify);
                std::future::pending::<()>().await;
            }
            text(200, format!("attempt {n}"))
        }
    }))
    .await;
    let layer = RetryLayer::new(RetryConfig {
        hedge: Some(HedgeConfig::after(Duration::from_millis(30))),
        ..RetryConfig::default()
    })
    .unwrap();
    // HTTP/2, so that cancelling the first attempt resets its stream and
    // the server sees the cancellation.
    let svc = layer.layer(crate::support::h2_client::<ReplayBody<Full<Bytes>>>());
    let request = Request::get(server.url("/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.oneshot(request).await.unwrap();
    assert_eq!(body_text(response.into_body()).await, "attempt 1");
    assert_eq!(layer.stats().hedges, 1);
    cancelled_rx
        .await
        .expect("the losing attempt was cancelled on the server");
}
