use crate::support::{client, handler, serve, text};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use sinew::breaker::{BreakerConfig, BreakerLayer, BreakerOpen, State};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::{Layer, ServiceExt};

#[tokio::test]
async fn trips_against_a_failing_server_and_recovers_when_it_heals() {
    let failing = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(AtomicUsize::new(0));
    let (f, s) = (failing.clone(), seen.clone());
    let server = serve(handler(move |_req| {
        let (f, s) = (f.clone(), s.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            if f.load(Ordering::SeqCst) {
                text(500, "broken")
            } else {
                text(200, "ok")
            }
        }
    }))
    .await;

    let open_for = Duration::from_millis(100);
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let t = transitions.clone();
    let layer = BreakerLayer::new(BreakerConfig {
        consecutive_failures: Some(5),
        open_for,
        ..BreakerConfig::default()
    })
    .unwrap()
    .on_transition(move |tr| t.lock().unwrap().push(tr.to));
    let svc = layer.layer(client::<Empty<Bytes>>());
    let get = || Request::get(server.url("/")).body(Empty::new()).unwrap();

    for _ in 0..5 {
        let response = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(layer.state(), State::Open);
    for _ in 0..20 {
        let err = svc.clone().oneshot(get()).await.unwrap_err();
        assert!(err.is::<BreakerOpen>(), "{err}");
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        5,
        "nothing reached the server while open"
    );

    failing.store(false, Ordering::SeqCst);
    // The breaker's own open period is what this waits for.
    tokio::time::sleep(open_for).await;
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(layer.state(), State::Closed);
    assert_eq!(
        *transitions.lock().unwrap(),
        vec![State::Open, State::HalfOpen, State::Closed]
    );
}
