//! The layer over in-process services (the real-socket tests are in
//! tests/balance).

use super::*;
use crate::config::LbPolicy;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use tower::{Service, ServiceExt};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn set(policy: LbPolicy) -> EndpointSet {
    EndpointSet::new(policy).unwrap_or_else(|e| unreachable!("{e}"))
}

/// The inner service: answers with the URI it was sent to.
fn echo() -> impl tower::Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    tower::service_fn(|request: Request<()>| async move {
        Ok(Response::new(Full::new(Bytes::from(
            request.uri().to_string(),
        ))))
    })
}

async fn send<S>(service: &Balance<S>, request: Request<()>) -> (SocketAddr, String)
where
    S: tower::Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone,
{
    let response = service
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let endpoint = response.body().endpoint();
    let body = response.into_body().collect().await;
    let text = body.map(|b| b.to_bytes()).unwrap_or_default();
    (endpoint, String::from_utf8_lossy(&text).into_owned())
}

#[tokio::test]
async fn the_layer_points_each_request_at_the_picked_endpoint() {
    let s = set(LbPolicy::RoundRobin);
    s.replace([(addr(1), 1), (addr(2), 1)]);
    let service = Balance::new(echo(), s);
    let mut seen = HashSet::new();
    for _ in 0..4 {
        let (endpoint, uri) = send(
            &service,
            Request::get("/a?b=c").body(()).unwrap_or_default(),
        )
        .await;
        assert_eq!(uri, format!("http://{endpoint}/a?b=c"));
        seen.insert(endpoint);
    }
    assert_eq!(seen, HashSet::from([addr(1), addr(2)]), "round robin");

    // IPv6, with a zone too: bracketed authorities.
    for (address, expected) in [
        ("[::1]:8080", "http://[::1]:8080/"),
        ("[fe80::1%2]:80", "http://[fe80::1%2]:80/"),
    ] {
        let v6 = set(LbPolicy::RoundRobin);
        let address: SocketAddr = address.parse().unwrap_or_else(|e| unreachable!("{e}"));
        assert!(v6.insert(address, 1));
        let (endpoint, uri) = send(&Balance::new(echo(), v6), Request::new(())).await;
        assert_eq!((endpoint, uri.as_str()), (address, expected));
    }
}

#[tokio::test]
async fn hashing_policies_follow_the_header_or_the_key() {
    let s = set(LbPolicy::Maglev {
        header: Some("x-user".into()),
    });
    s.replace((1..=20).map(|p| (addr(p), 1)));
    let service = Balance::new(echo(), s);
    let by_header = |user: &str| {
        Request::get("/")
            .header("x-user", user)
            .body(())
            .unwrap_or_default()
    };
    let by_key = |key: &[u8]| {
        let mut request = Request::new(());
        request.extensions_mut().insert(HashKey::of(key));
        request
    };
    let mut spread = HashSet::new();
    for user in ["ann", "bob", "cy", "dee", "eve", "fay"] {
        let (first, _) = send(&service, by_header(user)).await;
        for _ in 0..5 {
            assert_eq!(send(&service, by_header(user)).await.0, first, "{user}");
        }
        assert_eq!(
            send(&service, by_key(user.as_bytes())).await.0,
            first,
            "the key hashes as the header does"
        );
        spread.insert(first);
    }
    assert!(spread.len() > 1, "keys spread over endpoints");
}

