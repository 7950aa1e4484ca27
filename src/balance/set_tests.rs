//! The endpoint set's changes, its feeds, and the layer over an in-process
//! service (the real-socket tests are in tests/balance).

use super::*;
use crate::config::LbPolicy;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;
use tower::discover::Change;
use tower::{Service, ServiceExt};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn set(policy: LbPolicy) -> EndpointSet {
    EndpointSet::new(policy).unwrap_or_else(|e| unreachable!("{e}"))
}

/// The addresses `n` picks land on.
fn picked(set: &EndpointSet, n: usize) -> HashSet<SocketAddr> {
    let request = Request::new(());
    (0..n)
        .filter_map(|_| set.pick(&set.current(), &request).map(|p| p.address))
        .collect()
}

fn sorted(mut v: Vec<SocketAddr>) -> Vec<SocketAddr> {
    v.sort();
    v
}

#[test]
fn equal_weight_changes_go_to_the_picker_without_a_rebuild() {
    for policy in [
        LbPolicy::P2cEwma,
        LbPolicy::LeastRequest,
        LbPolicy::RoundRobin,
        LbPolicy::Random,
    ] {
        let s = set(policy.clone());
        s.edit_for_test(vec![Change::Insert(addr(1), 1), Change::Insert(addr(2), 1)]);
        let kept = s.load(addr(2));
        let added = s.edit_for_test(vec![Change::Insert(addr(3), 1)]);
        assert!(!added.rebuilt, "{policy:?}: an equal-weight endpoint joins");
        let removed = s.edit_for_test(vec![Change::Remove(addr(1))]);
        assert!(!removed.rebuilt, "{policy:?}: a removal");
        assert_eq!(removed.removed, 1);
        assert_eq!(picked(&s, 200), HashSet::from([addr(2), addr(3)]));
        assert!(
            matches!((kept, s.load(addr(2))), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b)),
            "{policy:?}: the endpoint that stayed kept its load"
        );
    }
}

#[test]
fn weighted_hashing_and_large_changes_rebuild_and_keep_loads() {
    let s = set(LbPolicy::P2cEwma);
    s.insert(addr(1), 1);
    let load = s.load(addr(1));
    let weighted = s.edit_for_test(vec![Change::Insert(addr(2), 5)]);
    assert!(weighted.rebuilt, "a different weight needs the alias table");
    let large: Vec<_> = (10..50).map(|p| Change::Insert(addr(p), 5)).collect();
    let large = s.edit_for_test(large);
    assert!(large.rebuilt && large.changes == 40);
    assert!(matches!((load, s.load(addr(1))), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b)));
    assert_eq!(s.len(), 42);

    let ring = set(LbPolicy::RingHash {
        header: None,
        min_ring_size: 64,
    });
    ring.insert(addr(1), 1);
    let load = ring.load(addr(1));
    assert!(ring.edit_for_test(vec![Change::Insert(addr(2), 1)]).rebuilt);
    assert!(matches!((load, ring.load(addr(1))), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b)));
    assert_eq!(picked(&ring, 200), HashSet::from([addr(1), addr(2)]));
}

#[test]
fn a_weight_change_keeps_the_endpoint_and_its_load() {
    let s = set(LbPolicy::RoundRobin);
    assert!(s.insert(addr(1), 0), "new");
    assert_eq!(s.weight(addr(1)), Some(1), "a weight of 0 counts as 1");
    let load = s.load(addr(1));
    let before = s.version();
    assert!(!s.insert(addr(1), 1), "the same weight: no change");
    assert_eq!(s.version(), before, "nothing changed, no new version");
    assert!(!s.insert(addr(1), 4));
    assert_eq!(s.weight(addr(1)), Some(4));
    assert_eq!(s.version(), before + 1);
    assert!(matches!((load, s.load(addr(1))), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b)));
}

#[test]
fn replace_keeps_the_loads_of_endpoints_that_stay() {
    let s = set(LbPolicy::LeastRequest);
    s.replace([(addr(1), 1), (addr(2), 1), (addr(3), 1)]);
    let stays = s.load(addr(2));
    let leaves = s.load(addr(1));
    let busy = stays.as_ref().map(|l| l.start());
    let version = s.version();
    s.replace([(addr(2), 1), (addr(3), 1), (addr(4), 1), (addr(4), 2)]);
    assert_eq!(s.version(), version + 1, "one change");
    assert_eq!(sorted(s.endpoints()), [addr(2), addr(3), addr(4)]);
    assert_eq!(s.weight(addr(4)), Some(2), "the last weight given");
    let now = s.load(addr(2));
    assert!(matches!((&stays, &now), (Some(a), Some(b)) if Arc::ptr_eq(a, b)));
    assert_eq!(now.map(|l| l.inflight()), Some(1));
    assert!(s.load(addr(1)).is_none());
    drop(busy);
    // Removed, then back: a new endpoint, with a fresh load.
    s.insert(addr(1), 1);
    assert!(!matches!((&leaves, s.load(addr(1))), (Some(a), Some(b)) if Arc::ptr_eq(a, &b)));
    assert_eq!(picked(&s, 400).len(), 4);
}

