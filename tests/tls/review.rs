//! Defects found in review, each proved by a test that fails until it is
//! fixed.

use super::certs::{Ca, Leaf, id};
use super::harness::{Server, connect, exchange};
use super::{CLIENT_ID, SERVER_ID, TD};
use rustls::HandshakeKind;
use sinew::tls::{Identity, TrustDomain};
use std::sync::atomic::Ordering;

/// A TLS 1.3 resumption skips the client's certificate: rustls restores
/// the chain verified at the full handshake. A root taken out of the
/// server's bundle (the end of a CA rotation's overlap, or a compromised
/// root cut off) refuses its clients' full handshakes, and must refuse
/// their resumptions too; the ticket would otherwise admit them for the
/// ticketer's lifetime (hours), whatever the bundle or the leaf's expiry
/// say since.
#[tokio::test]
async fn a_root_taken_out_of_the_bundle_refuses_resumed_clients_too() {
    let old = Ca::root("old root");
    let new = Ca::root("new root");
    let td = TrustDomain::new(TD).unwrap();

    // The server's leaf is from the new root; during the overlap it
    // trusts both.
    let server = Identity::new();
    let leaf = new.issue(&Leaf::svid(SERVER_ID));
    let mut both = new.bundle(TD);
    both.add_pem(&td, old.root_pem.as_bytes()).unwrap();
    server
        .set(leaf.chain.clone(), leaf.key(), both.clone())
        .unwrap();
    // The client still has a leaf from the old root.
    let client = Identity::new();
    let leaf = old.issue(&Leaf::svid(CLIENT_ID));
    client.set(leaf.chain.clone(), leaf.key(), both).unwrap();

    let mut srv = Server::start(server.server_config(Vec::new()).unwrap()).await;
    let config = client.client_config([id(SERVER_ID)], Vec::new()).unwrap();
    let mut first = connect(config.clone(), srv.addr, "cart").await.unwrap();
    // Once the echo is read, the session tickets are stored.
    exchange(&mut first, b"one").await.unwrap();
    let accepted = srv.handshake().await.unwrap();
    assert_eq!(accepted.kind, Some(HandshakeKind::Full));
    drop(first);

    // The overlap ends: the old root leaves the server's bundle.
    server.set_bundle(new.bundle(TD)).unwrap();

    // A full handshake (another name: no session to offer) is refused.
    let _ = connect(config.clone(), srv.addr, "no-session").await;
    assert!(
        srv.handshake().await.is_err(),
        "a full handshake with a leaf of the removed root was accepted"
    );
    let before = srv.bytes_to_handler.load(Ordering::SeqCst);

    // A resumption with the ticket won before must be refused as well.
    let resumed = connect(config, srv.addr, "cart").await;
    let outcome = srv.handshake().await;
    if let Ok(accepted) = &outcome {
        panic!(
            "the server accepted a {:?} handshake from {:?}, whose root it no longer trusts \
             (client side: {:?})",
            accepted.kind,
            accepted.peer.as_ref().map(ToString::to_string),
            resumed.as_ref().map(|s| s.get_ref().1.handshake_kind())
        );
    }
    assert_eq!(srv.bytes_to_handler.load(Ordering::SeqCst), before);
}

/// The X.509-SVID specification: a leaf MUST set digitalSignature (it
/// signs the handshake; go-spiffe refuses a leaf without it). A leaf
/// whose keyUsage is only keyEncipherment, or that has no keyUsage at
/// all, is not an SVID.
#[test]
fn a_leaf_without_digital_signature_is_not_an_svid() {
    let now = std::time::SystemTime::now();
    let leaf = |usages: Vec<rcgen::KeyUsagePurpose>| {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from(CLIENT_ID).unwrap(),
        )];
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = usages;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    };
    let signing = leaf(vec![rcgen::KeyUsagePurpose::DigitalSignature]);
    assert!(sinew::tls::verify_svid(&signing, now).is_ok());
    for (what, der) in [
        (
            "keyEncipherment only",
            leaf(vec![rcgen::KeyUsagePurpose::KeyEncipherment]),
        ),
        ("no keyUsage", leaf(Vec::new())),
    ] {
        assert!(
            sinew::tls::verify_svid(&der, now).is_err(),
            "a leaf with {what} was accepted as an X.509-SVID"
        );
    }
}
