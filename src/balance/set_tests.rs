//! The endpoint set's changes and its feeds (the layer's tests are in
//! layer_tests.rs; the real-socket ones in tests/balance).

use super::*;
use crate::config::LbPolicy;
use http::Request;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;
use tower::discover::Change;

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
