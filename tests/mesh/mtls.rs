//! Never fail open: a cluster that requires mutual TLS is never spoken to
//! in plaintext, whatever path a request takes to it.

use super::mesh_of;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew::mesh::MtlsUnavailable;
use sinew::retry::ReplayBody;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};

/// A TCP listener that reports each connection it accepts (the peer's
/// address) and the bytes read from it.
async fn listener() -> (SocketAddr, mpsc::UnboundedReceiver<(SocketAddr, usize)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, peer)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                // Whatever arrives before the peer closes or goes quiet.
                let mut buf = vec![0u8; 4096];
                let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let _ = tx.send((peer, read));
            });
        }
    });
    (addr, rx)
}

/// The `MtlsUnavailable` in `error`'s chain.
fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<MtlsUnavailable> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<MtlsUnavailable>() {
            return Some(found.clone());
        }
        next = e.source();
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_requires_mtls_is_never_spoken_to_in_plaintext() {
    let (addr, mut accepted) = listener().await;
    // `secure` names identities, `anyone` asks for mTLS with none named
    // (as an xDS UpstreamTlsContext without SAN matchers does), and
    // `plain` holds the same endpoint without asking for anything.
    let mesh = mesh_of(&format!(
        "services:\n  secure:\n    routes: [{{ split: [{{ cluster: secure }}] }}]\n  anyone:\n    routes: [{{ split: [{{ cluster: anyone }}] }}]\n  plain:\n    routes: [{{ split: [{{ cluster: plain }}] }}]\n\
         clusters:\n  secure:\n    identities: [spiffe://example.org/ns/shop/sa/reviews]\n    endpoints: [{{ address: \"{addr}\" }}]\n  anyone:\n    protocol: http2\n    mtls: true\n    endpoints: [{{ address: \"{addr}\" }}]\n  plain:\n    endpoints: [{{ address: \"{addr}\" }}]\n"
    ))
    .await;
    let request = |host: &str| {
        Request::get(format!("http://{host}/"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // The mesh's own client: refused before anything is sent, naming the
    // cluster and the reason.
    let error = mesh
        .http_client("secure")
        .oneshot(request("secure"))
        .await
        .unwrap_err();
    let refused = refusal(error.as_ref()).unwrap_or_else(|| panic!("{error}"));
    assert_eq!(refused.cluster, "secure");
    assert!(
        error
            .to_string()
            .contains("cluster `secure` requires mutual TLS"),
        "{error}"
    );

    // The gRPC channel: UNAVAILABLE, with the reason.
    let mut grpc = tonic::client::Grpc::with_origin(
        mesh.grpc_channel("anyone"),
        "http://anyone".parse().unwrap(),
    );
    grpc.ready().await.unwrap();
    let status = grpc
        .unary(
            tonic::Request::new(Bytes::from_static(b"hi")),
            http::uri::PathAndQuery::from_static("/sinew.test.Greeter/Hello"),
            sinew::mesh::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
    assert!(status.message().contains("`anyone`"), "{status}");

    // The application's own client on the mesh's connector, behind the
    // mesh's layer, and then aimed by hand at the endpoint without it.
    let own =
        Client::builder(TokioExecutor::new()).build::<_, ReplayBody<Full<Bytes>>>(mesh.connector());
    let error = mesh
        .client_layer("secure")
        .layer(own.clone())
        .oneshot(request("secure"))
        .await
        .unwrap_err();
    assert_eq!(
        refusal(error.as_ref()).map(|r| r.cluster).as_deref(),
        Some("secure")
    );
    let by_hand = Request::get(format!("http://{addr}/"))
        .body(ReplayBody::new(Full::<Bytes>::default(), 0))
        .unwrap();
    let error = own.request(by_hand).await.unwrap_err();
    assert!(refusal(&error).is_some(), "{error:?}");

    // A cluster that does not ask for mTLS but shares the endpoint with
    // one that does: connections are pooled by address, so the strictest
    // cluster decides.
    let error = mesh
        .http_client("plain")
        .oneshot(request("plain"))
        .await
        .unwrap_err();
    assert!(refusal(error.as_ref()).is_some(), "{error}");

    // Nothing reached the endpoint, not even a TCP connection: the first
    // connection it accepts is this one, made after every request above
    // had failed.
    let sentinel = TcpStream::connect(addr).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.0,
        sentinel.local_addr().unwrap(),
        "a connection reached the endpoint"
    );
    assert_eq!(first.1, 0);
}
