//! What Sinew's mutual TLS costs over plain rustls with the same suite
//! (TLS 1.3, aws-lc-rs, the same P-256 certificates): `cargo bench --bench
//! tls`. Both sides run in memory (records handed over in buffers), so the
//! figures are CPU, not network.
//!
//! Group `tls_handshake`: a full mutual handshake, client and server,
//! `plain_rustls` (rustls's WebPKI verifiers, the server's name checked
//! against a DNS SAN) against `sinew` (the SPIFFE verifiers and live
//! credentials of [`Identity`]); then `sinew_resumed`, a resumed handshake
//! (session tickets: no certificate sent or verified, a new key exchange).
//! The target is `sinew` ≤ 1.1 × `plain_rustls`.
//!
//! Group `tls_exchange`: one 1 KiB request and 1 KiB response over an
//! established connection of each kind (encrypt, decrypt, both ways). The
//! target is `sinew` ≤ 1.1 × `plain_rustls`.
//!
//! `SINEW_BENCH_SATURATION=<requests> cargo bench --bench tls`: CPU per
//! request at saturation over real loopback connections (see `saturation`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cpu.rs"]
mod cpu;

use criterion::{Criterion, criterion_group};
use rcgen::string::Ia5String;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use sinew::tls::{Identity, TrustBundle, TrustDomain};
use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;

const SERVER_ID: &str = "spiffe://example.org/ns/shop/sa/reviews";
const CLIENT_ID: &str = "spiffe://example.org/ns/shop/sa/cart";

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// A root, and a leaf for `id` (with `dns` too, so that plain rustls can
/// check the server's name: an X.509-SVID may carry other SANs).
fn leaf(issuer: &Issuer<'_, KeyPair>, id: &str, dns: Option<&str>) -> Leaf {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(Ia5String::try_from(id).unwrap())];
    if let Some(dns) = dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(Ia5String::try_from(dns).unwrap()));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key: key.serialize_der(),
    }
}

struct Pair {
    plain: (Arc<ClientConfig>, Arc<ServerConfig>),
    sinew: (Arc<ClientConfig>, Arc<ServerConfig>),
    /// Sinew's server config offering h2, and the client's identity.
    sinew_server_h2: Arc<ServerConfig>,
    client_identity: Identity,
}

fn configs() -> Pair {
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.subject_alt_names = vec![SanType::URI(
        Ia5String::try_from("spiffe://example.org").unwrap(),
    )];
    let root_key = KeyPair::generate().unwrap();
    let root_cert = root.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(root, root_key);
    let server = leaf(&issuer, SERVER_ID, Some("reviews.example.org"));
    let client = leaf(&issuer, CLIENT_ID, None);

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions = &[&rustls::version::TLS13];
    let mut roots = RootCertStore::empty();
    roots.add(root_cert.der().clone()).unwrap();
    let roots = Arc::new(roots);
    let plain_server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .unwrap(),
        )
        .with_single_cert(server.chain.clone(), server.key())
        .unwrap();
    let plain_client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(client.chain.clone(), client.key())
        .unwrap();

    let td = TrustDomain::new("example.org").unwrap();
    let bundle = || {
        let mut bundle = TrustBundle::new();
        bundle
            .add_roots(&td, vec![root_cert.der().clone()])
            .unwrap();
        bundle
    };
    let server_identity = Identity::new();
    server_identity
        .set(server.chain.clone(), server.key(), bundle())
        .unwrap();
    let client_identity = Identity::new();
    client_identity
        .set(client.chain.clone(), client.key(), bundle())
        .unwrap();
    Pair {
        sinew_server_h2: server_identity.server_config(vec![b"h2".to_vec()]).unwrap(),
        client_identity: client_identity.clone(),
        plain: (Arc::new(plain_client), Arc::new(plain_server)),
        sinew: (
            client_identity
                .client_config([SERVER_ID.parse().unwrap()], Vec::new())
                .unwrap(),
            server_identity.server_config(Vec::new()).unwrap(),
        ),
    }
}

/// Hands records back and forth until neither side has more to say.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let mut moved = false;
        while client.wants_write() {
            buf.clear();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            moved = true;
        }
        while server.wants_write() {
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
) -> (ClientConnection, ServerConnection) {
    let name = ServerName::try_from("reviews.example.org").unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    pump(&mut c, &mut s);
    assert!(!c.is_handshaking() && !s.is_handshaking());
    (c, s)
}

fn exchange(c: &mut ClientConnection, s: &mut ServerConnection, payload: &[u8], into: &mut [u8]) {
    c.writer().write_all(payload).unwrap();
    pump(c, s);
    s.reader().read_exact(into).unwrap();
    s.writer().write_all(payload).unwrap();
    pump(c, s);
    c.reader().read_exact(into).unwrap();
}