#[tokio::test]
async fn an_empty_set_fails_before_the_inner_service_with_no_endpoint() {
    let called = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = called.clone();
    let inner = tower::service_fn(move |_: Request<()>| {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    let error = Balance::new(inner, set(LbPolicy::P2cEwma))
        .oneshot(Request::new(()))
        .await
        .err();
    assert!(error.as_ref().is_some_and(|e| e.is::<NoEndpoint>()));
    assert!(error.is_some_and(|e| crate::classify::never_processed(&*e)));
    assert_eq!(called.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn served_by_is_inserted_when_asked() {
    let s = set(LbPolicy::P2cEwma);
    s.insert(addr(7), 1);
    let plain = tower::Layer::layer(&BalanceLayer::new(s.clone()), echo());
    let response = plain.oneshot(Request::new(())).await.ok();
    assert!(response.is_some_and(|r| r.extensions().get::<ServedBy>().is_none()));
    let marked = tower::Layer::layer(&BalanceLayer::new(s).served_by(true), echo());
    let response = marked.oneshot(Request::new(())).await.ok();
    assert_eq!(
        response.and_then(|r| r.extensions().get::<ServedBy>().copied()),
        Some(ServedBy(addr(7)))
    );
}

#[tokio::test]
async fn a_request_counts_in_flight_until_its_body_ends() {
    let s = set(LbPolicy::LeastRequest);
    s.insert(addr(1), 1);
    let load = s.load(addr(1));
    let inflight = || load.as_ref().map(|l| l.inflight());
    // A body of two frames, the second sent when the test says.
    let (frames, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let inner = tower::service_fn(move |_: Request<()>| {
        let rx = rx.clone();
        async move {
            let rx = rx.lock().await.take();
            let stream = futures_util::stream::unfold(rx, |rx| async move {
                let mut rx = rx?;
                let chunk = rx.recv().await?;
                Some((Ok::<_, Infallible>(http_body::Frame::data(chunk)), Some(rx)))
            });
            Ok::<_, Infallible>(Response::new(http_body_util::StreamBody::new(stream)))
        }
    });
    let response = Balance::new(inner, s).oneshot(Request::new(())).await;
    let Ok(response) = response else {
        unreachable!("the inner service answers")
    };
    assert_eq!(inflight(), Some(1), "the head arrived, the body has not");
    let mut body = Box::pin(response.into_body());
    let _ = frames.send(Bytes::from_static(b"one")).await;
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))));
    assert_eq!(inflight(), Some(1), "still streaming");
    drop(frames);
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    assert!(matches!(end, Ok(None)));
    assert_eq!(inflight(), Some(0), "the body ended");
}

#[test]
fn the_layer_and_its_parts_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    type Client = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<Bytes>,
    >;
    send_sync::<EndpointSet>();
    send_sync::<BalanceLayer>();
    send_sync::<Balance<Client>>();
    send::<ResponseFuture<<Client as tower::Service<Request<Empty<Bytes>>>>::Future>>();
    send_sync::<BalanceBody<hyper::body::Incoming>>();
    send_sync::<NoEndpoint>();
}

#[tokio::test(start_paused = true)]
async fn peak_ewma_times_requests_to_the_response_head_and_the_others_do_not() {
    for (policy, expected) in [
        (LbPolicy::P2cEwma, Duration::from_millis(50)),
        (LbPolicy::LeastRequest, Duration::from_millis(1)),
    ] {
        let s = set(policy.clone());
        s.insert(addr(1), 1);
        let inner = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("x"))))
        });
        let response = Balance::new(inner, s.clone())
            .oneshot(Request::new(()))
            .await;
        let load = s.load(addr(1));
        assert_eq!(load.as_ref().map(|l| l.inflight()), Some(1), "{policy:?}");
        // Time spent reading the body is not latency.
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(response);
        assert_eq!(load.map(|l| l.latency()), Some(expected), "{policy:?}");
    }
}

#[tokio::test]
async fn a_service_kept_between_requests_sees_each_change() {
    let s = set(LbPolicy::RoundRobin);
    s.replace([(addr(1), 1), (addr(2), 1)]);
    let mut service = Balance::new(echo(), s.clone());
    let call = async |service: &mut Balance<_>| {
        let ready = service
            .ready()
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        let response = ready.call(Request::new(())).await;
        response
            .map(|r| r.body().endpoint())
            .map_err(|e| e.to_string())
    };
    let mut before = HashSet::new();
    for _ in 0..4 {
        before.insert(call(&mut service).await);
    }
    assert_eq!(before, HashSet::from([Ok(addr(1)), Ok(addr(2))]));
    s.remove(addr(1));
    for _ in 0..4 {
        assert_eq!(call(&mut service).await, Ok(addr(2)), "the removal is seen");
    }
    s.remove(addr(2));
    assert!(
        call(&mut service)
            .await
            .is_err_and(|e| e.contains("no endpoint"))
    );
    s.insert(addr(3), 1);
    assert_eq!(call(&mut service).await, Ok(addr(3)));
}
