use super::*;
use crate::deadline::Deadline;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type Reply = Result<Response<String>, crate::error::BoxError>;

/// A server whose n-th call (from 0) answers with `script(n, body)`.
fn server(
    calls: Arc<AtomicUsize>,
    script: impl Fn(usize) -> Option<Reply> + Clone + Send + Sync + 'static,
) -> impl tower::Service<
    Request<ReplayBody<Full<Bytes>>>,
    Response = Response<String>,
    Error = crate::error::BoxError,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: Request<ReplayBody<Full<Bytes>>>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let script = script.clone();
        async move {
            let body = req.into_body().collect().await?.to_bytes();
            match script(n) {
                Some(reply) => reply.map(|mut r| {
                    *r.body_mut() = format!("{}:{}", r.body(), String::from_utf8_lossy(&body));
                    r
                }),
                None => std::future::pending().await,
            }
        }
    })
}

fn status(code: StatusCode) -> Option<Reply> {
    let mut response = Response::new(String::from("s"));
    *response.status_mut() = code;
    Some(Ok(response))
}

fn refused() -> Option<Reply> {
    Some(Err(std::io::Error::from(
        std::io::ErrorKind::ConnectionRefused,
    )
    .into()))
}

fn layer(config: RetryConfig) -> RetryLayer {
    RetryLayer::new(config).unwrap_or_else(|e| unreachable!("{e}"))
}

fn request(method: Method, body: &'static str) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
    *request.method_mut() = method;
    request
}

fn no_jitter() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        },
        ..RetryConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn retries_idempotent_requests_until_success_with_backoff() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(no_jitter());
    let svc = layer.layer(server(calls.clone(), |n| {
        status(if n < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        })
    }));
    let started = Instant::now();
    let response = svc.oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(
        response.as_ref().map(Response::status),
        Some(StatusCode::OK)
    );
    assert_eq!(
        response
            .as_ref()
            .and_then(|r| r.extensions().get::<Attempts>()),
        Some(&Attempts(3))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // 25 ms, then 50 ms of backoff.
    assert_eq!(started.elapsed(), Duration::from_millis(75));
    assert_eq!(layer.stats().retries, 2);
}

#[tokio::test(start_paused = true)]
async fn stops_at_max_attempts_and_returns_the_last_failure() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(no_jitter()).layer(server(calls.clone(), |_| status(StatusCode::BAD_GATEWAY)));
    let response = svc.oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(response.map(|r| r.status()), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_retried_only_when_never_processed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(no_jitter()).layer(server(calls.clone(), |_| {
        status(StatusCode::SERVICE_UNAVAILABLE)
    }));
    let response = svc.oneshot(request(Method::POST, "order")).await.ok();
    assert_eq!(
        response.map(|r| r.status()),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a POST that may have been processed"
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(no_jitter()).layer(server(calls.clone(), |n| {
        if n == 0 {
            refused()
        } else {
            status(StatusCode::OK)
        }
    }));
    let response = svc.oneshot(request(Method::POST, "order")).await.ok();
    assert_eq!(
        response.map(|r| r.into_body()),
        Some(String::from("s:order"))
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a refused connection proves nothing was processed"
    );

    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(no_jitter()).layer(server(calls.clone(), |n| {
        status(if n == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        })
    }));
    let mut post = request(Method::POST, "set");
    post.extensions_mut().insert(Idempotency::Idempotent);
    let response = svc.oneshot(post).await.ok();
    assert_eq!(response.map(|r| r.into_body()), Some(String::from("s:set")));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "declared idempotent, body replayed"
    );
}

