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

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
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
criterion_main!(tls);