#[test]
fn matches_a_model_under_random_changes() {
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::P2cEwma,
        LbPolicy::RingHash {
            header: None,
            min_ring_size: 16,
        },
    ] {
        let s = set(policy.clone());
        let mut model: HashMap<SocketAddr, u32> = HashMap::new();
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..400 {
            let batch: Vec<Change<SocketAddr, u32>> = (0..rng.usize(1..4))
                .map(|_| {
                    let a = addr(rng.u16(1..40));
                    if rng.bool() {
                        // Mostly one weight, so that the cheap path runs too.
                        Change::Insert(a, if rng.u8(..10) == 0 { 2 } else { 1 })
                    } else {
                        Change::Remove(a)
                    }
                })
                .collect();
            for change in &batch {
                match change {
                    Change::Insert(a, w) => model.insert(*a, *w),
                    Change::Remove(a) => model.remove(a),
                };
            }
            s.apply(batch);
            let mut expected: Vec<SocketAddr> = model.keys().copied().collect();
            expected.sort();
            assert_eq!(sorted(s.endpoints()), expected, "{policy:?}");
            for (a, w) in &model {
                assert_eq!(s.weight(*a), Some(*w));
                assert!(s.contains(*a));
            }
            let landed = picked(&s, 20);
            assert!(
                landed.iter().all(|a| model.contains_key(a)),
                "{policy:?}: a pick went to a removed endpoint"
            );
            assert_eq!(landed.is_empty(), model.is_empty());
        }
    }
}

#[test]
fn bad_policies_are_refused_naming_the_field() {
    let field = |policy| EndpointSet::new(policy).err().map(|e| e.field().to_owned());
    assert_eq!(
        field(LbPolicy::RingHash {
            header: None,
            min_ring_size: 0
        })
        .as_deref(),
        Some("lb.min_ring_size")
    );
    assert_eq!(
        field(LbPolicy::RingHash {
            header: Some("a b".into()),
            min_ring_size: 8
        })
        .as_deref(),
        Some("lb.header")
    );
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

#[tokio::test]
async fn a_discover_feed_applies_changes_and_ends_with_its_stream_or_error() {
    let s = set(LbPolicy::RoundRobin);
    let (tx, rx) =
        tokio::sync::mpsc::unbounded_channel::<Result<Change<SocketAddr, u32>, &'static str>>();
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) });
    let feed = tokio::spawn(s.feed(stream));
    let mut versions = s.subscribe();
    let _ = tx.send(Ok(Change::Insert(addr(1), 1)));
    let _ = tx.send(Ok(Change::Insert(addr(2), 1)));
    let waited =
        tokio::time::timeout(Duration::from_secs(5), versions.wait_for(|_| s.len() == 2)).await;
    assert!(matches!(waited, Ok(Ok(_))));
    let _ = tx.send(Err("the source broke"));
    let ended = tokio::time::timeout(Duration::from_secs(5), feed).await;
    assert!(matches!(ended, Ok(Ok(Err("the source broke")))));
    assert_eq!(s.len(), 2, "the endpoints stay as they were");
}

#[tokio::test]
async fn feeds_end_when_the_set_is_dropped() {
    let s = set(LbPolicy::RoundRobin);
    let pending = futures_util::stream::pending::<Result<Change<SocketAddr, u32>, Infallible>>();
    let discover = tokio::spawn(s.feed(pending));
    let (_keep, rx) = tokio::sync::watch::channel(vec![(addr(1), 1)]);
    let watch = tokio::spawn(s.follow(rx));
    let mut versions = s.subscribe();
    let applied =
        tokio::time::timeout(Duration::from_secs(5), versions.wait_for(|_| s.len() == 1)).await;
    assert!(applied.is_ok_and(|r| r.is_ok()));
    drop(versions);
    drop(s);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        (discover.await, watch.await)
    })
    .await;
    assert!(matches!(ended, Ok((Ok(Ok(())), Ok(())))));
}

#[test]
fn a_waiter_may_read_the_set_while_a_writer_changes_it() {
    let s = set(LbPolicy::RoundRobin);
    let writer = s.clone();
    let last = addr(2000);
    let (done, finished) = std::sync::mpsc::channel();
    let writer_done = done.clone();
    std::thread::spawn(move || {
        for port in 1..=2000 {
            writer.insert(addr(port), 1);
        }
        let _ = writer_done.send("writer");
    });
    // The condition reads the set under the channel's lock while the
    // writer announces versions: neither may wait on the other. Both run
    // on threads of their own, so that a deadlock fails the test.
    let mut versions = s.subscribe();
    let waiter = s.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().build();
        let waited = runtime.map(|r| {
            r.block_on(
                versions.wait_for(|_| waiter.contains(last) && waiter.weight(last) == Some(1)),
            )
            .is_ok()
        });
        if matches!(waited, Ok(true)) {
            let _ = done.send("waiter");
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut ended: Vec<&str> = (0..2)
        .filter_map(|_| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            finished.recv_timeout(left).ok()
        })
        .collect();
    ended.sort();
    assert_eq!(ended, ["waiter", "writer"], "no deadlock");
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

#[tokio::test]
async fn a_watch_feed_ends_with_its_sender_keeping_the_endpoints() {
    let s = set(LbPolicy::RoundRobin);
    let (endpoints, rx) = tokio::sync::watch::channel(vec![(addr(1), 1), (addr(2), 1)]);
    let follow = tokio::spawn(s.follow(rx));
    let mut versions = s.subscribe();
    endpoints.send_replace(vec![(addr(2), 1), (addr(3), 2)]);
    let applied = tokio::time::timeout(
        Duration::from_secs(5),
        versions.wait_for(|_| s.contains(addr(3)) && !s.contains(addr(1))),
    )
    .await;
    assert!(applied.is_ok_and(|r| r.is_ok()));
    assert_eq!(s.weight(addr(3)), Some(2));
    drop(endpoints);
    let ended = tokio::time::timeout(Duration::from_secs(5), follow).await;
    assert!(matches!(ended, Ok(Ok(()))));
    assert_eq!(
        sorted(s.endpoints()),
        [addr(2), addr(3)],
        "kept as they were"
    );
}
