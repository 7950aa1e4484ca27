use super::*;
use crate::error::BoxError;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt};

fn layer(config: BreakerConfig) -> BreakerLayer {
    BreakerLayer::new(config).unwrap_or_else(|e| unreachable!("{e}"))
}

fn by_count(n: u32) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: Some(n),
        failure_rate: None,
        open_for: Duration::from_secs(1),
        half_open_probes: 1,
    }
}

/// A server that fails while `failing` is set, counting calls.
fn server(
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<String>, Error = BoxError, Future = impl Send> + Clone
{
    tower::service_fn(move |_req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let fail = failing.load(Ordering::SeqCst);
        async move {
            let mut response = Response::new(String::new());
            if fail {
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            }
            Ok(response)
        }
    })
}

async fn status<S>(svc: &mut S) -> Result<StatusCode, BoxError>
where
    S: Service<
            Request<()>,
            Response = Response<BreakerBody<String, crate::classify::StatusClassifier>>,
            Error = BoxError,
        >,
{
    svc.ready()
        .await?
        .call(Request::new(()))
        .await
        .map(|r| r.status())
}

fn is_open(result: &Result<StatusCode, BoxError>) -> bool {
    result.as_ref().err().is_some_and(|e| e.is::<BreakerOpen>())
}

#[tokio::test(start_paused = true)]
async fn trips_fails_fast_and_recovers_through_a_probe() {
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let seen = transitions.clone();
    let layer = layer(by_count(3)).on_transition(move |t| {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((t.from, t.to));
    });
    let failing = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(server(failing.clone(), calls.clone()));

    for _ in 0..3 {
        assert_eq!(
            status(&mut svc).await.ok(),
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        );
    }
    assert_eq!(layer.state(), State::Open);
    assert!(is_open(&status(&mut svc).await));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "an open breaker sends nothing"
    );

    // Still open just before open_for has passed.
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(is_open(&status(&mut svc).await));

    // The probe fails: open again, for another open_for.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        status(&mut svc).await.ok(),
        Some(StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(layer.state(), State::Open);

    // The server heals; the next probe closes the breaker.
    failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(status(&mut svc).await.ok(), Some(StatusCode::OK));
    assert_eq!(layer.state(), State::Closed);
    assert_eq!(status(&mut svc).await.ok(), Some(StatusCode::OK));

    use State::*;
    let transitions = transitions.lock().map(|t| t.clone()).unwrap_or_default();
    assert_eq!(
        transitions,
        vec![
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_n_probes_among_a_thousand_callers() {
    let layer = layer(BreakerConfig {
        half_open_probes: 3,
        ..by_count(1)
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    let (c, r) = (calls.clone(), release.clone());
    let fail_first = Arc::new(AtomicBool::new(true));
    let svc = layer.layer(tower::service_fn(move |_req: Request<()>| {
        c.fetch_add(1, Ordering::SeqCst);
        let (r, fail) = (r.clone(), fail_first.swap(false, Ordering::SeqCst));
        async move {
            let mut response = Response::new(String::new());
            if fail {
                *response.status_mut() = StatusCode::BAD_GATEWAY;
            } else {
                let _permit = r.acquire().await;
            }
            Ok::<_, BoxError>(response)
        }
    }));
    let _ = svc.clone().oneshot(Request::new(())).await;
    assert_eq!(layer.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;

    let callers = (0..1000).map(|_| svc.clone().oneshot(Request::new(())));
    let everyone = futures_util::future::join_all(callers);
    let opener = async {
        // Release the probes only once every caller has reached the breaker.
        let reached = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while calls.load(Ordering::SeqCst) < 4 {
                tokio::task::yield_now().await;
            }
        });
        assert!(reached.await.is_ok(), "every caller reached the breaker");
        release.add_permits(1000);
    };
    let (results, ()) = tokio::join!(everyone, opener);
    let mut refused = 0;
    let mut passed = 0;
    for result in results {
        match result {
            Ok(_) => passed += 1,
            Err(e) if e.is::<BreakerOpen>() => refused += 1,
            Err(e) => unreachable!("unexpected {e}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1 + 3);
    assert_eq!((passed, refused), (3, 997));
    assert_eq!(layer.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_gives_its_place_back() {
    let layer = layer(by_count(1));
    let failing = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(server(failing.clone(), calls.clone()));
    let _ = status(&mut svc).await;
    tokio::time::advance(Duration::from_secs(1)).await;

    let probe = svc.call(Request::new(()));
    assert!(is_open(&status(&mut svc).await), "the only probe is taken");
    drop(probe);
    failing.store(false, Ordering::SeqCst);
    assert_eq!(status(&mut svc).await.ok(), Some(StatusCode::OK));
    assert_eq!(layer.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_needs_the_minimum_volume() {
    let layer = layer(BreakerConfig {
        consecutive_failures: None,
        failure_rate: Some(FailureRateConfig {
            threshold: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
        }),
        ..by_count(1)
    });
    let failing = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = layer.layer(server(failing.clone(), calls));
    // 19 requests, alternating: a 50% rate, but under the minimum volume.
    for i in 0..19 {
        failing.store(i % 2 == 0, Ordering::SeqCst);
        let _ = status(&mut svc).await;
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(layer.state(), State::Closed);
    failing.store(true, Ordering::SeqCst);
    let _ = status(&mut svc).await;
    assert_eq!(layer.state(), State::Open, "20 requests, 11 failed");

    // Old failures slide out of the window: after recovery the count restarts.
    tokio::time::advance(Duration::from_secs(1)).await;
    failing.store(false, Ordering::SeqCst);
    let _ = status(&mut svc).await;
    assert_eq!(layer.state(), State::Closed);
    failing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        let _ = status(&mut svc).await;
    }
    assert_eq!(
        layer.state(),
        State::Closed,
        "the window was reset on closing"
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_failures_in_trailers_count() {
    let layer = layer(by_count(2));
    let svc = layer.layer(tower::service_fn(|_req: Request<()>| async {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("14"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut response = Response::new(StreamBody::new(futures_util::stream::iter(frames)));
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        Ok::<_, BoxError>(response)
    }));
    for _ in 0..2 {
        let response = svc.clone().oneshot(Request::new(())).await;
        assert_eq!(
            layer.state(),
            State::Closed,
            "not classified before the trailers"
        );
        if let Ok(response) = response {
            let _ = response.into_body().collect().await;
        }
    }
    assert_eq!(layer.state(), State::Open);
}

/// Counts only 503 as a failure: a 500 is the caller's bad luck, not the
/// server's ill health.
#[derive(Clone)]
struct OnlyUnavailable;

impl crate::classify::Classify for OnlyUnavailable {
    fn classify_response(
        &self,
        status: StatusCode,
        _: &HeaderMap,
    ) -> Option<crate::classify::Outcome> {
        Some(if status == StatusCode::SERVICE_UNAVAILABLE {
            crate::classify::Outcome::Failure { retryable: true }
        } else {
            crate::classify::Outcome::Success
        })
    }

    fn classify_trailers(&self, _: Option<&HeaderMap>) -> crate::classify::Outcome {
        crate::classify::Outcome::Success
    }

    fn classify_error(&self, _: &(dyn std::error::Error + 'static)) -> crate::classify::Outcome {
        crate::classify::Outcome::Failure { retryable: false }
    }
}

#[tokio::test(start_paused = true)]
async fn what_counts_as_a_failure_is_pluggable() {
    let layer = BreakerLayer::with_classifier(by_count(2), OnlyUnavailable)
        .unwrap_or_else(|e| unreachable!("{e}"));
    let failing = Arc::new(AtomicBool::new(true));
    let svc = layer.layer(server(failing, Arc::new(AtomicUsize::new(0))));
    for _ in 0..5 {
        let _ = svc.clone().oneshot(Request::new(())).await;
    }
    assert_eq!(layer.state(), State::Closed, "500s do not count here");
}

#[tokio::test(start_paused = true)]
async fn transitions_are_counted_and_the_state_shown_under_the_layers_labels() {
    let captured = crate::test_metrics::Captured::new();
    let layer = captured.with(|| layer(by_count(2)).with_metric_labels([("cluster", "pool")]));
    let closed = [("cluster", "pool"), ("state", "closed")];
    let open = [("cluster", "pool"), ("state", "open")];
    let values = captured.take();
    assert_eq!(values.get("sinew_breaker_state", &closed), Some(1.0));
    assert_eq!(values.get("sinew_breaker_state", &open), Some(0.0));

    let failing = Arc::new(AtomicBool::new(true));
    let mut svc = layer.layer(server(failing.clone(), Arc::default()));
    for _ in 0..2 {
        let _ = status(&mut svc).await;
    }
    assert_eq!(layer.state(), State::Open);
    let values = captured.take();
    let opened = [("cluster", "pool"), ("from", "closed"), ("to", "open")];
    assert_eq!(
        values.get("sinew_breaker_transitions_total", &opened),
        Some(1.0)
    );
    assert_eq!(values.get("sinew_breaker_state", &open), Some(1.0));
    assert_eq!(values.get("sinew_breaker_state", &closed), Some(0.0));

    // A probe that succeeds closes it again: two more transitions.
    failing.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(status(&mut svc).await.ok(), Some(StatusCode::OK));
    let values = captured.take();
    let from_half_open = [("cluster", "pool"), ("from", "half_open"), ("to", "closed")];
    assert_eq!(
        values.get("sinew_breaker_transitions_total", &from_half_open),
        Some(1.0)
    );
    assert_eq!(
        values.get("sinew_breaker_transitions_total", &[("cluster", "pool")]),
        Some(2.0),
        "open to half-open, half-open to closed"
    );
    assert_eq!(values.get("sinew_breaker_state", &closed), Some(1.0));
}
