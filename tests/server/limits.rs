//! Inbound limits refusing with the right codes, and following the mesh's
//! configuration live.

use super::*;

async fn served(
    inbound: &str,
) -> (
    Mesh,
    sinew::mesh::Server,
    App,
    mpsc::UnboundedReceiver<()>,
    SocketAddr,
) {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", inbound)).await;
    let (app, arrivals) = app();
    let server = mesh
        .serve("reviews", listener, app.clone().service())
        .await
        .unwrap();
    (mesh, server, app, arrivals, addr)
}

#[tokio::test]
async fn a_full_concurrency_limit_answers_503() {
    let (mesh, server, app, mut arrivals, _) =
        served("{ concurrency_limit: { max_concurrent: 1, max_queue: 0 } }").await;
    let held = tokio::spawn({
        let mesh = mesh.clone();
        async move { get(&mesh, "/hold", &[]).await }
    });
    within("the held request", arrivals.recv()).await;
    let (status, _, _) = get(&mesh, "/", &[]).await;
    assert_eq!(status, 503);
    app.release.add_permits(1);
    assert_eq!(within("held", held).await.unwrap().0, 200);
    assert_eq!(get(&mesh, "/", &[]).await.0, 200, "the slot is free again");
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn an_empty_token_bucket_answers_429_with_retry_after() {
    let (mesh, server, _app, _, _) = served("{ rate_limit: { per_second: 0.01, burst: 1 } }").await;
    assert_eq!(get(&mesh, "/", &[]).await.0, 200);
    let (status, headers, _) = get(&mesh, "/", &[]).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn an_expired_budget_is_refused_unseen_and_a_slow_handler_is_cancelled() {
    let (mesh, server, app, mut arrivals, _) = served("{ deadline: { default: 200ms } }").await;
    let (status, _, _) = get(&mesh, "/hold", &[("sinew-timeout-ms", "0")]).await;
    assert_eq!(status, 504);
    assert!(arrivals.try_recv().is_err(), "the handler never saw it");
    // No budget given: the default one applies and the handler is dropped.
    let (status, _, _) = get(&mesh, "/hold", &[]).await;
    assert_eq!(status, 504);
    assert_eq!(
        app.dropped.load(Ordering::SeqCst),
        1,
        "the handler was cancelled"
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn limits_follow_the_configuration_live_and_keep_their_state() {
    let (mesh, server, app, mut arrivals, addr) =
        served("{ concurrency_limit: { max_concurrent: 1, max_queue: 0 } }").await;
    let held = tokio::spawn({
        let mesh = mesh.clone();
        async move { get(&mesh, "/hold", &[]).await }
    });
    within("the held request", arrivals.recv()).await;
    // Another change leaves the concurrency limit as it is: its slot stays taken.
    mesh.apply(config(
        addr,
        "http1",
        "{ concurrency_limit: { max_concurrent: 1, max_queue: 0 }, rate_limit: { per_second: 1000, burst: 1000 } }",
    ))
    .unwrap();
    assert_eq!(
        get(&mesh, "/", &[]).await.0,
        503,
        "the slot in use carried over"
    );
    // An invalid block is refused, naming the field; the limits stay.
    let err = mesh
        .apply(config(addr, "http1", "{ rate_limit: { per_second: 0 } }"))
        .unwrap_err();
    assert_eq!(
        err.field(),
        "services.reviews.inbound.rate_limit.per_second"
    );
    assert_eq!(
        get(&mesh, "/", &[]).await.0,
        503,
        "the old limits stay in force"
    );
    // A rate limit alone: the concurrency limit is gone.
    mesh.apply(config(
        addr,
        "http1",
        "{ rate_limit: { per_second: 0.01, burst: 1 } }",
    ))
    .unwrap();
    assert_eq!(get(&mesh, "/", &[]).await.0, 200);
    assert_eq!(get(&mesh, "/", &[]).await.0, 429);
    app.release.add_permits(1);
    assert_eq!(within("held", held).await.unwrap().0, 200);
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn builder_limits_apply_while_the_configuration_has_none() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let (app, _) = app();
    let inbound = sinew::config::InboundConfig {
        rate_limit: Some(sinew::limit::RateLimitConfig {
            per_second: 0.01,
            burst: 1,
        }),
        ..Default::default()
    };
    let server = mesh
        .server("reviews")
        .inbound(inbound)
        .serve(listener, app.clone().service())
        .await
        .unwrap();
    assert_eq!(get(&mesh, "/", &[]).await.0, 200);
    assert_eq!(get(&mesh, "/", &[]).await.0, 429);
    // A block in the configuration replaces the builder's whole.
    mesh.apply(config(addr, "http1", "{ load_shed: false }"))
        .unwrap();
    assert_eq!(get(&mesh, "/", &[]).await.0, 200);
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn invalid_builder_settings_name_the_field() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let (app, _) = app();
    let err = mesh
        .server("reviews")
        .max_connections(0)
        .serve(listener, app.clone().service())
        .await
        .err()
        .unwrap();
    match err {
        sinew::mesh::ServeError::Config(e) => assert_eq!(e.field(), "inbound.connections.max"),
        other => panic!("{other}"),
    }
}
