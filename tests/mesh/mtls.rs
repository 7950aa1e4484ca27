//! Never fail open: a cluster that requires mutual TLS is never spoken to
//! in plaintext, whatever path a request takes to it.

use super::certs::{Ca, Leaf};
use super::mesh_of;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sinew::mesh::{HandshakeFailed, MtlsUnavailable, PeerIdentity};
use sinew::retry::ReplayBody;
use sinew::tls::{Identity, VerifyError};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};

/// A TCP listener that reports each connection it accepts (the peer's
/// address) and the bytes read from it.
pub(super) async fn listener() -> (SocketAddr, mpsc::UnboundedReceiver<(SocketAddr, usize)>) {
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
pub(super) fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<MtlsUnavailable> {
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

/// A hyper server behind a TLS acceptor of `identity`: answers with the
/// HTTP version and the caller's SPIFFE ID, and counts the requests that
/// reach it.
pub(super) async fn mtls_server(identity: &Identity) -> (SocketAddr, Arc<AtomicUsize>) {
    let config = identity
        .server_config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = sinew::tls::peer_id(tls.get_ref().1)
                    .map_or_else(|| "-".to_owned(), |id| id.to_string());
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = format!("{:?} {peer}", req.version());
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, served)
}

/// An identity holding a fresh SVID for `id`, issued by `ca`.
pub(super) fn identity_of(ca: &Ca, id: &str) -> Identity {
    let issued = ca.issue(&Leaf::svid(id));
    let identity = Identity::new();
    identity
        .set(issued.chain.clone(), issued.key(), ca.bundle("example.org"))
        .unwrap();
    identity
}

pub(super) const REVIEWS: &str = "spiffe://example.org/ns/shop/sa/reviews";
pub(super) const CART: &str = "spiffe://example.org/ns/shop/sa/cart";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_client_speaks_mtls_and_checks_the_endpoints_identity() {
    let ca = Ca::root("example.org root");
    let server = identity_of(&ca, REVIEWS);
    let (h1, served) = mtls_server(&server).await;
    let (h2, served_h2) = mtls_server(&server).await;
    let (any, served_any) = mtls_server(&server).await;
    let mesh = sinew::mesh::Mesh::builder()
        .identity(identity_of(&ca, CART))
        .config(
            sinew::config::MeshConfig::from_yaml(&format!(
                "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]\n  reviews-h2:\n    routes: [{{ split: [{{ cluster: reviews-h2 }}] }}]\n  anyone:\n    routes: [{{ split: [{{ cluster: anyone }}] }}]\n\
                 clusters:\n  reviews:\n    identities: [{REVIEWS}]\n    endpoints: [{{ address: \"{h1}\" }}]\n  reviews-h2:\n    protocol: http2\n    identities: [{REVIEWS}, {CART}]\n    endpoints: [{{ address: \"{h2}\" }}]\n  anyone:\n    mtls: true\n    endpoints: [{{ address: \"{any}\" }}]\n"
            ))
            .unwrap(),
        )
        .build()
        .await
        .unwrap();
    // `anyone` names no identity: any the trust bundle vouches for.
    for (service, version) in [
        ("reviews", "HTTP/1.1"),
        ("reviews-h2", "HTTP/2.0"),
        ("anyone", "HTTP/1.1"),
    ] {
        let request = Request::get(format!("http://{service}/"))
            .body(Full::<Bytes>::default())
            .unwrap();
        let response = tokio::time::timeout(
            Duration::from_secs(20),
            mesh.http_client(service).oneshot(request),
        )
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{service}: {e}"));
        assert_eq!(
            response.extensions().get::<PeerIdentity>(),
            Some(&PeerIdentity::new(REVIEWS.parse().unwrap())),
            "{service}: the endpoint's identity is on the response"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        // ALPN gave the cluster's protocol; the server saw the caller's SVID.
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("{version} {CART}"),
            "{service}"
        );
    }
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(served_h2.load(Ordering::SeqCst), 1);
    assert_eq!(served_any.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_another_identity_is_refused_at_the_handshake() {
    let ca = Ca::root("example.org root");
    let (addr, served) = mtls_server(&identity_of(&ca, REVIEWS)).await;
    let ratings = "spiffe://example.org/ns/shop/sa/ratings";
    let mesh = sinew::mesh::Mesh::builder()
        .identity(identity_of(&ca, CART))
        .config(
            sinew::config::MeshConfig::from_yaml(&format!(
                "services:\n  ratings:\n    routes: [{{ split: [{{ cluster: ratings }}] }}]\n\
                 clusters:\n  ratings:\n    identities: [{ratings}]\n    endpoints: [{{ address: \"{addr}\" }}]\n"
            ))
            .unwrap(),
        )
        .build()
        .await
        .unwrap();
    let request = Request::get("http://ratings/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let error = tokio::time::timeout(
        Duration::from_secs(20),
        mesh.http_client("ratings").oneshot(request),
    )
    .await
    .unwrap()
    .unwrap_err();
    let mut chain: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    let mut failed = None;
    while let Some(e) = chain {
        if let Some(found) = e.downcast_ref::<HandshakeFailed>() {
            failed = Some(found);
        }
        chain = e.source();
    }
    let failed = failed.unwrap_or_else(|| panic!("{error}"));
    assert_eq!(failed.endpoint, addr);
    assert_eq!(failed.clusters, ["ratings"]);
    assert!(
        matches!(
            VerifyError::find(failed),
            Some(VerifyError::UnexpectedIdentity { peer, .. }) if peer.to_string() == REVIEWS
        ),
        "{failed}"
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        0,
        "no request reached the handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_without_a_certificate_yet_refuses_before_connecting() {
    let (addr, mut accepted) = listener().await;
    let mesh = sinew::mesh::Mesh::builder()
        .identity(Identity::new())
        .config(
            sinew::config::MeshConfig::from_yaml(&format!(
                "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]\n\
                 clusters:\n  reviews:\n    identities: [{REVIEWS}]\n    endpoints: [{{ address: \"{addr}\" }}]\n"
            ))
            .unwrap(),
        )
        .build()
        .await
        .unwrap();
    let request = Request::get("http://reviews/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let error = mesh
        .http_client("reviews")
        .oneshot(request)
        .await
        .unwrap_err();
    let refused = refusal(error.as_ref()).unwrap_or_else(|| panic!("{error}"));
    assert!(refused.reason.contains("no certificate yet"), "{refused}");
    let sentinel = TcpStream::connect(addr).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.0, sentinel.local_addr().unwrap());
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sinew-mtls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `id`'s SVID, its key and `ca`'s root as the three PEM files of
/// a `file_watcher` provider.
fn write_files(dir: &std::path::Path, ca: &Ca, id: &str) -> sinew::tls::FileWatcherConfig {
    let issued = ca.issue(&Leaf::svid(id));
    let files = sinew::tls::FileWatcherConfig::new(
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&files.certificate_file, &issued.cert_pem).unwrap();
    std::fs::write(&files.private_key_file, &issued.key_pem).unwrap();
    std::fs::write(&files.ca_certificate_file, &ca.root_pem).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_give_the_mesh_its_identity() {
    let ca = Ca::root("example.org root");
    let (addr, served) = mtls_server(&identity_of(&ca, REVIEWS)).await;
    let dir = scratch("files");
    let files = write_files(&dir, &ca, CART);
    let mesh = sinew::mesh::Mesh::builder()
        .certificate_files(files.clone())
        .config(
            sinew::config::MeshConfig::from_yaml(&format!(
                "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]\n\
                 clusters:\n  reviews:\n    identities: [{REVIEWS}]\n    endpoints: [{{ address: \"{addr}\" }}]\n"
            ))
            .unwrap(),
        )
        .build()
        .await
        .unwrap();
    assert_eq!(
        mesh.identity()
            .and_then(|i| i.spiffe_id())
            .map(|id| id.to_string())
            .as_deref(),
        Some(CART)
    );
    let request = Request::get("http://reviews/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        mesh.http_client("reviews").oneshot(request),
    )
    .await
    .unwrap()
    .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), format!("HTTP/1.1 {CART}"));
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // Unreadable files stop the build, naming the setting and the file.
    std::fs::write(&files.private_key_file, "not a key").unwrap();
    let error = sinew::mesh::Mesh::builder()
        .certificate_files(files)
        .build()
        .await
        .unwrap_err();
    assert_eq!(error.field(), "certificate_files");
    assert!(error.to_string().contains("key.pem"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstraps_certificate_provider_gives_the_mesh_its_identity() {
    let ca = Ca::root("example.org root");
    let dir = scratch("bootstrap");
    let files = write_files(&dir, &ca, CART);
    // The same block grpcio reads; the control plane need not answer for
    // the identity to be there.
    let json = serde_json::json!({
        "xds_servers": [{"server_uri": "127.0.0.1:9", "channel_creds": [{"type": "insecure"}]}],
        "node": {"id": "cart-1"},
        "certificate_providers": {
            "default": {"plugin_name": "file_watcher", "config": {
                "certificate_file": files.certificate_file,
                "private_key_file": files.private_key_file,
                "ca_certificate_file": files.ca_certificate_file,
                "refresh_interval": "60s"
            }}
        }
    });
    let bootstrap = sinew::xds::Bootstrap::from_json(&json.to_string()).unwrap();
    let expected = sinew::tls::FileWatcherConfig {
        refresh_interval: Duration::from_secs(60),
        ..files
    };
    assert_eq!(bootstrap.certificate_provider(), Some(&expected));
    let mesh = sinew::mesh::Mesh::builder()
        .bootstrap(bootstrap)
        .build()
        .await
        .unwrap();
    assert_eq!(
        mesh.identity()
            .and_then(|i| i.spiffe_id())
            .map(|id| id.to_string())
            .as_deref(),
        Some(CART)
    );
}
