//! The balance layer used alone, without a `Mesh`: a hyper-util client
//! balanced over real hyper servers on loopback, while the endpoint set
//! changes under load.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod server;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use server::{Server, named, serve, text};
use sinew::balance::{Balance, BalanceBody, BalanceLayer, EndpointSet};
use sinew::config::LbPolicy;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tower::discover::Change;
use tower::{Layer, ServiceExt};

/// Generous: the machine may be busy.
const DEADLINE: Duration = Duration::from_secs(30);

type Balanced = Balance<Client<HttpConnector, Empty<Bytes>>>;

fn balanced(set: &EndpointSet) -> Balanced {
    let client = Client::builder(TokioExecutor::new()).build_http();
    BalanceLayer::new(set.clone()).layer(client)
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

/// Sends `request`; answers the endpoint the layer chose and the body,
/// which names the server that answered.
async fn send(
    client: &Balanced,
    request: Request<Empty<Bytes>>,
) -> Result<(SocketAddr, String), String> {
    let response: Response<BalanceBody<Incoming>> = client
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| format!("request failed: {e:?}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let endpoint = response.body().endpoint();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body failed: {e}"))?
        .to_bytes();
    Ok((endpoint, String::from_utf8_lossy(&body).into_owned()))
}

/// Waits until `condition` holds, yielding between checks; fails naming
/// `what` past the deadline.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(DEADLINE, async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// Waits until a change to `set` makes `condition` hold.
async fn applied(set: &EndpointSet, what: &str, condition: impl Fn(&EndpointSet) -> bool) {
    let mut versions = set.subscribe();
    let waited = tokio::time::timeout(DEADLINE, versions.wait_for(|_| condition(set))).await;
    assert!(matches!(waited, Ok(Ok(_))), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_follows_the_weights_exactly() {
    let servers = [named().await, named().await, named().await];
    let set = EndpointSet::new(LbPolicy::RoundRobin).unwrap();
    for (server, weight) in servers.iter().zip([1, 2, 3]) {
        set.insert(server.addr, weight);
    }
    let client = balanced(&set);
    for _ in 0..600 {
        let (endpoint, body) = send(&client, get("/api?x=1")).await.unwrap();
        assert_eq!(body, endpoint.to_string(), "the picked server answered");
    }
    assert_eq!(servers.map(|s| s.served()), [100, 200, 300]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_sends_each_key_to_one_server() {
    let mut servers = Vec::new();
    for _ in 0..4 {
        servers.push(named().await);
    }
    let set = EndpointSet::new(LbPolicy::Maglev {
        header: Some("x-user".into()),
    })
    .unwrap();
    set.replace(servers.iter().map(|s| (s.addr, 1)));
    let client = balanced(&set);
    let mut chosen = std::collections::HashSet::new();
    for user in 0..16 {
        let request = || {
            Request::get("/")
                .header("x-user", format!("user-{user}"))
                .body(Empty::new())
                .unwrap()
        };
        let (first, _) = send(&client, request()).await.unwrap();
        for _ in 0..4 {
            let (endpoint, body) = send(&client, request()).await.unwrap();
            assert_eq!(endpoint, first, "user-{user} moved");
            assert_eq!(body, first.to_string());
        }
        chosen.insert(first);
    }
    assert!(chosen.len() >= 2, "16 keys over 4 servers: {chosen:?}");
}

/// How a scenario changes the set from outside.
enum Feeder {
    Discover(mpsc::UnboundedSender<Result<Change<SocketAddr, u32>, Infallible>>),
    Watch(watch::Sender<Vec<(SocketAddr, u32)>>),
}

impl Feeder {
    /// A feeder of `set`, its feed spawned.
    fn discover(set: &EndpointSet) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stream =
            futures_util::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) });
        tokio::spawn(set.feed(stream));
        Self::Discover(tx)
    }

    fn watch(set: &EndpointSet) -> Self {
        let (tx, rx) = watch::channel(Vec::new());
        tokio::spawn(set.follow(rx));
        Self::Watch(tx)
    }

    fn add(&self, address: SocketAddr) {
        match self {
            Self::Discover(tx) => tx.send(Ok(Change::Insert(address, 1))).unwrap(),
            Self::Watch(tx) => tx.send_modify(|v| v.push((address, 1))),
        }
    }

    fn remove(&self, address: SocketAddr) {
        match self {
            Self::Discover(tx) => tx.send(Ok(Change::Remove(address))).unwrap(),
            Self::Watch(tx) => tx.send_modify(|v| v.retain(|(a, _)| *a != address)),
        }
    }
}

/// What one request loop saw: per request, the set's version when it
/// started and the endpoint it went to; and the failures.
#[derive(Default)]
struct Seen {
    sent: Vec<(u64, SocketAddr)>,
    failures: Vec<String>,
}

/// Removes `server` through `feeder`, waits until the set no longer holds
/// it and no request is in flight to it, and stops it. Answers the set's
/// version once the removal was applied.
async fn remove_and_stop(set: &EndpointSet, feeder: &Feeder, server: Server) -> u64 {
    let load = set.load(server.addr).expect("the endpoint is in the set");
    feeder.remove(server.addr);
    applied(set, "the removal", |s| !s.contains(server.addr)).await;
    let removed_at = set.version();
    until("requests in flight to the removed endpoint to end", || {
        load.inflight() == 0
    })
    .await;
    // Any request sent to it from now on would fail.
    drop(server);
    removed_at
}

