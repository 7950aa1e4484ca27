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

#[path = "../tls/certs.rs"]
mod certs;

mod classifiers;
mod mtls;
mod outlier;
mod policies;
mod report;
mod review;
mod stack;
mod updates;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use sinew::config::MeshConfig;
use sinew::mesh::{Mesh, RouteError};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{body_text, handler, named, send_all, serve, text};
use tower::ServiceExt;

/// A mesh built from a YAML configuration.
async fn mesh_of(yaml: &str) -> Mesh {
    let config = MeshConfig::from_yaml(yaml).unwrap();
    Mesh::builder().config(config).build().await.unwrap()
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
    let seen = send_all(
        mesh.http_client("reviews"),
        "http://reviews/api",
        10_000,
        16,
        Arc::default(),
    )
    .await;
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
        "http://reviews/api",
        3_000,
        16,
        sent.clone(),
    ));
    support::until("1,000 requests sent", || {
        sent.load(Ordering::SeqCst) >= 1_000
    })
    .await;
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
async fn endpoint_changes_apply_under_load_without_a_failed_request() {
    use sinew::config::{EndpointChanges, EndpointConfig};
    let (a, served_a) = named("a").await;
    let (b, _) = named("b").await;
    let (c, served_c) = named("c").await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    lb: {{ policy: p2c_ewma }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
        a.addr, b.addr
    ))
    .await;
    let sent = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(send_all(
        mesh.http_client("reviews"),
        "http://reviews/api",
        3_000,
        16,
        sent.clone(),
    ));
    support::until("1,000 requests sent", || {
        sent.load(Ordering::SeqCst) >= 1_000
    })
    .await;
    let join = EndpointChanges {
        upsert: vec![EndpointConfig::new(c.addr.to_string())],
        ..EndpointChanges::default()
    };
    mesh.update_endpoints("pool", &join).unwrap();
    // A broken change is refused, names the field, and changes nothing.
    let broken = EndpointChanges {
        upsert: vec![EndpointConfig::new("not-an-address")],
        ..EndpointChanges::default()
    };
    let err = mesh.update_endpoints("pool", &broken).unwrap_err();
    assert_eq!(err.field(), "clusters.pool.upsert[0].address");
    assert_eq!(mesh.config_status().last_error(), Some(&err));
    let leave = EndpointChanges {
        remove: vec![a.addr.to_string()],
        ..EndpointChanges::default()
    };
    mesh.update_endpoints("pool", &leave).unwrap();
    let a_at_removal = served_a.load(Ordering::SeqCst);
    let seen = load.await.unwrap();
    assert_eq!(
        seen.values().sum::<usize>(),
        3_000,
        "every request succeeded"
    );
    assert!(
        served_c.load(Ordering::SeqCst) > 100,
        "the new endpoint took traffic"
    );
    assert!(served_a.load(Ordering::SeqCst) <= a_at_removal + 16);
    let endpoints: Vec<String> = mesh
        .snapshot()
        .cluster("pool")
        .map(|p| {
            p.endpoints()
                .iter()
                .map(|e| e.address.to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(endpoints.len(), 2);
    assert!(!endpoints.contains(&a.addr.to_string()));
}

#[tokio::test]
async fn a_file_reload_changes_routing_and_a_broken_one_changes_nothing() {
    let (v1, _) = named("v1").await;
    let (v2, _) = named("v2").await;
    let dir = std::env::temp_dir().join(format!("sinew-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mesh.yaml");
    let config = |cluster: &str| {
        format!(
            "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: {cluster} }}] }}]\nclusters:\n  v1: {{ endpoints: [{{ address: \"{}\" }}] }}\n  v2: {{ endpoints: [{{ address: \"{}\" }}] }}\n",
            v1.addr, v2.addr
        )
    };
    std::fs::write(&path, config("v1")).unwrap();
    let mesh = Mesh::builder()
        .config_file(&path)
        .reload_interval(std::time::Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let answer = || async {
        let request = Request::get("http://reviews/").body(Empty::new()).unwrap();
        body_text(client.clone().oneshot(request).await.unwrap().into_body()).await
    };
    assert_eq!(answer().await, "v1");

    let first = mesh.config_status().version();
    std::fs::write(&path, config("v2")).unwrap();
    support::until("the reload", || mesh.config_status().version() != first).await;
    assert_eq!(answer().await, "v2", "the reload changed routing");

    let rejected = mesh.config_status().rejected();
    std::fs::write(&path, config("v2").replace("address:", "adress:")).unwrap();
    support::until("the rejection", || {
        mesh.config_status().rejected() != rejected
    })
    .await;
    let status = mesh.config_status();
    let err = status.last_error().unwrap();
    assert!(
        err.to_string()
            .starts_with("clusters.v1.endpoints[0].adress: unknown field `adress`"),
        "{err}"
    );
    assert_eq!(answer().await, "v2", "the broken file changed nothing");
    std::fs::remove_dir_all(&dir).unwrap();
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
    use sinew::mesh::RawCodec;
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
async fn a_cluster_at_max_requests_queues_up_to_max_pending_and_counts_until_the_body_ends() {
    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use sinew::mesh::ClusterOverloaded;
    use std::convert::Infallible;
    use std::future::Future;
    use std::task::Poll;

    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (a, r) = (arrived.clone(), release.clone());
    // Answers at once with a body that ends only when released.
    let server = serve(tower::service_fn(
        move |_req: Request<hyper::body::Incoming>| {
            a.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            let chunks = futures_util::stream::once(async { Bytes::from_static(b"first ") }).chain(
                futures_util::stream::once(async move {
                    let _permit = r.acquire().await;
                    Bytes::from_static(b"last")
                }),
            );
            let body = StreamBody::new(chunks.map(|b| Ok::<_, Infallible>(Frame::data(b))));
            async move { Ok::<_, Infallible>(http::Response::new(body)) }
        },
    ))
    .await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}] }}]\nclusters:\n  pool:\n    thresholds: {{ max_requests: 1, max_pending: 1 }}\n    endpoints: [{{ address: \"{}\" }}]\n",
        server.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let get = || {
        Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };

    // The first response has begun; its body has not ended.
    let streaming = client.clone().oneshot(get()).await.unwrap();
    assert_eq!(arrived.load(Ordering::SeqCst), 1);
    // The second waits in line for the first's place...
    let mut waiting = Box::pin(client.clone().oneshot(get()));
    let polled = std::future::poll_fn(|cx| Poll::Ready(waiting.as_mut().poll(cx))).await;
    assert!(polled.is_pending(), "it waits in line");
    // ...so the third, over max_pending, fails at once.
    let err = client.clone().oneshot(get()).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<ClusterOverloaded>(),
        Some(&ClusterOverloaded {
            cluster: "pool".into(),
            threshold: "max_pending",
            limit: 1
        })
    );
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        1,
        "neither the waiting request nor the refused one was sent"
    );

    // The first body ends: its place goes to the one waiting.
    release.add_permits(2);
    let body = streaming.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first last");
    let second = waiting.await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(arrived.load(Ordering::SeqCst), 2);
    drop(second);
    assert_eq!(
        client.oneshot(get()).await.unwrap().status(),
        StatusCode::OK,
        "with the places free, requests go through"
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
async fn a_per_try_timeout_moves_a_hung_attempt_to_another_endpoint() {
    let hung = serve(handler(|_req| std::future::pending())).await;
    let (healthy, served) = named("up").await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n        retry: {{ max_attempts: 2, per_try_timeout: 100ms, backoff: {{ base: 1ms, max: 2ms }} }}\nclusters:\n  pool:\n    lb: {{ policy: round_robin }}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
        hung.addr, healthy.addr
    ))
    .await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    for _ in 0..10 {
        let request = Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(served.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn injected_faults_abort_or_delay_requests_before_they_reach_an_endpoint() {
    let (server, served) = named("up").await;
    let config = |fault: &str| {
        MeshConfig::from_yaml(&format!(
            "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n        fault: {fault}\nclusters:\n  pool:\n    endpoints: [{{ address: \"{}\" }}]\n",
            server.addr
        ))
        .unwrap()
    };
    let mesh = Mesh::builder()
        .config(config("{ abort: { http_status: 418, percent: 100 } }"))
        .build()
        .await
        .unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let get = || {
        Request::get("http://reviews/")
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    for _ in 0..5 {
        let response = client.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    }
    assert_eq!(served.load(Ordering::SeqCst), 0, "aborted before sending");

    mesh.apply(config("{ delay: { fixed: 50ms, percent: 100 } }"))
        .unwrap();
    let started = std::time::Instant::now();
    let response = client.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // A fault the snapshot refuses names its field and changes nothing.
    let err = mesh
        .apply(config(
            "{ abort: { http_status: 503, grpc_status: unavailable, percent: 1 } }",
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "services.reviews.routes[0].fault.abort: set exactly one of `http_status` and `grpc_status`"
    );
}

#[tokio::test]
async fn ring_hash_on_a_header_is_sticky_through_the_mesh() {
    // The header named by the cluster, then by the route.
    for (route, lb) in [
        ("", "{ policy: ring_hash, header: x-user }"),
        (", hash_header: x-user", "{ policy: ring_hash }"),
    ] {
        ring_hash_is_sticky(route, lb).await;
    }
}

async fn ring_hash_is_sticky(route: &str, lb: &str) {
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let (c, _) = named("c").await;
    let mesh = mesh_of(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: pool }}]{route} }}]\nclusters:\n  pool:\n    lb: {lb}\n    endpoints: [{{ address: \"{}\" }}, {{ address: \"{}\" }}, {{ address: \"{}\" }}]\n",
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
            sinew::mesh::RawCodec,
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
