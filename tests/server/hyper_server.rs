//! A hyper service behind `Mesh::serve`, called by the mesh's HTTP client.

use super::*;

#[tokio::test]
async fn the_mesh_client_reaches_a_served_hyper_service_over_http1_and_http2() {
    for protocol in ["http1", "http2"] {
        let (listener, addr) = listener().await;
        let mesh = mesh(config(addr, protocol, "")).await;
        let (app, _) = app();
        let server = mesh
            .serve("reviews", listener, app.clone().service())
            .await
            .unwrap();
        assert_eq!(server.local_addr(), addr);
        let (status, _, body) = get(&mesh, "/", &[]).await;
        assert_eq!((status, body.as_str()), (200, "hello"), "{protocol}");
        within("shutdown", server.shutdown()).await.unwrap();
    }
}

/// Serving and registering is one call: the registration carries the bound
/// address (port 0 filled in), and shutdown deregisters. The admin API here
/// records what it is sent, as the control plane's would receive it.
#[tokio::test]
async fn serve_registers_the_bound_address_and_shutdown_deregisters() {
    let (calls_tx, mut calls) = mpsc::unbounded_channel::<(String, String)>();
    let admin = support::serve(support::handler(move |req: Request<Incoming>| {
        let calls = calls_tx.clone();
        async move {
            let line = format!("{} {}", req.method(), req.uri().path());
            let body = support::body_text(req.into_body()).await;
            let _ = calls.send((line, body));
            support::text(200, r#"{"lease":"l1"}"#)
        }
    }))
    .await;
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let (app, _) = app();
    let registration =
        sinew::mesh::Registration::builder(admin.url(""), "reviews", "0.0.0.0:0".parse().unwrap());
    let server = mesh
        .server("reviews")
        .register(registration)
        .serve(listener, app.clone().service())
        .await
        .unwrap();
    let (line, body) = within("the registration", calls.recv()).await.unwrap();
    assert_eq!(line, "POST /v1/registrations");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["address"], addr.to_string());
    assert_eq!(
        server.registration().map(|r| r.lease()).as_deref(),
        Some("l1")
    );
    within("shutdown", server.shutdown()).await.unwrap();
    let (line, _) = within("the deregistration", calls.recv()).await.unwrap();
    assert_eq!(line, "DELETE /v1/registrations/l1");
}

#[tokio::test]
async fn a_listener_on_every_address_needs_the_advertised_one() {
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let mesh = mesh(MeshConfig::default()).await;
    let (app, _) = app();
    let registration = sinew::mesh::Registration::builder(
        "http://127.0.0.1:1",
        "reviews",
        "0.0.0.0:0".parse().unwrap(),
    );
    let err = mesh
        .server("reviews")
        .register(registration)
        .serve(listener, app.clone().service())
        .await
        .err()
        .unwrap();
    match err {
        sinew::mesh::ServeError::Config(e) => assert_eq!(e.field(), "registration.address"),
        other => panic!("{other}"),
    }
}
