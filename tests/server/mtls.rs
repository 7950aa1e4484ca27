//! Mutual TLS on `mesh.serve`: the modes (strict, permissive, disabled),
//! the caller's SPIFFE ID on each request, handshakes bounded by the
//! header-read timeout, and a mode that needs an identity the mesh lacks.

use super::*;
use crate::certs::{Ca, Leaf};
use http_body_util::BodyExt;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use sinew::mesh::{PeerIdentity, ServeError};
use sinew::tls::{Identity, SpiffeServerVerifier};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TD: &str = "example.org";
pub const REVIEWS: &str = "spiffe://example.org/ns/shop/sa/reviews";
pub const CART: &str = "spiffe://example.org/ns/shop/sa/cart";

/// An identity holding a fresh SVID for `id`, issued by `ca`.
pub fn identity_of(ca: &Ca, id: &str) -> Identity {
    let issued = ca.issue(&Leaf::svid(id));
    let identity = Identity::new();
    identity
        .set(issued.chain.clone(), issued.key(), ca.bundle(TD))
        .unwrap();
    identity
}

/// `reviews` served at `addr` over `protocol` by a workload that must be
/// REVIEWS, with the inbound block `inbound`.
pub fn mtls_config(addr: SocketAddr, protocol: &str, inbound: &str) -> MeshConfig {
    let inbound = if inbound.is_empty() {
        String::new()
    } else {
        format!("\n    inbound: {inbound}")
    };
    MeshConfig::from_yaml(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]{inbound}\n\
         clusters:\n  reviews:\n    protocol: {protocol}\n    identities: [{REVIEWS}]\n    endpoints: [{{ address: \"{addr}\" }}]\n"
    ))
    .unwrap()
}

pub async fn mesh_as(identity: Identity, config: MeshConfig) -> Mesh {
    Mesh::builder()
        .identity(identity)
        .config(config)
        .build()
        .await
        .unwrap()
}

/// An application that answers with the caller's SPIFFE ID (`-` for
/// none) and counts the requests that reach it.
#[allow(clippy::type_complexity)]
pub fn recording() -> (
    impl tower::Service<
        Request<Incoming>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
    > + Clone
    + Send
    + 'static,
    Arc<AtomicUsize>,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let app = tower::service_fn(move |req: Request<Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let caller = req
            .extensions()
            .get::<PeerIdentity>()
            .map_or_else(|| "-".to_owned(), |p| p.id().to_string());
        async move { Ok(support::text(200, caller)) }
    });
    (app, count)
}

/// GET / through `mesh`'s client for `reviews`: the status, the body and
/// the server's identity seen on the response.
pub async fn mesh_get(mesh: &Mesh) -> Result<(u16, String, Option<PeerIdentity>), String> {
    let request = Request::get("http://reviews/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = within("a response", mesh.http_client("reviews").oneshot(request))
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let server = response.extensions().get::<PeerIdentity>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned(), server))
}

/// A plain HTTP/1.1 request over a fresh TCP connection: whatever came
/// back before the server closed it.
pub async fn plaintext_get(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp
        .write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .await;
    read_to_close(&mut tcp).await
}

