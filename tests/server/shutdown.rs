//! Graceful shutdown: requests in flight finish, up to the drain timeout.

use super::*;

#[tokio::test]
async fn shutdown_loses_no_request_in_flight() {
    for protocol in ["http1", "http2"] {
        let (listener, addr) = listener().await;
        let mesh = mesh(config(addr, protocol, "")).await;
        let (app, mut arrivals) = app();
        let server = mesh
            .serve("reviews", listener, app.clone().service())
            .await
            .unwrap();
        let held: Vec<_> = (0..3)
            .map(|_| {
                let mesh = mesh.clone();
                tokio::spawn(async move { get(&mesh, "/hold", &[]).await })
            })
            .collect();
        for _ in 0..3 {
            within("held requests", arrivals.recv()).await;
        }
        let stopping = tokio::spawn(server.shutdown());
        // The port closes before the requests in flight end.
        within("the port closes", async {
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(!stopping.is_finished());
        app.release.add_permits(3);
        for request in held {
            let (status, _, body) = within("a held request", request).await.unwrap();
            assert_eq!((status, body.as_str()), (200, "held"), "{protocol}");
        }
        within("shutdown", stopping).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn the_drain_timeout_bounds_the_shutdown() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let (app, mut arrivals) = app();
    let server = mesh
        .server("reviews")
        .drain_timeout(Duration::from_millis(100))
        .serve(listener, app.clone().service())
        .await
        .unwrap();
    let held = tokio::spawn({
        let mesh = mesh.clone();
        async move {
            mesh.http_client("reviews")
                .oneshot(
                    Request::get("http://reviews/hold")
                        .body(Empty::<Bytes>::new())
                        .unwrap(),
                )
                .await
        }
    });
    within("the held request", arrivals.recv()).await;
    within("shutdown", server.shutdown()).await.unwrap();
    assert!(within("the cut request", held).await.unwrap().is_err());
    assert_eq!(app.dropped.load(Ordering::SeqCst), 1);
}
