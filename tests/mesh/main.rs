//! `Mesh` routing real requests to real hyper servers on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../resilience/support.rs"]
mod support;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use sinew::config::MeshConfig;
use sinew::mesh::{Mesh, RouteError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{Server, body_text, handler, serve, text};
use tower::ServiceExt;

/// A mesh built from a YAML configuration.
async fn mesh_of(yaml: &str) -> Mesh {
    let config = MeshConfig::from_yaml(yaml).unwrap();
    Mesh::builder().config(config).build().await.unwrap()
}

/// A server that answers with its name and counts what it served.
async fn named(name: &'static str) -> (Server, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let server = serve(handler(move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { text(200, name) }
    }))
    .await;
    (server, served)
}

async fn send_all(
    client: sinew::mesh::HttpClient<Empty<Bytes>>,
    total: usize,
    concurrency: usize,
    sent: Arc<AtomicUsize>,
) -> HashMap<String, usize> {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, sent) = (client.clone(), sent.clone());
            tokio::spawn(async move {
                let mut seen = HashMap::new();
                while sent.fetch_add(1, Ordering::SeqCst) < total {
                    let request = Request::get("http://reviews/api")
                        .body(Empty::new())
                        .unwrap();
                    let response = client.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    *seen
                        .entry(body_text(response.into_body()).await)
                        .or_insert(0) += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen = HashMap::new();
    for task in tasks {
        for (name, n) in task.await.unwrap() {
            *seen.entry(name).or_insert(0) += n;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weighted_split_follows_its_weights_over_10000_requests() {
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let (c, _) = named("c").await;
    let mesh = mesh_of(&format!(
        r#"
services:
  reviews:
    routes:
      - split: [{{ cluster: a, weight: 50 }}, {{ cluster: b, weight: 30 }}, {{ cluster: c, weight: 20 }}]
clusters:
  a: {{ endpoints: [{{ address: "{}" }}] }}
  b: {{ endpoints: [{{ address: "{}" }}] }}
  c: {{ endpoints: [{{ address: "{}" }}], protocol: http2 }}
"#,
        a.addr, b.addr, c.addr
    )).await;
    let seen = send_all(mesh.http_client("reviews"), 10_000, 16, Arc::default()).await;
    for (name, weight) in [("a", 0.5), ("b", 0.3), ("c", 0.2)] {
        let share = seen.get(name).copied().unwrap_or(0) as f64 / 10_000.0;
        assert!(
            (share - weight).abs() <= 0.03,
            "{name}: {share:.3} for a weight of {weight}"
        );
    }
}

#[tokio::test]
async fn unknown_services_fail_with_the_reason() {
    let mesh = Mesh::builder().build().await.unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("ratings");
    let err = client
        .oneshot(Request::get("http://ratings/").body(Empty::new()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<RouteError>(),
        Some(&RouteError::UnknownService("ratings".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_change_under_load_without_a_failed_request() {
    let (a, served_a) = named("a").await;
    let (b, _) = named("b").await;
    let (c, served_c) = named("c").await;
    let config = |endpoints: &[std::net::SocketAddr]| {
        let list: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{{ address: \"{e}\" }}"))
            .collect();
        MeshConfig::from_yaml(&format!(
            "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    endpoints: [{}]\n",
            list.join(", ")
        ))
        .unwrap()
    };
    let mesh = Mesh::builder()
        .config(config(&[a.addr, b.addr]))
        .build()
        .await
        .unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(send_all(
        mesh.http_client("reviews"),
        3_000,
        16,
        sent.clone(),
    ));
    while sent.load(Ordering::SeqCst) < 1_000 {
        tokio::task::yield_now().await;
    }
    // Swap a for c while requests are in flight.
    mesh.apply(config(&[b.addr, c.addr])).unwrap();
    let a_at_swap = served_a.load(Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert_eq!(
        seen.values().sum::<usize>(),
        3_000,
        "every request succeeded"
    );
    assert!(
        served_c.load(Ordering::SeqCst) > 500,
        "the new endpoint took traffic"
    );
    // At most the requests already routed when the swap happened reach a.
    assert!(served_a.load(Ordering::SeqCst) <= a_at_swap + 16);
}

#[tokio::test]
async fn the_readme_example_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mesh.yaml");
    let mesh = Mesh::builder().config_file(path).build().await.unwrap();
    let snapshot = mesh.snapshot();
    assert_eq!(
        snapshot.cluster("reviews-v1").map(|c| c.endpoints().len()),
        Some(2)
    );
    let decision = mesh
        .route("reviews", &Request::get("/api/books/1").body(()).unwrap())
        .unwrap();
    assert!(decision.cluster().starts_with("reviews-v"));
    assert_eq!(decision.timeout(), Some(std::time::Duration::from_secs(2)));
}

#[tokio::test]
async fn tonic_clients_call_through_a_grpc_channel() {
    use support::RawCodec;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let server = serve(tower::service_fn(
        move |req: http::Request<hyper::body::Incoming>| {
            let counter = counter.clone();
            async move {
                let method = tower::service_fn(move |req: tonic::Request<Bytes>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut reply = b"hello ".to_vec();
                        reply.extend_from_slice(&req.into_inner());
                        Ok::<_, tonic::Status>(tonic::Response::new(Bytes::from(reply)))
                    }
                });
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                Ok::<_, std::convert::Infallible>(grpc.unary(method, req).await)
            }
        },
    ))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: greeters }}] }}]\nclusters:\n  greeters:\n    protocol: http2\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    )).await;
    let mut client = tonic::client::Grpc::with_origin(
        mesh.grpc_channel("greeter"),
        "http://greeter".parse().unwrap(),
    );
    for _ in 0..3 {
        client.ready().await.unwrap();
        let reply = client
            .unary(
                tonic::Request::new(Bytes::from_static(b"mesh")),
                http::uri::PathAndQuery::from_static("/sinew.test.Greeter/Hello"),
                RawCodec,
            )
            .await
            .unwrap();
        assert_eq!(reply.into_inner(), Bytes::from_static(b"hello mesh"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_route_retry_policy_sends_the_retry_to_another_endpoint() {
    let broken = serve(handler(|_req| async { text(503, "down") })).await;
    let (healthy, served) = named("up").await;
    let config = |retry: &str| {
        MeshConfig::from_yaml(&format!(
            "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n{retry}clusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
            broken.addr, healthy.addr
        ))
        .unwrap()
    };
    let get = || {
        Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // Without a retry policy, half the requests meet the broken endpoint.
    let mesh = Mesh::builder().config(config("")).build().await.unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let mut failed = 0;
    for _ in 0..20 {
        if client.clone().oneshot(get()).await.unwrap().status() != StatusCode::OK {
            failed += 1;
        }
    }
    assert_eq!(failed, 10);

    // With one, the retry picks the next endpoint and every request succeeds.
    let retry = "        timeout: 5s\n        retry: { max_attempts: 2, backoff: { base: 1ms, max: 2ms } }\n";
    mesh.apply(config(retry)).unwrap();
    let before = served.load(Ordering::SeqCst);
    for _ in 0..20 {
        let response = client.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(served.load(Ordering::SeqCst) - before, 20);
}

#[tokio::test]
async fn an_outlier_is_ejected_and_returns_after_its_ejection_time() {
    use std::sync::atomic::AtomicBool;
    let failing = Arc::new(AtomicBool::new(true));
    let bad_served = Arc::new(AtomicUsize::new(0));
    let (f, b) = (failing.clone(), bad_served.clone());
    let bad = serve(handler(move |_req| {
        b.fetch_add(1, Ordering::SeqCst);
        let fail = f.load(Ordering::SeqCst);
        async move {
            if fail {
                text(500, "broken")
            } else {
                text(200, "bad")
            }
        }
    }))
    .await;
    let (good1, _) = named("good1").await;
    let (good2, _) = named("good2").await;
    let mesh = mesh_of(&format!(
        r#"
services:
  reviews:
    routes: [{{ split: [{{ cluster: pool }}] }}]
clusters:
  pool:
    lb: {{ policy: round_robin }}
    outlier_detection: {{ consecutive_5xx: 3, base_ejection_time: 300ms, max_ejection_percent: 50 }}
    endpoints: [{{ address: "{}" }}, {{ address: "{}" }}, {{ address: "{}" }}]
"#,
        bad.addr, good1.addr, good2.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let get = || {
        Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    for _ in 0..60 {
        let _ = client.clone().oneshot(get()).await.unwrap();
    }
    assert_eq!(
        bad_served.load(Ordering::SeqCst),
        3,
        "ejected after 3 errors in a row"
    );

    failing.store(false, Ordering::SeqCst);
    // The ejection time configured above is what this waits for.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut ok = 0;
    for _ in 0..30 {
        if client.clone().oneshot(get()).await.unwrap().status() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 30);
    assert!(
        bad_served.load(Ordering::SeqCst) >= 3 + 9,
        "the endpoint is back in rotation"
    );
}

#[tokio::test]
async fn a_cluster_over_its_max_requests_fails_fast() {
    use sinew::mesh::ClusterOverloaded;
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (a, r) = (arrived.clone(), release.clone());
    let server = serve(handler(move |_req| {
        let (a, r) = (a.clone(), r.clone());
        async move {
            a.fetch_add(1, Ordering::SeqCst);
            let _permit = r.acquire().await;
            text(200, "done")
        }
    }))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    thresholds: {{ max_requests: 2 }}\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    )).await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let get = || {
        Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.clone().oneshot(get())))
        .collect();
    while arrived.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    let err = client.clone().oneshot(get()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<ClusterOverloaded>(),
        Some(&ClusterOverloaded {
            cluster: "pool".into(),
            threshold: "max_requests",
            limit: 2
        })
    );
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "the third was never sent"
    );
    release.add_permits(2);
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    // With the slots free again, requests go through.
    release.add_permits(1);
    assert_eq!(
        client.oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn locality_failover_happens_and_traffic_comes_back() {
    let (local, served_local) = named("local").await;
    let (remote1, _) = named("remote1").await;
    let (remote2, _) = named("remote2").await;
    let config = |local_health: &str| {
        MeshConfig::from_yaml(&format!(
            r#"
services:
  reviews:
    routes: [{{ split: [{{ cluster: pool }}] }}]
clusters:
  pool:
    endpoints:
      - {{ address: "{}", locality: {{ region: eu, zone: eu-1a }}, health: {local_health} }}
      - {{ address: "{}", locality: {{ region: eu, zone: eu-1b }} }}
      - {{ address: "{}", locality: {{ region: eu, zone: eu-1b }} }}
"#,
            local.addr, remote1.addr, remote2.addr
        ))
        .unwrap()
    };
    let mesh = Mesh::builder()
        .locality("eu", "eu-1a")
        .config(config("healthy"))
        .build()
        .await
        .unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let served_by = |n: usize| {
        let client = client.clone();
        async move {
            let mut seen = HashMap::new();
            for _ in 0..n {
                let request = Request::get("http://reviews/")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = client.clone().oneshot(request).await.unwrap();
                *seen
                    .entry(body_text(response.into_body()).await)
                    .or_insert(0) += 1;
            }
            seen
        }
    };
    assert_eq!(
        served_by(30).await,
        HashMap::from([("local".to_owned(), 30)])
    );

    mesh.apply(config("unhealthy")).unwrap();
    let before = served_local.load(Ordering::SeqCst);
    let seen = served_by(30).await;
    assert_eq!(seen.get("local"), None, "failed over: {seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 30);
    assert_eq!(served_local.load(Ordering::SeqCst), before);

    mesh.apply(config("healthy")).unwrap();
    assert_eq!(
        served_by(30).await,
        HashMap::from([("local".to_owned(), 30)]),
        "traffic came back"
    );
}

#[tokio::test]
async fn ring_hash_on_a_header_is_sticky_through_the_mesh() {
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let (c, _) = named("c").await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    lb: {{ policy: ring_hash, header: x-user }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
        a.addr, b.addr, c.addr
    )).await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let mut owners = HashMap::new();
    for user in 0..30 {
        for _ in 0..5 {
            let request = Request::get("http://reviews/")
                .header("x-user", format!("user-{user}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = client.clone().oneshot(request).await.unwrap();
            let served_by = body_text(response.into_body()).await;
            let owner = owners.entry(user).or_insert_with(|| served_by.clone());
            assert_eq!(*owner, served_by, "user-{user} moved");
        }
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert_eq!(distinct.len(), 3, "30 users spread over the 3 endpoints");
}

#[tokio::test]
async fn a_grpc_call_to_an_unknown_service_is_unavailable_with_the_reason() {
    let mesh = Mesh::builder().build().await.unwrap();
    let mut client = tonic::client::Grpc::with_origin(
        mesh.grpc_channel("nowhere"),
        "http://nowhere".parse().unwrap(),
    );
    client.ready().await.unwrap();
    let status = client
        .unary(
            tonic::Request::new(Bytes::from_static(b"x")),
            http::uri::PathAndQuery::from_static("/sinew.test.Greeter/Hello"),
            support::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(
        status.message().contains("unknown service `nowhere`"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_refusing_endpoint_is_not_redialled_at_once() {
    use sinew::mesh::ConnectBackoff;
    let closed = support::closed_port().await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    endpoints: [{{ address: \"{closed}\" }}]\n"
    )).await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let get = || {
        Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let backed_off = |err: &sinew::error::BoxError| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
        while let Some(e) = source {
            if e.is::<ConnectBackoff>() {
                return true;
            }
            source = e.source();
        }
        false
    };
    let first = client.clone().oneshot(get()).await.unwrap_err();
    assert!(
        sinew::classify::never_processed(first.as_ref()),
        "a real connect error: {first}"
    );
    assert!(!backed_off(&first));
    let second = client.clone().oneshot(get()).await.unwrap_err();
    assert!(
        backed_off(&second),
        "the second attempt waited its turn: {second}"
    );
    assert!(sinew::classify::never_processed(second.as_ref()));
}