/// Reads until the peer closes the connection (or it fails).
pub async fn read_to_close<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> Vec<u8> {
    let mut got = Vec::new();
    within("the connection closes", async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// A rustls client presenting `chain`/`key` (or nothing), verifying the
/// server as Sinew does, offering HTTP/1.1.
pub fn raw_client(
    issued: Option<&crate::certs::Issued>,
    verifying_with: &Identity,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
        verifying_with,
        [REVIEWS.parse().unwrap()],
    )));
    let mut config = match issued {
        Some(issued) => builder
            .with_client_auth_cert(issued.chain.clone(), issued.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTP/1.1 GET over TLS with `config`: the bytes that came back, or
/// the handshake's error.
pub async fn tls_get(config: Arc<ClientConfig>, addr: SocketAddr) -> std::io::Result<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("reviews").unwrap();
    let mut tls = within(
        "client handshake",
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await?;
    // TLS 1.3: the client finishes before the server has judged its
    // certificate; a refusal shows on the first read.
    let _ = tls
        .write_all(b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n")
        .await;
    Ok(read_to_close(&mut tls).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_client_reaches_a_strict_server_which_sees_its_identity() {
    let ca = Ca::root("example.org root");
    for protocol in ["http1", "http2"] {
        let (listener, addr) = listener().await;
        let config = mtls_config(addr, protocol, "{ mtls: strict }");
        let server_mesh = mesh_as(identity_of(&ca, REVIEWS), config.clone()).await;
        let (app, count) = recording();
        let server = server_mesh.serve("reviews", listener, app).await.unwrap();
        let client = mesh_as(identity_of(&ca, CART), config).await;
        for _ in 0..2 {
            let (status, caller, server_id) = mesh_get(&client).await.unwrap();
            assert_eq!(status, 200, "{protocol}");
            assert_eq!(
                caller, CART,
                "{protocol}: the handler saw the caller's SVID"
            );
            assert_eq!(
                server_id.map(|p| p.id().to_string()).as_deref(),
                Some(REVIEWS)
            );
        }
        assert_eq!(count.load(Ordering::SeqCst), 2);
        within("shutdown", server.shutdown()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_caller_is_refused_by_a_server_with_an_identity() {
    let ca = Ca::root("example.org root");
    // Strict set, and strict by default when the mesh has an identity.
    for inbound in ["{ mtls: strict }", ""] {
        let (listener, addr) = listener().await;
        let server_mesh = mesh_as(
            identity_of(&ca, REVIEWS),
            mtls_config(addr, "http1", inbound),
        )
        .await;
        let (app, count) = recording();
        let server = server_mesh.serve("reviews", listener, app).await.unwrap();
        let answer = plaintext_get(addr).await;
        assert!(
            !answer.windows(4).any(|w| w == b"HTTP"),
            "{inbound:?}: answered in plaintext: {}",
            String::from_utf8_lossy(&answer)
        );
        // hyper's own client over plain TCP fails too.
        let refused = support::client::<Empty<Bytes>>()
            .get(format!("http://{addr}/").parse().unwrap())
            .await;
        assert!(refused.is_err(), "{inbound:?}: {refused:?}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            0,
            "{inbound:?}: no request reached the handler"
        );
        within("shutdown", server.shutdown()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permissive_server_serves_tls_and_plaintext_callers() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let config = mtls_config(addr, "http2", "{ mtls: permissive }");
    let server_mesh = mesh_as(identity_of(&ca, REVIEWS), config.clone()).await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let client = mesh_as(identity_of(&ca, CART), config).await;
    let (status, caller, _) = mesh_get(&client).await.unwrap();
    assert_eq!((status, caller.as_str()), (200, CART));
    let answer = String::from_utf8(plaintext_get(addr).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n-"),
        "no identity in plaintext: {answer}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_serves_plaintext_even_with_an_identity() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let server_mesh = mesh_as(
        identity_of(&ca, REVIEWS),
        mtls_config(addr, "http1", "{ mtls: disabled }"),
    )
    .await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let answer = String::from_utf8(plaintext_get(addr).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n-"), "{answer}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_mode_that_needs_tls_on_a_mesh_without_identity_is_refused_at_start() {
    for mode in ["strict", "permissive"] {
        let (listener, addr) = listener().await;
        let mesh = mesh(config(addr, "http1", &format!("{{ mtls: {mode} }}"))).await;
        let (app, count) = recording();
        let error = match mesh.serve("reviews", listener, app).await {
            Err(ServeError::Config(error)) => error,
            other => panic!("{mode}: {other:?}"),
        };
        assert_eq!(error.field(), "services.reviews.inbound.mtls", "{error}");
        assert!(error.message().contains("identity"), "{error}");
        let server = mesh.server("reviews");
        assert_eq!(
            server.layer().unwrap_err().field(),
            "services.reviews.inbound.mtls"
        );
        let (second, _) = super::listener().await;
        assert!(server.incoming(second).is_err());
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
    // The builder's own block is named as such.
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let inbound = sinew::config::InboundConfig {
        mtls: Some(sinew::config::MtlsMode::Strict),
        ..Default::default()
    };
    let (app, _) = recording();
    match mesh
        .server("reviews")
        .inbound(inbound)
        .serve(listener, app)
        .await
    {
        Err(ServeError::Config(error)) => assert_eq!(error.field(), "inbound.mtls"),
        other => panic!("{other:?}"),
    }
}

/// A configuration change that asks for TLS on a mesh without an identity
/// fails closed: new connections are refused, not served in plaintext.
#[tokio::test]
async fn strict_by_a_live_change_without_identity_refuses_connections() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let (app, count) = recording();
    let server = mesh.serve("reviews", listener, app).await.unwrap();
    let answer = String::from_utf8(plaintext_get(addr).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    mesh.apply(config(addr, "http1", "{ mtls: strict }"))
        .unwrap();
    let answer = plaintext_get(addr).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(count.load(Ordering::SeqCst), 1);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A caller that opens TCP and sends nothing, or stops half way through
/// its handshake, is closed at the header-read timeout and frees its
/// place under the cap. Handshakes run in the connections' own tasks: a
/// stalled one holds back no other caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_the_header_read_timeout() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let timeout = Duration::from_secs(1);
    let config = mtls_config(
        addr,
        "http1",
        "{ mtls: permissive, connections: { max: 2, header_read_timeout: 1s } }",
    );
    let server_mesh = mesh_as(identity_of(&ca, REVIEWS), config.clone()).await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let client = raw_client(Some(&ca.issue(&Leaf::svid(CART))), &identity_of(&ca, CART));
    // A record header promising a ClientHello that never comes.
    let half_hello: &[u8] = &[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00];
    for stall in [&[][..], half_hello] {
        let started = std::time::Instant::now();
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(stall).await.unwrap();
        // Served meanwhile, over TLS, in full.
        let answer = String::from_utf8(tls_get(client.clone(), addr).await.unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(CART), "{answer}");
        assert!(read_to_close(&mut stalled).await.is_empty());
        assert!(
            started.elapsed() >= timeout - Duration::from_millis(50),
            "closed at the timeout, not before: {:?}",
            started.elapsed()
        );
    }
    // Two stalled callers fill the cap: a third is closed unanswered. Once
    // they are closed, their places are free.
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    let third = tls_get(client.clone(), addr).await;
    assert!(third.as_ref().map_or(true, Vec::is_empty), "{third:?}");
    read_to_close(&mut a).await;
    read_to_close(&mut b).await;
    within("a place under the cap", async {
        loop {
            if let Ok(answer) = tls_get(client.clone(), addr).await
                && answer.starts_with(b"HTTP/1.1 200")
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(count.load(Ordering::SeqCst), 3);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A connection still in its handshake does not hold up a shutdown: it
/// is closed at once, as an idle connection is, rather than kept until
/// the header-read timeout or the drain timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_still_in_their_handshake() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let server_mesh = mesh_as(
        identity_of(&ca, REVIEWS),
        mtls_config(
            addr,
            "http1",
            "{ connections: { header_read_timeout: 60s } }",
        ),
    )
    .await;
    let (app, count) = recording();
    let server = server_mesh
        .server("reviews")
        .drain_timeout(Duration::from_secs(60))
        .serve(listener, app)
        .await
        .unwrap();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    // Served, so the stalled connection was accepted before (in order).
    let client = raw_client(Some(&ca.issue(&Leaf::svid(CART))), &identity_of(&ca, CART));
    let answer = tls_get(client, addr).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    within("shutdown", server.shutdown()).await.unwrap();
    assert!(read_to_close(&mut stalled).await.is_empty());
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// The server's TLS configuration is built once and reads the identity's
/// live certificate: after a rotation, new connections get the new leaf,
/// and a connection opened before keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_serves_new_connections_and_spares_open_ones() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let config = mtls_config(addr, "http2", "{ mtls: strict }");
    let server_identity = identity_of(&ca, REVIEWS);
    let server_mesh = mesh_as(server_identity.clone(), config.clone()).await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let client = mesh_as(identity_of(&ca, CART), config).await;
    // The mesh's client keeps its HTTP/2 connection open.
    assert_eq!(mesh_get(&client).await.unwrap().0, 200);

    let leaf_of = |issued: &crate::certs::Issued| issued.chain[0].clone();
    let rotated = ca.issue(&Leaf::svid(REVIEWS));
    server_identity
        .set(rotated.chain.clone(), rotated.key(), ca.bundle(TD))
        .unwrap();
    let raw = raw_client(Some(&ca.issue(&Leaf::svid(CART))), &identity_of(&ca, CART));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = within(
        "a handshake",
        tokio_rustls::TlsConnector::from(raw)
            .connect(ServerName::try_from("reviews").unwrap(), tcp),
    )
    .await
    .unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        presented,
        leaf_of(&rotated),
        "a new connection gets the new leaf"
    );

    // The open connection still serves.
    assert_eq!(mesh_get(&client).await.unwrap().0, 200);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// An identity without a certificate yet (the control plane has not
/// answered): strict by default, and every caller is refused at the
/// handshake rather than served in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_without_a_certificate_yet_refuses_every_caller() {
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let server_mesh = mesh_as(Identity::new(), mtls_config(addr, "http1", "")).await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    // At most a TLS alert comes back, never an HTTP answer.
    let answer = plaintext_get(addr).await;
    assert!(!answer.windows(4).any(|w| w == b"HTTP"), "{answer:?}");
    let raw = raw_client(Some(&ca.issue(&Leaf::svid(CART))), &identity_of(&ca, CART));
    let answer = tls_get(raw, addr).await.unwrap_or_default();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(count.load(Ordering::SeqCst), 0);
    within("shutdown", server.shutdown()).await.unwrap();
}
