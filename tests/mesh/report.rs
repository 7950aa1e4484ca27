//! The decision report every mesh response carries, its short form in the
//! `sinew-decision` header, and `Mesh::explain`, over real servers.

use super::*;
use sinew::breaker::BreakerOpen;
use sinew::config::Health;
use sinew::mesh::ServedBy;
use sinew::telemetry::report::{
    AttemptReason, AttemptResult, BreakerDecision, Cause, DecisionReport, ErrorClass, Refusal,
    ReportSink,
};
use std::time::Duration;

/// Waits at most this long for anything.
const PATIENCE: Duration = Duration::from_secs(10);

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("http://reviews{path}"))
        .body(Empty::new())
        .unwrap()
}

/// A server that answers 503 to the first request any of its clones
/// sees (`failures` is shared), 200 afterwards.
async fn fails_first(failures: Arc<AtomicUsize>) -> support::Server {
    serve(handler(move |_req: Request<hyper::body::Incoming>| {
        let first = failures.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            match first {
                true => text(503, "first"),
                false => text(200, "ok"),
            }
        }
    }))
    .await
}

fn report_of<B>(response: &http::Response<B>) -> &DecisionReport {
    response
        .extensions()
        .get::<DecisionReport>()
        .expect("every response carries its report")
}

#[tokio::test]
async fn a_retried_requests_report_lists_both_attempts_their_endpoints_and_why() {
    let seen = Arc::new(AtomicUsize::new(0));
    let a = fails_first(seen.clone()).await;
    let b = fails_first(seen.clone()).await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n        retry: {{ max_attempts: 2, backoff: {{ base: 1ms, max: 2ms }} }}\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
        a.addr, b.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let response = tokio::time::timeout(PATIENCE, client.oneshot(get("/r/1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report = report_of(&response);
    assert_eq!(report.service(), "reviews");
    assert_eq!(report.cluster(), "pool");
    assert_eq!(report.route(), 0);
    assert_eq!(report.version(), mesh.snapshot().version());
    let attempts: Vec<_> = report.attempts().collect();
    assert_eq!(attempts.len(), 2, "{report}");
    let (first, second) = (attempts[0], attempts[1]);
    assert_eq!(first.number, 1);
    assert_eq!(first.reason, AttemptReason::First);
    assert_eq!(
        first.result,
        AttemptResult::Status(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(
        second.reason,
        AttemptReason::Retry {
            after: Cause::Status(StatusCode::SERVICE_UNAVAILABLE)
        }
    );
    assert_eq!(second.result, AttemptResult::Status(StatusCode::OK));
    // Round robin sends the retry to the other endpoint.
    let endpoints = [first.endpoint.unwrap(), second.endpoint.unwrap()];
    assert!(
        endpoints.contains(&a.addr) && endpoints.contains(&b.addr),
        "{report}"
    );
    assert_eq!(
        response.extensions().get::<ServedBy>().map(|s| s.0),
        second.endpoint
    );
    assert!(second.start >= first.start);
    assert!(first.duration.is_some() && second.duration.is_some());
    assert!(report.elapsed().is_some());
    // Without a breaker, none is reported.
    assert_eq!(first.breaker, None);
}

#[tokio::test]
async fn a_hedge_is_reported_with_its_delay_and_the_loser_as_cancelled() {
    // The first request hangs until the test ends; later ones answer.
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, hold) = tokio::sync::watch::channel(());
    let counter = calls.clone();
    let server = serve(handler(move |_req: Request<hyper::body::Incoming>| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        let mut hold = hold.clone();
        async move {
            if first {
                let _ = hold.changed().await;
            }
            text(200, "ok")
        }
    }))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n        retry: {{ max_attempts: 2, hedge: {{ delay: 20ms }} }}\nclusters:\n  pool:\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let response = tokio::time::timeout(PATIENCE, client.oneshot(get("/r/1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report = report_of(&response);
    let attempts: Vec<_> = report.attempts().collect();
    assert_eq!(attempts.len(), 2, "{report}");
    assert_eq!(attempts[0].result, AttemptResult::Cancelled, "{report}");
    assert_eq!(attempts[0].endpoint, Some(server.addr));
    assert_eq!(
        attempts[1].reason,
        AttemptReason::Hedge {
            delay: Duration::from_millis(20)
        }
    );
    assert_eq!(attempts[1].result, AttemptResult::Status(StatusCode::OK));
    assert!(attempts[1].start >= Duration::from_millis(20), "{report}");
    drop(release);
}

#[tokio::test]
async fn a_breaker_refusal_is_in_the_report_of_the_failed_request() {
    let server = serve(handler(|_req: Request<hyper::body::Incoming>| async {
        text(500, "down")
    }))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    breaker: {{ consecutive_failures: 2, open_for: 60s }}\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    for _ in 0..2 {
        let response = client.clone().oneshot(get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let first = report_of(&response).attempt(1).unwrap().clone();
        assert!(
            matches!(first.breaker, Some(BreakerDecision::Admitted(_))),
            "{first:?}"
        );
    }
    let sink = ReportSink::default();
    let mut request = get("/");
    request.extensions_mut().insert(sink.clone());
    let error = client.oneshot(request).await.unwrap_err();
    // The error keeps its own type; the report is in the sink.
    assert!(error.is::<BreakerOpen>(), "{error}");
    let report = sink.take().expect("the sink holds the report");
    let attempts: Vec<_> = report.attempts().collect();
    assert_eq!(attempts.len(), 1, "{report}");
    assert_eq!(attempts[0].breaker, Some(BreakerDecision::Refused));
    assert_eq!(
        attempts[0].result,
        AttemptResult::Refused(Refusal::BreakerOpen)
    );
    assert_eq!(attempts[0].endpoint, None);
}

#[tokio::test]
async fn the_decision_header_is_returned_only_where_the_configuration_allows_it() {
    // The endpoint counts the requests that still carry the ask: it is
    // for the caller's own mesh client, and goes no further.
    let forwarded = Arc::new(AtomicUsize::new(0));
    let seen = forwarded.clone();
    let server = serve(handler(move |req: Request<hyper::body::Incoming>| {
        if req.headers().contains_key("sinew-debug") {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        async move { text(200, "a") }
    }))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    debug_header: true\n    routes: [{{ split: [{{ cluster: pool }}] }}]\n  ratings:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    let asking = |service: &str| {
        Request::get(format!("http://{service}/"))
            .header("sinew-debug", "1")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    // Allowed and asked for: the short form.
    let response = mesh
        .http_client("reviews")
        .oneshot(asking("reviews"))
        .await
        .unwrap();
    let header = response
        .headers()
        .get("sinew-decision")
        .expect("allowed and asked for")
        .to_str()
        .unwrap()
        .to_owned();
    let version = mesh.snapshot().version();
    assert!(
        header.starts_with(&format!("v={version}; route=0; cluster=pool; attempts=")),
        "{header}"
    );
    assert!(
        header.contains(&format!("{}:200:", server.addr)),
        "{header}"
    );
    // Allowed, not asked for: nothing.
    let response = mesh
        .http_client::<Empty<Bytes>>("reviews")
        .oneshot(get("/"))
        .await
        .unwrap();
    assert!(response.headers().get("sinew-decision").is_none());
    // Asked for where it is not allowed: nothing, the report stays in process.
    let response = mesh
        .http_client("ratings")
        .oneshot(asking("ratings"))
        .await
        .unwrap();
    assert!(response.headers().get("sinew-decision").is_none());
    assert!(response.extensions().get::<DecisionReport>().is_some());
    assert_eq!(forwarded.load(Ordering::SeqCst), 0, "the ask went upstream");
}

#[test]
fn a_debug_header_that_is_not_a_boolean_is_refused_by_field() {
    let error = MeshConfig::from_yaml(
        "services:\n  reviews:\n    debug_header: sometimes\n    routes: [{ split: [{ cluster: pool }] }]\nclusters:\n  pool: { endpoints: [] }\n",
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("services.reviews.debug_header"),
        "{error}"
    );
}

#[tokio::test]
async fn explain_lists_the_split_with_its_chances_and_an_ejected_endpoint() {
    let bad = serve(handler(|_req: Request<hyper::body::Incoming>| async {
        text(500, "bad")
    }))
    .await;
    let (good, _) = named("good").await;
    let (other, _) = named("other").await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes:\n      - match: {{ path: {{ prefix: /none }} }}\n        split: [{{ cluster: other }}]\n      - split: [{{ cluster: pool, weight: 3 }}, {{ cluster: other, weight: 1 }}]\n        timeout: 2s\n        retry: {{ max_attempts: 3 }}\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    outlier_detection: {{ consecutive_5xx: 1, max_ejection_percent: 100, base_ejection_time: 60s }}\n    thresholds: {{ max_requests: 7 }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n  other:\n    endpoints: [{{ address: \"{}\" }}]\n",
        bad.addr, good.addr, other.addr
    ))
    .await;
    let explanation = mesh.explain("reviews", &get("/r/1")).unwrap();
    assert_eq!(explanation.route, 1);
    assert_eq!(explanation.timeout, Some(Duration::from_secs(2)));
    assert_eq!(explanation.retry.as_ref().map(|r| r.max_attempts), Some(3));
    let chances: Vec<_> = explanation
        .split
        .iter()
        .map(|c| (c.name.as_str(), c.weight, c.probability))
        .collect();
    assert_eq!(chances, [("pool", 3, 0.75), ("other", 1, 0.25)]);
    let pool = &explanation.split[0];
    assert_eq!(pool.thresholds.map(|t| t.max_requests), Some(7));
    assert!(pool.outlier_detection);
    assert!(pool.endpoints.iter().all(|e| !e.ejected && e.in_rotation));

    // Explaining sent nothing; calls through the pool eject the bad one.
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let ejected = async {
        loop {
            let explanation = mesh.explain("reviews", &get("/r/1")).unwrap();
            if explanation.split[0].endpoints.iter().any(|e| e.ejected) {
                return explanation;
            }
            let _ = client.clone().oneshot(get("/r/1")).await;
        }
    };
    let explanation = tokio::time::timeout(PATIENCE, ejected).await.unwrap();
    let endpoints = &explanation.split[0].endpoints;
    let bad_one = endpoints.iter().find(|e| e.address == bad.addr).unwrap();
    assert!(bad_one.ejected && !bad_one.in_rotation);
    assert_eq!(bad_one.health, Health::Healthy);
    let good_one = endpoints.iter().find(|e| e.address == good.addr).unwrap();
    assert!(!good_one.ejected && good_one.in_rotation);
    let text = explanation.to_string();
    assert!(text.contains("cluster pool: weight 3, 75.0%"), "{text}");
    assert!(
        text.contains(&format!("{} weight 1 priority 0 Healthy EJECTED", bad.addr)),
        "{text}"
    );
}

#[tokio::test]
async fn explain_says_why_a_request_cannot_be_routed() {
    let (server, _) = named("a").await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes:\n      - match: {{ path: {{ prefix: /reviews }} }}\n        split: [{{ cluster: pool }}]\nclusters:\n  pool:\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    let error = mesh.explain("reviews", &get("/ratings/1")).unwrap_err();
    assert_eq!(
        error,
        RouteError::NoRoute {
            service: "reviews".into(),
            method: "GET".into(),
            path: "/ratings/1".into(),
        }
    );
    assert_eq!(
        error.to_string(),
        "service `reviews` has no route for GET /ratings/1"
    );
    assert_eq!(
        mesh.explain("ratings", &get("/")).unwrap_err(),
        RouteError::UnknownService("ratings".into())
    );
}

#[tokio::test]
async fn a_grpc_call_cut_by_its_route_timeout_leaves_its_report_in_the_sink() {
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
    let sink = ReportSink::default();
    let mut request = tonic::Request::new(Bytes::from_static(b"hi"));
    request.extensions_mut().insert(sink.clone());
    let call = client.unary(
        request,
        http::uri::PathAndQuery::from_static("/sinew.test.Greeter/Hello"),
        sinew::mesh::RawCodec,
    );
    let status = tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
    let report = sink.take().expect("the sink holds the report");
    assert_eq!(report.service(), "greeter");
    assert_eq!(report.timeout(), Some(Duration::from_millis(200)));
    let attempts: Vec<_> = report.attempts().collect();
    assert_eq!(attempts.len(), 1, "{report}");
    assert_eq!(attempts[0].endpoint, Some(hung.addr));
    assert_eq!(
        attempts[0].result,
        AttemptResult::Failed(ErrorClass::DeadlineExceeded),
        "{report}"
    );
    assert!(
        attempts[0].duration.unwrap() >= Duration::from_millis(150),
        "{report}"
    );
}

#[tokio::test]
async fn thresholds_are_in_the_report_a_queued_request_and_a_refusal() {
    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;
    use std::future::Future;
    use std::task::Poll;

    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let r = release.clone();
    // Answers at once with a body that ends only when released.
    let server = serve(tower::service_fn(
        move |_req: Request<hyper::body::Incoming>| {
            let r = r.clone();
            let chunks = futures_util::stream::once(async { Bytes::from_static(b"first ") }).chain(
                futures_util::stream::once(async move {
                    let _permit = r.acquire().await;
                    Bytes::from_static(b"last")
                }),
            );
            let body = StreamBody::new(chunks.map(|b| Ok::<_, Infallible>(Frame::data(b))));
            async move { Ok::<_, Infallible>(http::Response::new(body)) }
        },
    ))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    thresholds: {{ max_requests: 1, max_pending: 1 }}\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let streaming = tokio::time::timeout(PATIENCE, client.clone().oneshot(get("/")))
        .await
        .unwrap()
        .unwrap();
    assert!(!report_of(&streaming).attempt(1).unwrap().queued);
    // The second waits in line for the first's place...
    let mut waiting = Box::pin(client.clone().oneshot(get("/")));
    let polled = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
    assert!(polled.is_pending(), "it waits in line");
    // ...so the third, over max_pending, is refused: its report says why.
    let sink = ReportSink::default();
    let mut refused = get("/");
    refused.extensions_mut().insert(sink.clone());
    assert!(client.clone().oneshot(refused).await.is_err());
    let report = sink.take().unwrap();
    assert_eq!(
        report.attempt(1).unwrap().result,
        AttemptResult::Refused(Refusal::Threshold {
            name: "max_pending",
            limit: 1
        }),
        "{report}"
    );
    assert_eq!(report.attempt(1).unwrap().endpoint, None);

    release.add_permits(2);
    streaming.into_body().collect().await.unwrap();
    let second = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    let attempt = report_of(&second).attempt(1).unwrap().clone();
    assert!(attempt.queued, "{attempt:?}");
    assert_eq!(attempt.endpoint, Some(server.addr));
    assert_eq!(attempt.result, AttemptResult::Status(StatusCode::OK));
}

#[tokio::test]
async fn an_attempt_cut_by_its_per_try_timeout_is_reported_as_such() {
    // The first request either endpoint sees hangs; later ones answer.
    let seen = Arc::new(AtomicUsize::new(0));
    let hangs_first = |seen: Arc<AtomicUsize>| {
        serve(handler(move |_req: Request<hyper::body::Incoming>| {
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                text(200, "ok")
            }
        }))
    };
    let a = hangs_first(seen.clone()).await;
    let b = hangs_first(seen.clone()).await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n        retry: {{ max_attempts: 2, per_try_timeout: 100ms, backoff: {{ base: 1ms, max: 2ms }} }}\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
        a.addr, b.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let response = tokio::time::timeout(PATIENCE, client.oneshot(get("/")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report = report_of(&response);
    let cut = report.attempt(1).unwrap();
    assert_eq!(
        cut.result,
        AttemptResult::Failed(ErrorClass::PerTryTimeout),
        "{report}"
    );
    assert!(
        cut.duration.unwrap() >= Duration::from_millis(100),
        "{report}"
    );
    let retry = report.attempt(2).unwrap();
    assert_eq!(
        retry.reason,
        AttemptReason::Retry {
            after: Cause::Error(ErrorClass::PerTryTimeout)
        }
    );
    assert_eq!(retry.result, AttemptResult::Status(StatusCode::OK));
    assert_ne!(cut.endpoint, retry.endpoint, "{report}");
}
