//! What the mutual TLS tests share: identities from one CA, meshes that
//! serve and call `reviews` over mTLS, an application that reports the
//! caller's SPIFFE ID, and raw TLS and plaintext callers.

use super::*;
use crate::certs::{Ca, Issued, Leaf};
use http_body_util::BodyExt;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use sinew::mesh::PeerIdentity;
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
pub fn raw_client(issued: Option<&Issued>, verifying_with: &Identity) -> Arc<ClientConfig> {
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