#[tokio::test(start_paused = true)]
async fn bodies_over_the_cap_are_sent_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(RetryConfig {
        max_replay_bytes: 4,
        ..no_jitter()
    })
    .layer(server(calls.clone(), |_| {
        status(StatusCode::SERVICE_UNAVAILABLE)
    }));
    let response = svc.oneshot(request(Method::PUT, "too large")).await.ok();
    assert_eq!(
        response.map(|r| r.into_body()),
        Some(String::from("s:too large"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_retries() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(RetryConfig {
        max_attempts: 2,
        budget: BudgetConfig {
            ratio: 0.5,
            min_per_second: 0,
            window: Duration::from_secs(10),
        },
        ..no_jitter()
    });
    let svc = layer.layer(server(calls.clone(), |_| {
        status(StatusCode::SERVICE_UNAVAILABLE)
    }));
    for _ in 0..10 {
        let _ = svc.clone().oneshot(request(Method::GET, "")).await;
    }
    let stats = layer.stats();
    assert_eq!(stats.retries, 5, "one retry per two requests");
    assert_eq!(stats.budget_exhausted, 5);
    assert_eq!(calls.load(Ordering::SeqCst), 15);
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_without_the_minimum_time_left() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(RetryConfig {
        min_attempt_time: Duration::from_millis(10),
        ..no_jitter()
    })
    .layer(server(calls.clone(), |_| {
        status(StatusCode::SERVICE_UNAVAILABLE)
    }));
    // The first retry would start after 25 ms of backoff, with 5 ms left.
    let _ = Deadline::after(Duration::from_millis(30))
        .scope(svc.clone().oneshot(request(Method::GET, "")))
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // With 100 ms, the retries at 25 ms and 75 ms both fit.
    let _ = Deadline::after(Duration::from_millis(100))
        .scope(svc.oneshot(request(Method::GET, "")))
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn hedging_sends_a_second_attempt_and_cancels_the_loser() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(RetryConfig {
        hedge: Some(HedgeConfig::after(Duration::from_millis(50))),
        ..no_jitter()
    });
    // The first attempt never answers; the hedge answers at once.
    let svc = layer.layer(server(calls.clone(), |n| {
        if n == 0 { None } else { status(StatusCode::OK) }
    }));
    let started = Instant::now();
    let response = svc.oneshot(request(Method::GET, "q")).await.ok();
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!(response.map(|r| r.into_body()), Some(String::from("s:q")));
    assert_eq!(layer.stats().hedges, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn hedging_moves_on_at_once_after_a_retryable_failure() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(RetryConfig {
        hedge: Some(HedgeConfig {
            delay: Duration::from_secs(1),
            max_attempts: 3,
        }),
        ..no_jitter()
    })
    .layer(server(calls.clone(), |n| {
        status(if n < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        })
    }));
    let started = Instant::now();
    let response = svc.oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(response.map(|r| r.status()), Some(StatusCode::OK));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_not_hedged() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(RetryConfig {
        hedge: Some(HedgeConfig::after(Duration::from_millis(5))),
        ..no_jitter()
    })
    .layer(server(calls.clone(), |_| status(StatusCode::OK)));
    let _ = svc.oneshot(request(Method::POST, "")).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// An application's classifier: 429 is worth retrying, after backoff.
#[derive(Clone)]
struct RetryTooManyRequests;

impl crate::classify::Classify for RetryTooManyRequests {
    fn classify_response(
        &self,
        status: StatusCode,
        headers: &http::HeaderMap,
    ) -> Option<crate::classify::Outcome> {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Some(crate::classify::Outcome::Failure { retryable: true });
        }
        crate::classify::StatusClassifier::default().classify_response(status, headers)
    }

    fn classify_trailers(&self, trailers: Option<&http::HeaderMap>) -> crate::classify::Outcome {
        crate::classify::StatusClassifier::default().classify_trailers(trailers)
    }

    fn classify_error(
        &self,
        error: &(dyn std::error::Error + 'static),
    ) -> crate::classify::Outcome {
        crate::classify::StatusClassifier::default().classify_error(error)
    }
}

#[tokio::test(start_paused = true)]
async fn the_application_decides_what_is_retryable() {
    let calls = Arc::new(AtomicUsize::new(0));
    let script = |n| {
        status(if n == 0 {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        })
    };
    let default = layer(no_jitter()).layer(server(calls.clone(), script));
    let response = default.oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(
        response.map(|r| r.status()),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let calls = Arc::new(AtomicUsize::new(0));
    let custom = RetryLayer::with_classifier(no_jitter(), RetryTooManyRequests)
        .unwrap_or_else(|e| unreachable!("{e}"))
        .layer(server(calls.clone(), script));
    let response = custom.oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(response.map(|r| r.status()), Some(StatusCode::OK));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn later_attempts_are_marked_for_the_layers_below() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let svc = layer(no_jitter()).layer(tower::service_fn(
        move |req: Request<ReplayBody<Full<Bytes>>>| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(req.extensions().get::<Attempt>().copied());
            async {
                let mut response = Response::new(String::new());
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Ok::<_, crate::error::BoxError>(response)
            }
        },
    ));
    let _ = svc.oneshot(request(Method::GET, "")).await;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen, vec![None, Some(Attempt(2)), Some(Attempt(3))]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_cut_by_the_per_try_timeout_and_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = layer(RetryConfig {
        per_try_timeout: Some(Duration::from_millis(100)),
        ..no_jitter()
    });
    // The first two attempts never answer.
    let svc = layer.layer(server(calls.clone(), |n| {
        if n < 2 { None } else { status(StatusCode::OK) }
    }));
    let started = Instant::now();
    let response = svc.clone().oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(response.map(|r| r.status()), Some(StatusCode::OK));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // Two cut attempts, 25 ms and 50 ms of backoff.
    assert_eq!(started.elapsed(), Duration::from_millis(275));

    // With every attempt hanging, the caller gets the timeout as the error.
    let svc = layer.layer(server(Arc::new(AtomicUsize::new(0)), |_| None));
    let error = svc.oneshot(request(Method::GET, "")).await.err();
    let timed_out = error
        .as_ref()
        .and_then(|e| e.downcast_ref::<AttemptTimedOut>());
    assert_eq!(
        timed_out,
        Some(&AttemptTimedOut(Duration::from_millis(100)))
    );
}

#[tokio::test(start_paused = true)]
async fn retry_on_names_the_statuses_and_codes_that_are_retried() {
    let config = |statuses: Vec<u16>| RetryConfig {
        retry_on: Some(RetryOn {
            statuses,
            grpc: vec!["resource-exhausted".into()],
            errors: false,
        }),
        ..no_jitter()
    };
    // 409 is retried once named, though the classifier calls it a success.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(config(vec![409])).layer(server(calls.clone(), |n| {
        status(if n == 0 {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        })
    }));
    let response = svc.oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(response.map(|r| r.status()), Some(StatusCode::OK));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // 503 is retried by default, and not once the list leaves it out.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(config(vec![409])).layer(server(calls.clone(), |_| {
        status(StatusCode::SERVICE_UNAVAILABLE)
    }));
    let response = svc.oneshot(request(Method::GET, "")).await.ok();
    assert_eq!(
        response.map(|r| r.status()),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // gRPC: RESOURCE_EXHAUSTED (not retried by default) is.
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer(config(vec![])).layer(server(calls.clone(), |n| {
        let mut response = Response::new(String::from("s"));
        let headers = response.headers_mut();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        let code = if n == 0 { "8" } else { "0" };
        headers.insert("grpc-status", http::HeaderValue::from_static(code));
        Some(Ok(response))
    }));
    let response = svc.oneshot(request(Method::GET, "")).await.ok();
    let code = response.and_then(|r| crate::grpc::Code::from_headers(r.headers()));
    assert_eq!(code, Some(crate::grpc::Code::OK));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn retries_hedges_and_refusals_are_counted_under_the_layers_labels() {
    let captured = crate::test_metrics::Captured::new();
    let retrying = captured.with(|| {
        layer(RetryConfig {
            max_attempts: 2,
            budget: BudgetConfig {
                ratio: 0.5,
                min_per_second: 0,
                window: Duration::from_secs(10),
            },
            ..no_jitter()
        })
        .with_metric_labels([("service", "reviews"), ("route", "0")])
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = retrying.layer(server(calls.clone(), |_| {
        status(StatusCode::SERVICE_UNAVAILABLE)
    }));
    for _ in 0..4 {
        let _ = svc.clone().oneshot(request(Method::GET, "")).await;
    }
    let stats = retrying.stats();
    let values = captured.take();
    let labels = [("service", "reviews"), ("route", "0")];
    assert_eq!(
        values.get("sinew_retries_total", &labels),
        Some(stats.retries as f64)
    );
    assert_eq!(stats.retries, 2);
    assert_eq!(
        values.get(
            "sinew_retries_total",
            &[("service", "reviews"), ("reason", "status")]
        ),
        Some(2.0),
        "each retry followed a 503"
    );
    assert_eq!(
        values.get("sinew_retry_budget_exhausted_total", &labels),
        Some(2.0)
    );
    for names in values.label_names("sinew_retries_total") {
        assert_eq!(names, ["service", "route", "reason"]);
    }

    let hedging = captured.with(|| {
        layer(RetryConfig {
            hedge: Some(HedgeConfig::after(Duration::from_millis(50))),
            ..no_jitter()
        })
        .with_metric_labels([("service", "ratings"), ("route", "1")])
    });
    // The first attempt never answers; the hedge answers at once.
    let svc = hedging.layer(server(Arc::default(), |n| {
        if n == 0 { None } else { status(StatusCode::OK) }
    }));
    let _ = svc.oneshot(request(Method::GET, "")).await;
    let values = captured.take();
    assert_eq!(
        values.get(
            "sinew_hedges_total",
            &[("service", "ratings"), ("reason", "delay")]
        ),
        Some(1.0)
    );
    assert_eq!(
        values.get(
            "sinew_hedges_total",
            &[("service", "ratings"), ("reason", "failure")]
        ),
        Some(0.0)
    );
}
