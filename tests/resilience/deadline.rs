use crate::support::{client, handler, serve, text};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use sinew::deadline::{
    Deadline, EnforceDeadlineConfig, EnforceDeadlineLayer, PropagateDeadlineLayer,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::oneshot;
use tower::{Layer, ServiceExt};

/// Fires its channel when dropped: proof that a handler was cancelled.
struct Cancelled(Option<oneshot::Sender<()>>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

fn enforce() -> EnforceDeadlineLayer {
    EnforceDeadlineLayer::new(EnforceDeadlineConfig::default()).unwrap()
}

#[tokio::test]
async fn a_deadline_propagates_across_two_hops_and_is_enforced_at_the_second() {
    // Hop C: records the budget it was given, then never answers.
    let budget_at_c = Arc::new(AtomicU64::new(0));
    let (cancelled_tx, cancelled_rx) = oneshot::channel();
    let cancelled_tx = Arc::new(std::sync::Mutex::new(Some(cancelled_tx)));
    let b = budget_at_c.clone();
    let c = serve(enforce().layer(handler(move |req| {
        let b = b.clone();
        let guard = Cancelled(cancelled_tx.lock().unwrap().take());
        async move {
            let header = req.headers()["sinew-timeout-ms"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            b.store(header, Ordering::SeqCst);
            let _guard = guard;
            std::future::pending::<()>().await;
            text(200, "unreachable")
        }
    })))
    .await;

    // Hop B: forwards to C through a client that propagates the deadline
    // of the request it is handling, with no plumbing in the handler.
    let budget_at_b = Arc::new(AtomicU64::new(0));
    let b_seen = budget_at_b.clone();
    let c_url = c.url("/");
    let b = serve(enforce().layer(handler(move |req| {
        let forward = PropagateDeadlineLayer::new().layer(client::<Empty<Bytes>>());
        let (c_url, b_seen) = (c_url.clone(), b_seen.clone());
        async move {
            let remaining = Deadline::current().map(|d| d.remaining().as_millis() as u64);
            b_seen.store(remaining.unwrap_or(0), Ordering::SeqCst);
            drop(req);
            let request = Request::get(c_url).body(Empty::new()).unwrap();
            match forward.oneshot(request).await {
                Ok(response) => text(response.status().as_u16(), ""),
                Err(_) => text(502, "forwarding failed"),
            }
        }
    })))
    .await;

    let request = Request::get(b.url("/"))
        .header("sinew-timeout-ms", "300")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    cancelled_rx
        .await
        .expect("C's handler was cancelled at its deadline");

    let (at_b, at_c) = (
        budget_at_b.load(Ordering::SeqCst),
        budget_at_c.load(Ordering::SeqCst),
    );
    assert!(at_b > 0 && at_b <= 300, "B saw {at_b} ms");
    assert!(
        at_c > 0 && at_c <= at_b,
        "C saw {at_c} ms after B's {at_b} ms"
    );
}

#[tokio::test]
async fn work_whose_deadline_has_passed_is_refused_unseen() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let server = serve(enforce().layer(handler(move |_req| {
        c.fetch_add(1, Ordering::SeqCst);
        async { text(200, "done") }
    })))
    .await;
    for (header, value) in [("sinew-timeout-ms", "0"), ("grpc-timeout", "0m")] {
        let request = Request::get(server.url("/"))
            .header(header, value)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
