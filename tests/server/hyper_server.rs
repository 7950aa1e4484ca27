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