/// Eight request loops over a set that starts as {a, b}; c joins, a
/// leaves, d joins and b leaves, each while requests are in flight.
async fn endpoints_change_under_load(policy: LbPolicy, feeder: fn(&EndpointSet) -> Feeder) {
    let (a, b, c, d) = (named().await, named().await, named().await, named().await);
    let (a_addr, b_addr) = (a.addr, b.addr);
    let set = EndpointSet::new(policy).unwrap();
    let feeder = feeder(&set);
    feeder.add(a.addr);
    feeder.add(b.addr);
    applied(&set, "a and b", |s| s.len() == 2).await;

    let client = balanced(&set);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let loops: Vec<_> = (0..8)
        .map(|_| {
            let (client, set, stop, done) =
                (client.clone(), set.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut seen = Seen::default();
                while !stop.load(Ordering::SeqCst) {
                    let version = set.version();
                    match send(&client, get("/api")).await {
                        Ok((endpoint, body)) if body == endpoint.to_string() => {
                            seen.sent.push((version, endpoint));
                        }
                        Ok((endpoint, body)) => seen
                            .failures
                            .push(format!("sent to {endpoint}, answered by {body}")),
                        Err(failure) => seen.failures.push(failure),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                seen
            })
        })
        .collect();
    let more = |n: usize| {
        let target = done.load(Ordering::SeqCst) + n;
        let done = done.clone();
        async move { until("more requests", || done.load(Ordering::SeqCst) >= target).await }
    };
    more(200).await;

    feeder.add(c.addr);
    applied(&set, "c joining", |s| s.contains(c.addr)).await;
    until("c to take requests", || c.served() >= 20).await;

    let a_removed = remove_and_stop(&set, &feeder, a).await;
    more(400).await;

    feeder.add(d.addr);
    let b_removed = remove_and_stop(&set, &feeder, b).await;
    until("d to take requests", || d.served() >= 20).await;
    more(400).await;

    stop.store(true, Ordering::SeqCst);
    let mut seen = Seen::default();
    for task in loops {
        let one = tokio::time::timeout(DEADLINE, task).await.unwrap().unwrap();
        seen.sent.extend(one.sent);
        seen.failures.extend(one.failures);
    }
    assert_eq!(seen.failures, Vec::<String>::new(), "no request failed");
    let late = |removed: SocketAddr, at: u64| {
        seen.sent
            .iter()
            .filter(|(version, endpoint)| *version >= at && *endpoint == removed)
            .count()
    };
    assert_eq!(
        late(a_addr, a_removed),
        0,
        "a took requests after its removal"
    );
    assert_eq!(
        late(b_addr, b_removed),
        0,
        "b took requests after its removal"
    );
    let to = |e: SocketAddr| seen.sent.iter().filter(|(_, x)| *x == e).count();
    assert!(to(c.addr) >= 20 && to(d.addr) >= 20);
    assert!(seen.sent.len() >= 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_fed_by_a_discover_stream_change_under_load() {
    endpoints_change_under_load(LbPolicy::P2cEwma, Feeder::discover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_fed_by_a_watch_change_under_load() {
    endpoints_change_under_load(LbPolicy::RoundRobin, Feeder::watch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_an_endpoint_holding_a_stream_open() {
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let streaming = serve(move |request, addr| {
        let release = held.clone();
        async move {
            if request.uri().path() != "/stream" {
                return Response::new(text(addr.to_string()));
            }
            // One frame now, the end when the test says.
            let frames = futures_util::stream::unfold(0, move |step| {
                let release = release.clone();
                async move {
                    match step {
                        0 => Some((Ok(http_body::Frame::data(Bytes::from("first"))), 1)),
                        _ => {
                            release.notified().await;
                            None
                        }
                    }
                }
            });
            Response::new(StreamBody::new(frames).boxed())
        }
    })
    .await;
    let idle = named().await;
    let set = EndpointSet::new(LbPolicy::LeastRequest).unwrap();
    set.insert(streaming.addr, 1);
    let client = balanced(&set);

    let response = tokio::time::timeout(DEADLINE, client.clone().oneshot(get("/stream")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.body().endpoint(), streaming.addr);
    let mut body = response.into_body();
    let first = tokio::time::timeout(DEADLINE, body.frame()).await.unwrap();
    assert!(matches!(first, Some(Ok(_))));
    let load = set.load(streaming.addr).unwrap();
    assert_eq!(load.inflight(), 1, "the open stream counts");

    set.insert(idle.addr, 1);
    let mut to_streaming = 0;
    for _ in 0..200 {
        let (endpoint, _) = send(&client, get("/")).await.unwrap();
        to_streaming += usize::from(endpoint == streaming.addr);
    }
    // Two candidates per pick: the busy endpoint wins only when both are
    // it, 1 in 8; were the stream not counted, 1 in 2.
    assert!(
        to_streaming < 60,
        "{to_streaming} of 200 went to the endpoint holding a stream open"
    );

    release.notify_one();
    let end = tokio::time::timeout(DEADLINE, async {
        while let Some(frame) = body.frame().await {
            frame.unwrap();
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ended");
    assert_eq!(load.inflight(), 0, "the ended stream no longer counts");
}
