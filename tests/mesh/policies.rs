//! A cluster's breaker and the classifiers a configuration selects by name,
//! at work in the mesh's client stack.

use super::*;
use sinew::breaker::BreakerOpen;
use sinew::classify::{Classify, Outcome, StatusClassifier};

/// Counts 418 as a retryable failure; otherwise the default.
struct TeapotFails;

impl Classify for TeapotFails {
    fn classify_response(&self, status: StatusCode, headers: &http::HeaderMap) -> Option<Outcome> {
        if status == StatusCode::IM_A_TEAPOT {
            return Some(Outcome::Failure { retryable: true });
        }
        StatusClassifier::default().classify_response(status, headers)
    }
    fn classify_trailers(&self, trailers: Option<&http::HeaderMap>) -> Outcome {
        StatusClassifier::default().classify_trailers(trailers)
    }
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Outcome {
        StatusClassifier::default().classify_error(error)
    }
}

/// A server answering `status`, counting its requests.
async fn answering(status: u16) -> (support::Server, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let server = serve(handler(move |_req: Request<hyper::body::Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { text(status, status.to_string()) }
    }))
    .await;
    (server, hits)
}

async fn teapot_mesh(yaml: &str) -> Mesh {
    Mesh::builder()
        .classifier("teapot", TeapotFails)
        .config(MeshConfig::from_yaml(yaml).unwrap())
        .build()
        .await
        .unwrap()
}

/// The status of one request, or the error's description.
async fn call(mesh: &Mesh) -> Result<u16, sinew::error::BoxError> {
    let request = Request::get("http://reviews/").body(Empty::new()).unwrap();
    let sent = mesh.http_client::<Empty<Bytes>>("reviews").oneshot(request);
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), sent)
        .await
        .expect("an answer in time")?;
    Ok(response.status().as_u16())
}

fn breaker_yaml(address: std::net::SocketAddr, open_for: &str, classifier: &str) -> String {
    format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\n  other:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    classifier: {classifier}\n    breaker: {{ consecutive_failures: 3, open_for: {open_for} }}\n    endpoints: [{{ address: \"{address}\" }}]\n"
    )
}

#[tokio::test]
async fn a_clusters_breaker_opens_and_stays_open_across_an_update_that_keeps_it() {
    let (server, hits) = answering(500).await;
    let mesh = teapot_mesh(&breaker_yaml(server.addr, "60s", "default")).await;
    for _ in 0..3 {
        assert_eq!(call(&mesh).await.unwrap(), 500);
    }
    let refused = call(&mesh).await.unwrap_err();
    assert!(refused.is::<BreakerOpen>(), "{refused}");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "refused without being sent");

    // An update that keeps the breaker's settings keeps it open...
    let mut config = MeshConfig::from_yaml(&breaker_yaml(server.addr, "60s", "default")).unwrap();
    config.services.remove("other");
    mesh.apply(config).unwrap();
    assert!(call(&mesh).await.unwrap_err().is::<BreakerOpen>());
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // ...and new settings start a new, closed one.
    mesh.apply(MeshConfig::from_yaml(&breaker_yaml(server.addr, "61s", "default")).unwrap())
        .unwrap();
    assert_eq!(call(&mesh).await.unwrap(), 500);
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_clusters_classifier_decides_what_its_breaker_counts() {
    let (server, hits) = answering(418).await;
    // By default a 418 is an answer like any other: the breaker stays shut.
    let mesh = teapot_mesh(&breaker_yaml(server.addr, "60s", "default")).await;
    for _ in 0..5 {
        assert_eq!(call(&mesh).await.unwrap(), 418);
    }
    // Selected by name, the teapot classifier counts it as a failure.
    mesh.apply(MeshConfig::from_yaml(&breaker_yaml(server.addr, "60s", "teapot")).unwrap())
        .unwrap();
    for _ in 0..3 {
        assert_eq!(call(&mesh).await.unwrap(), 418);
    }
    assert!(call(&mesh).await.unwrap_err().is::<BreakerOpen>());
    assert_eq!(hits.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn the_routes_classifier_decides_what_its_retries_retry() {
    let (teapot, teapot_hits) = answering(418).await;
    let (good, _) = answering(200).await;
    let yaml = |classifier: &str| {
        format!(
            "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n        retry: {{ max_attempts: 2, budget: {{ min_per_second: 100 }} }}\n        classifier: {classifier}\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
            teapot.addr, good.addr
        )
    };
    let mesh = teapot_mesh(&yaml("default")).await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(call(&mesh).await.unwrap());
    }
    assert!(
        statuses.contains(&418),
        "not retried by default: {statuses:?}"
    );

    mesh.apply(MeshConfig::from_yaml(&yaml("teapot")).unwrap())
        .unwrap();
    let before = teapot_hits.load(Ordering::SeqCst);
    for _ in 0..10 {
        assert_eq!(
            call(&mesh).await.unwrap(),
            200,
            "a 418 is retried elsewhere"
        );
    }
    assert!(
        teapot_hits.load(Ordering::SeqCst) > before,
        "the teapot was tried, and its answer retried"
    );
}

#[tokio::test]
async fn the_clusters_classifier_decides_what_outlier_detection_counts() {
    let (teapot, teapot_hits) = answering(418).await;
    let (good, _) = answering(200).await;
    let mesh = teapot_mesh(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    classifier: teapot\n    outlier_detection: {{ consecutive_5xx: 2, max_ejection_percent: 100, base_ejection_time: 60s }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
        teapot.addr, good.addr
    ))
    .await;
    for _ in 0..6 {
        call(&mesh).await.unwrap();
    }
    let ejected_after = teapot_hits.load(Ordering::SeqCst);
    assert_eq!(ejected_after, 2, "ejected after two failures in a row");
    for _ in 0..10 {
        assert_eq!(call(&mesh).await.unwrap(), 200);
    }
    assert_eq!(teapot_hits.load(Ordering::SeqCst), ejected_after);
}

#[tokio::test]
async fn requests_refused_before_sending_do_not_trip_the_breaker() {
    let (server, hits) = answering(200).await;
    let mesh = teapot_mesh(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    breaker: {{ consecutive_failures: 1, open_for: 60s }}\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    // A caller whose budget is already spent: refused before sending.
    for _ in 0..3 {
        let spent = sinew::deadline::Deadline::at(tokio::time::Instant::now());
        let error = spent.scope(call(&mesh)).await.unwrap_err();
        let unsent = error
            .downcast_ref::<sinew::deadline::DeadlineExceeded>()
            .is_some_and(|e| e.is_unsent());
        assert!(unsent, "{error}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert_eq!(call(&mesh).await.unwrap(), 200, "the breaker stayed shut");
}
