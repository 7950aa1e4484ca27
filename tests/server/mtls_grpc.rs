//! tonic behind the server's layer and incoming connections, strict: the
//! mesh's gRPC channel over mutual TLS, the caller's SPIFFE ID and address
//! on the request, handshakes side by side.

use super::*;
use crate::certs::Ca;
use crate::mtls_support::{CART, REVIEWS, identity_of, mesh_as, mtls_config, read_to_close};
use sinew::mesh::{PeerIdentity, RawCodec};
use tokio::net::TcpStream;

/// A unary method answering `<caller's SPIFFE ID or -> <caller's address>`.
#[derive(Clone)]
struct WhoAmI;

impl tonic::server::NamedService for WhoAmI {
    const NAME: &'static str = "sinew.test.WhoAmI";
}

impl tower::Service<Request<tonic::body::Body>> for WhoAmI {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let method = tower::service_fn(|req: tonic::Request<Bytes>| async move {
                let caller = req
                    .extensions()
                    .get::<PeerIdentity>()
                    .map_or_else(|| "-".to_owned(), |p| p.id().to_string());
                let addr = req
                    .remote_addr()
                    .map_or_else(|| "-".to_owned(), |a| a.to_string());
                Ok::<_, tonic::Status>(tonic::Response::new(Bytes::from(format!(
                    "{caller} {addr}"
                ))))
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(method, request)
                .await)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_behind_the_layer_serves_the_mesh_over_mtls_with_the_callers_identity() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    // Default mode with an identity: strict. A long header-read timeout:
    // a stalled caller must not hold back the others until then.
    let config = mtls_config(
        addr,
        "http2",
        "{ connections: { header_read_timeout: 60s } }",
    );
    let server_mesh = mesh_as(identity_of(&ca, REVIEWS), config.clone()).await;
    let server = server_mesh.server("reviews");
    let layer = server.layer().unwrap();
    let incoming = server.incoming(listener).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(WhoAmI)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
    });
    // Opened first, silent: its handshake never ends.
    let mut stalled = TcpStream::connect(addr).await.unwrap();

    let client = mesh_as(identity_of(&ca, CART), config).await;
    let mut grpc = tonic::client::Grpc::new(client.grpc_channel("reviews"));
    within("ready", grpc.ready()).await.unwrap();
    let answer = within(
        "a gRPC answer",
        grpc.unary(
            tonic::Request::new(Bytes::from_static(b"?")),
            http::uri::PathAndQuery::from_static("/sinew.test.WhoAmI/Call"),
            RawCodec,
        ),
    )
    .await
    .unwrap()
    .into_inner();
    let answer = String::from_utf8(answer.to_vec()).unwrap();
    let (caller, remote) = answer.split_once(' ').unwrap();
    assert_eq!(caller, CART);
    let remote: SocketAddr = remote
        .parse()
        .unwrap_or_else(|_| panic!("no remote_addr: {answer}"));
    assert!(
        remote.ip().is_loopback() && remote.port() != addr.port(),
        "{remote}"
    );

    // A plaintext gRPC caller is refused at the handshake.
    let plain = sinew::mesh::Mesh::builder()
        .config(config_plain(addr))
        .build()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(plain.grpc_channel("reviews"));
    within("ready", grpc.ready()).await.unwrap();
    let refused = within(
        "a gRPC refusal",
        grpc.unary(
            tonic::Request::new(Bytes::from_static(b"?")),
            http::uri::PathAndQuery::from_static("/sinew.test.WhoAmI/Call"),
            RawCodec,
        ),
    )
    .await;
    // Not answered: the connection closed under the handshake.
    assert!(refused.is_err(), "{refused:?}");

    let _ = stop.send(());
    drop(stalled.set_nodelay(true));
    within("tonic stops", serving).await.unwrap().unwrap();
    // Dropped with the stream of connections.
    assert!(read_to_close(&mut stalled).await.is_empty());
}

/// `reviews` at `addr` as a plaintext HTTP/2 cluster.
fn config_plain(addr: SocketAddr) -> MeshConfig {
    config(addr, "http2", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_on_the_incoming_stream_is_closed_at_the_timeout() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let timeout = Duration::from_millis(500);
    let server_mesh = mesh_as(
        identity_of(&ca, REVIEWS),
        mtls_config(
            addr,
            "http2",
            "{ mtls: strict, connections: { header_read_timeout: 500ms } }",
        ),
    )
    .await;
    let incoming = server_mesh.server("reviews").incoming(listener).unwrap();
    let _serving = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut incoming = std::pin::pin!(incoming);
        // Holds the connections it gets: only the handshake closes one.
        let mut kept = Vec::new();
        while let Some(connection) = incoming.next().await {
            kept.push(connection);
        }
    });
    let started = std::time::Instant::now();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    assert!(read_to_close(&mut stalled).await.is_empty());
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
}
