//! State that must survive configuration updates.

use super::support::{handler, serve, text};
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use sinew::config::MeshConfig;
use sinew::mesh::Mesh;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;

#[tokio::test]
async fn a_control_plane_that_pushes_often_does_not_refill_the_retry_budget() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let broken = serve(handler(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { text(503, "down") }
    }))
    .await;
    // One retry a second over a minute, and one per hundred requests.
    let config = |version: &str| {
        MeshConfig::from_yaml(&format!(
            "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n        retry: {{ max_attempts: 2, backoff: {{ base: 1ms, max: 1ms }}, budget: {{ ratio: 0.01, min_per_second: 1, window: 60s }} }}\nclusters:\n  pool:\n    endpoints: [{{ address: \"{}\", metadata: {{ version: \"{version}\" }} }}]\n",
            broken.addr
        ))
        .unwrap()
    };
    let mesh = Mesh::builder().config(config("1")).build().await.unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let attempts = || async {
        let before = hits.load(Ordering::SeqCst);
        let request = Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let _ = client.clone().oneshot(request).await.unwrap();
        hits.load(Ordering::SeqCst) - before
    };
    // Spend the budget: 60 retries and one per hundred requests, so
    // the 61st request is the first not retried, and the next 39 are not.
    let mut retried = 0;
    while attempts().await == 2 {
        retried += 1;
        assert!(retried < 200, "the budget bounds retries");
    }
    assert!(retried >= 60, "{retried} retried");
    // A push that keeps the policy (here: endpoint metadata changed)
    // keeps the spent budget; a fresh one would allow 60 retries again.
    for version in 2..5 {
        mesh.apply(config(&version.to_string())).unwrap();
        assert_eq!(attempts().await, 1, "no retry after update {version}");
    }
}