fn benches(criterion: &mut Criterion) {
    let pair = configs();
    let mut group = criterion.benchmark_group("tls_handshake");
    for (name, (client, server)) in [("plain_rustls", &pair.plain), ("sinew", &pair.sinew)] {
        // Full handshakes: the client offers no session to resume.
        let mut full = ClientConfig::clone(client);
        full.resumption = rustls::client::Resumption::disabled();
        let full = Arc::new(full);
        group.bench_function(name, |b| {
            b.iter(|| {
                let (c, s) = handshake(&full, server);
                assert_eq!(c.handshake_kind(), Some(rustls::HandshakeKind::Full));
                black_box((c, s))
            })
        });
    }
    let (client, server) = &pair.sinew;
    // A first handshake leaves tickets to resume with.
    let (mut first_c, mut first_s) = handshake(client, server);
    exchange(&mut first_c, &mut first_s, b"x", &mut [0u8; 1]);
    group.bench_function("sinew_resumed", |b| {
        b.iter(|| {
            let (mut c, mut s) = handshake(client, server);
            assert_eq!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
            // Read the new tickets, as a real exchange would.
            exchange(&mut c, &mut s, b"x", &mut [0u8; 1]);
            black_box((c, s))
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("tls_exchange");
    let payload = vec![7u8; 1024];
    let mut into = vec![0u8; 1024];
    for (name, (client, server)) in [("plain_rustls", &pair.plain), ("sinew", &pair.sinew)] {
        let (mut c, mut s) = handshake(client, server);
        group.bench_function(name, |b| {
            b.iter(|| exchange(&mut c, &mut s, &payload, &mut into))
        });
    }
    group.finish();
}

criterion_group!(tls, benches);

fn main() {
    if let Some(total) = std::env::var("SINEW_BENCH_SATURATION")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| *n > 0)
    {
        saturation::run(total);
        return;
    }
    tls();
    Criterion::default().configure_from_args().final_summary();
}

/// `SINEW_BENCH_SATURATION=<requests>`: CPU per request at saturation
/// (64 requests in flight over HTTP/2, client and server in this process),
/// over `plain_rustls` (hyper-util's client on a tokio-rustls connector, a
/// hyper server behind a tokio-rustls acceptor, rustls's WebPKI
/// verifiers) against `sinew` (hyper-util's client on `Mesh::connector`,
/// the same server behind `Identity::server_config`), in alternating
/// pairs; prints the median of each and their ratio.
mod saturation {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::{Connected, Connection};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    /// A hyper server answering `ok` behind a TLS acceptor of `config`.
    async fn server(config: Arc<ServerConfig>) -> SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        addr
    }

    /// A TLS stream as hyper-util's client wants it.
    struct PlainTls(TokioIo<tokio_rustls::client::TlsStream<TcpStream>>);

    impl Connection for PlainTls {
        fn connected(&self) -> Connected {
            Connected::new().negotiated_h2()
        }
    }

    impl hyper::rt::Read for PlainTls {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: hyper::rt::ReadBufCursor<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl hyper::rt::Write for PlainTls {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// tokio-rustls with `config`, to the URI's address.
    fn plain_connector(
        config: Arc<ClientConfig>,
    ) -> impl tower::Service<
        http::Uri,
        Response = PlainTls,
        Error = std::io::Error,
        Future = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<PlainTls, std::io::Error>> + Send>,
        >,
    > + Clone {
        tower::service_fn(move |uri: http::Uri| {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            Box::pin(async move {
                let addr = uri
                    .authority()
                    .map(|a| a.as_str().to_owned())
                    .unwrap_or_default();
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from("reviews.example.org").unwrap();
                Ok(PlainTls(TokioIo::new(connector.connect(name, tcp).await?)))
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
        })
    }

    /// CPU per request with 64 requests in flight.
    async fn saturated<C>(client: &Client<C, Empty<Bytes>>, url: &str, total: u32) -> Duration
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        const IN_FLIGHT: u32 = 64;
        let before = crate::cpu::cpu_time().unwrap();
        let tasks: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (client, url) = (client.clone(), url.to_owned());
                tokio::spawn(async move {
                    for _ in 0..total / IN_FLIGHT {
                        let request = http::Request::get(&url).body(Empty::new()).unwrap();
                        let response = client.request(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        response.into_body().collect().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        (crate::cpu::cpu_time().unwrap() - before) / total
    }

    pub(super) fn run(total: u32) {
        let pair = configs();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let h2 = || vec![b"h2".to_vec()];
        let (plain_client, sinew_client, plain_url, sinew_url) = runtime.block_on(async {
            let mut plain_server = ServerConfig::clone(&pair.plain.1);
            plain_server.alpn_protocols = h2();
            let plain_addr = server(Arc::new(plain_server)).await;
            let sinew_addr = server(pair.sinew_server_h2.clone()).await;
            let mut plain_client_config = ClientConfig::clone(&pair.plain.0);
            plain_client_config.alpn_protocols = h2();
            let plain_client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(plain_connector(Arc::new(plain_client_config)));
            let config = sinew::config::MeshConfig::from_yaml(&format!(
                "clusters:\n  reviews:\n    protocol: http2\n    identities: [{SERVER_ID}]\n    endpoints: [{{ address: \"{sinew_addr}\" }}]\n"
            ))
            .unwrap();
            let mesh = sinew::mesh::Mesh::builder()
                .identity(pair.client_identity.clone())
                .config(config)
                .build()
                .await
                .unwrap();
            let sinew_client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(mesh.connector());
            (
                plain_client,
                sinew_client,
                format!("https://{plain_addr}/"),
                format!("https://{sinew_addr}/"),
            )
        });
        let mut plain = Vec::new();
        let mut sinew = Vec::new();
        for round in 0..6 {
            runtime.block_on(async {
                if round % 2 == 0 {
                    plain.push(saturated(&plain_client, &plain_url, total).await);
                    sinew.push(saturated(&sinew_client, &sinew_url, total).await);
                } else {
                    sinew.push(saturated(&sinew_client, &sinew_url, total).await);
                    plain.push(saturated(&plain_client, &plain_url, total).await);
                }
            });
        }
        plain.sort();
        sinew.sort();
        let (p, s) = (plain[3].as_secs_f64() * 1e6, sinew[3].as_secs_f64() * 1e6);
        #[allow(clippy::print_stdout)]
        {
            println!(
                "mTLS CPU per request at 64 in flight over HTTP/2 (client and server), median of 6: plain_rustls {p:.2} µs, sinew {s:.2} µs ({:.3}×)",
                s / p
            );
        }
    }
}
