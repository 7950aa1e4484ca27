//! Outlier detection over real servers: what Envoy counts, Sinew counts.

use super::mesh_of;
use super::support::{Server, handler, named, serve, text};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tower::ServiceExt;

fn get() -> Request<Empty<Bytes>> {
    Request::get("http://reviews/").body(Empty::new()).unwrap()
}

/// A server whose `n`-th request (from 0) gets `answer(n)`, and its count.
async fn counting(answer: fn(usize) -> u16) -> (Server, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let server = serve(handler(move |_req| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { text(answer(n), "") }
    }))
    .await;
    (server, served)
}

/// A server that never answers, and the count of requests it took.
async fn hung() -> (Server, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let server = serve(handler(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    }))
    .await;
    (server, seen)
}

fn pool(outlier: &str, endpoints: &[&Server], extra: &str) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|s| format!("{{ address: \"{}\" }}", s.addr))
        .collect();
    format!(
        "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n{extra}clusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    outlier_detection: {outlier}\n    endpoints: [{}]\n",
        endpoints.join(", ")
    )
}

#[tokio::test]
async fn gateway_errors_in_a_row_eject_and_other_5xx_do_not() {
    let (gateway, gateway_served) = counting(|n| [502, 503, 504][n % 3]).await;
    let (plain, plain_served) = counting(|_| 500).await;
    let (good, _) = named("good").await;
    let mesh = mesh_of(&pool(
        "{ consecutive_5xx: null, consecutive_gateway_failure: 3, max_ejection_percent: 100 }",
        &[&gateway, &plain, &good],
        "",
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    for _ in 0..60 {
        let _ = client.clone().oneshot(get()).await.unwrap();
    }
    assert_eq!(gateway_served.load(Ordering::SeqCst), 3, "ejected after 3");
    // The other 57 alternate between the two others (which goes first
    // depends on where round robin starts).
    let plain = plain_served.load(Ordering::SeqCst);
    assert!(
        (28..=29).contains(&plain),
        "500 is no gateway error: {plain}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_ejected_when_local_failures_are_not_split() {
    let closed = super::support::closed_port().await;
    let (good, good_served) = named("good").await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    outlier_detection: {{ consecutive_5xx: 3, max_ejection_percent: 100 }}\n    endpoints: [{{ address: \"{closed}\" }}, {{ address: \"{}\" }}]\n",
        good.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let mut failed = 0;
    for _ in 0..30 {
        if client.clone().oneshot(get()).await.is_err() {
            failed += 1;
        }
    }
    // Connect errors count as gateway errors (Envoy's default): three in a
    // row eject, as three 5xx would.
    assert_eq!(failed, 3);
    assert_eq!(good_served.load(Ordering::SeqCst), 27);
}

#[tokio::test]
async fn a_hung_endpoint_is_ejected_after_its_per_try_timeouts() {
    let (hung, hung_seen) = hung().await;
    let (good, good_served) = named("good").await;
    let retry = "        retry: { max_attempts: 2, per_try_timeout: 250ms, backoff: { base: 1ms, max: 2ms } }\n";
    let mesh = mesh_of(&pool(
        "{ consecutive_5xx: 2, max_ejection_percent: 100 }",
        &[&hung, &good],
        retry,
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    for _ in 0..20 {
        let response = client.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Each attempt cut by the per-try timeout is a local-origin failure:
    // two in a row and the hung endpoint takes no more.
    assert_eq!(hung_seen.load(Ordering::SeqCst), 2);
    assert_eq!(good_served.load(Ordering::SeqCst), 20);
}

#[tokio::test]
async fn a_route_timeout_counts_against_a_hung_endpoint_too() {
    let (hung, hung_seen) = hung().await;
    let (good, _) = named("good").await;
    let mesh = mesh_of(&pool(
        "{ consecutive_5xx: 2, max_ejection_percent: 100 }",
        &[&hung, &good],
        "        timeout: 250ms\n",
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let mut timed_out = 0;
    for _ in 0..20 {
        match client.clone().oneshot(get()).await {
            Ok(response) => assert_eq!(response.status(), StatusCode::OK),
            Err(error) => {
                assert!(error.is::<sinew::timeout::Elapsed>(), "{error}");
                timed_out += 1;
            }
        }
    }
    assert_eq!(timed_out, 2);
    assert_eq!(hung_seen.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_rate_ejects_the_endpoint_below_the_others_by_stdev_factor_deviations() {
    // Five endpoints that always answer, one that fails every other
    // request: never twice in a row, so only the statistics can find it.
    let mut servers = Vec::new();
    let mut counts = Vec::new();
    for i in 0..6 {
        let (server, served) = if i == 5 {
            counting(|n| if n % 2 == 0 { 500 } else { 200 }).await
        } else {
            counting(|_| 200).await
        };
        servers.push(server);
        counts.push(served);
    }
    let refs: Vec<&Server> = servers.iter().collect();
    let mesh = mesh_of(&pool(
        "{ consecutive_5xx: null, interval: 300ms, max_ejection_percent: 50, success_rate: { minimum_hosts: 5, request_volume: 10, stdev_factor: 1.9 } }",
        &refs,
        "",
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    // Traffic until a batch leaves the flaky endpoint out (the interval
    // ends while it flows), bounded in time.
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let before: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
            for _ in 0..60 {
                let _ = client.clone().oneshot(get()).await.unwrap();
            }
            let after: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
            if after[5] == before[5] {
                return after
                    .iter()
                    .zip(&before)
                    .map(|(a, b)| a - b)
                    .collect::<Vec<_>>();
            }
        }
    })
    .await
    .expect("the flaky endpoint is ejected");
    // The others shared the batch (about 12 each: the picker may have been
    // rebuilt, from a new place in its walk, during the batch).
    assert_eq!(found[5], 0);
    assert_eq!(found.iter().sum::<usize>(), 60);
    assert!(
        found[..5].iter().all(|&n| (10..=14).contains(&n)),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_grpc_unavailable_in_trailers_ejects_through_grpc_channel() {
    use http_body_util::{BodyExt, StreamBody};
    use sinew::mesh::RawCodec;
    // UNAVAILABLE after the response headers went out with HTTP 200, as a
    // server that streams answers it: only the trailers say it failed.
    let bad_seen = Arc::new(AtomicUsize::new(0));
    let seen = bad_seen.clone();
    let bad = serve(tower::service_fn(
        move |_req: Request<hyper::body::Incoming>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
                trailers.insert("grpc-message", http::HeaderValue::from_static("draining"));
                let frames = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
                    http_body::Frame::<Bytes>::trailers(trailers),
                )]);
                let response = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(StreamBody::new(frames).boxed())
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        },
    ))
    .await;
    let good = serve(tower::service_fn(
        move |req: Request<hyper::body::Incoming>| async move {
            let method = tower::service_fn(|_req: tonic::Request<Bytes>| async {
                Ok::<_, tonic::Status>(tonic::Response::new(Bytes::from_static(b"ok")))
            });
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok::<_, std::convert::Infallible>(grpc.unary(method, req).await)
        },
    ))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: greeters }}] }}]\nclusters:\n  greeters:\n    protocol: http2\n    lb: {{ policy: round_robin }}\n    outlier_detection: {{ consecutive_5xx: 3, max_ejection_percent: 100 }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
        bad.addr, good.addr
    ))
    .await;
    let mut client = tonic::client::Grpc::with_origin(
        mesh.grpc_channel("greeter"),
        "http://greeter".parse().unwrap(),
    );
    let mut unavailable = 0;
    for _ in 0..30 {
        client.ready().await.unwrap();
        let call = client
            .unary(
                tonic::Request::new(Bytes::from_static(b"hi")),
                http::uri::PathAndQuery::from_static("/sinew.test.Greeter/Hello"),
                RawCodec,
            )
            .await;
        if let Err(status) = call {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            unavailable += 1;
        }
    }
    assert_eq!(
        unavailable, 3,
        "ejected after three UNAVAILABLE in trailers"
    );
    assert_eq!(bad_seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_callers_own_deadline_does_not_count_against_the_endpoint() {
    use sinew::deadline::Deadline;
    // A caller (say a remote client through `grpc-timeout`) can make its
    // deadline as short as it likes: that must not eject the endpoint.
    let (slow, slow_seen) = hung().await;
    let (good, _) = named("good").await;
    let mesh = mesh_of(&pool(
        "{ consecutive_5xx: 2, max_ejection_percent: 100 }",
        &[&slow, &good],
        "",
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    for _ in 0..10 {
        let deadline = Deadline::after(Duration::from_millis(50));
        let call = deadline.scope(client.clone().oneshot(get()));
        let _ = tokio::time::timeout_at(deadline.instant(), call).await;
    }
    let seen = slow_seen.load(Ordering::SeqCst);
    assert_eq!(
        seen, 5,
        "never ejected: round robin kept sending it its share"
    );
}
