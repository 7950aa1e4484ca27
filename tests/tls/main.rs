//! Sinew's TLS identity core through real handshakes on loopback:
//! tokio-rustls over TCP, certificates made with rcgen.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod cases;
mod certs;
mod files;
mod harness;
mod reject;
mod review;
mod rotation;

use certs::{Ca, Leaf, id};
use harness::{Server, connect, exchange, server_leaf};
use sinew::tls::Identity;
use std::sync::atomic::Ordering;

pub const TD: &str = "cluster.local";
pub const SERVER_ID: &str = "spiffe://cluster.local/ns/shop/sa/cart";
pub const CLIENT_ID: &str = "spiffe://cluster.local/ns/shop/sa/web";

/// A CA and two workloads it issued SVIDs to.
pub struct Mesh {
    pub ca: Ca,
    pub server: Identity,
    pub client: Identity,
}

pub fn mesh_with(ca: Ca) -> Mesh {
    let server = Identity::new();
    let client = Identity::new();
    for (identity, spiffe_id) in [(&server, SERVER_ID), (&client, CLIENT_ID)] {
        let leaf = ca.issue(&Leaf::svid(spiffe_id));
        identity
            .set(leaf.chain.clone(), leaf.key(), ca.bundle(TD))
            .unwrap();
    }
    Mesh { ca, server, client }
}

pub fn mesh() -> Mesh {
    mesh_with(Ca::root("root"))
}

#[tokio::test]
async fn mutual_tls_both_ways_with_peer_ids() {
    let mesh = mesh();
    let mut server = Server::start(mesh.server.server_config(vec![b"h2".to_vec()]).unwrap()).await;
    let client_config = mesh
        .client
        .client_config([id(SERVER_ID)], vec![b"h2".to_vec()])
        .unwrap();

    let mut stream = connect(client_config, server.addr, "cart").await.unwrap();
    assert_eq!(exchange(&mut stream, b"ping").await.unwrap(), b"ping");

    let conn = stream.get_ref().1;
    assert_eq!(sinew::tls::peer_id(conn), Some(id(SERVER_ID)));
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let accepted = server.handshake().await.unwrap();
    assert_eq!(accepted.peer, Some(id(CLIENT_ID)));
    assert_eq!(server.bytes_to_handler.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn chains_through_an_intermediate_verify() {
    let root = Ca::root("root");
    let mesh = mesh_with(root.intermediate("intermediate"));
    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let config = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();
    let mut stream = connect(config, server.addr, "cart").await.unwrap();
    assert_eq!(exchange(&mut stream, b"x").await.unwrap(), b"x");
    assert_eq!(server.handshake().await.unwrap().peer, Some(id(CLIENT_ID)));
}

#[tokio::test]
async fn a_second_connection_resumes_and_keeps_the_peer_id() {
    let mesh = mesh();
    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let config = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();

    let mut first = connect(config.clone(), server.addr, "cart").await.unwrap();
    // The echo comes after the session tickets: once read, they are stored.
    exchange(&mut first, b"one").await.unwrap();
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    server.handshake().await.unwrap();

    // Another config for the same identities shares the session cache.
    let again = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();
    let mut second = connect(again, server.addr, "cart").await.unwrap();
    exchange(&mut second, b"two").await.unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(sinew::tls::peer_id(second.get_ref().1), Some(id(SERVER_ID)));
    let accepted = server.handshake().await.unwrap();
    assert_eq!(accepted.kind, Some(rustls::HandshakeKind::Resumed));
    assert_eq!(accepted.peer, Some(id(CLIENT_ID)));
}

/// A resumed session skips the server's certificate: a ticket won while
/// expecting one identity must not admit a connection expecting another.
#[tokio::test]
async fn sessions_are_not_shared_across_allowed_identities() {
    let mesh = mesh();
    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let cart = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();
    let mut first = connect(cart, server.addr, "same-name").await.unwrap();
    exchange(&mut first, b"one").await.unwrap();
    server.handshake().await.unwrap();

    let other = "spiffe://cluster.local/ns/shop/sa/other";
    let elsewhere = mesh.client.client_config([id(other)], Vec::new()).unwrap();
    let err = connect(elsewhere, server.addr, "same-name")
        .await
        .unwrap_err();
    assert!(
        matches!(
            sinew::tls::VerifyError::find(&err),
            Some(sinew::tls::VerifyError::UnexpectedIdentity { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_identity_without_material_refuses_every_handshake() {
    let mesh = mesh();
    let empty = Identity::new();
    assert!(!empty.is_ready());

    // An empty client cannot verify anyone.
    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let config = empty.client_config([id(SERVER_ID)], Vec::new()).unwrap();
    let err = connect(config, server.addr, "cart").await.unwrap_err();
    assert_eq!(
        sinew::tls::VerifyError::find(&err),
        Some(&sinew::tls::VerifyError::NoCredentials)
    );
    assert!(server.handshake().await.is_err());

    // An empty server has no certificate to present.
    let mut bare = Server::start(empty.server_config(Vec::new()).unwrap()).await;
    let config = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();
    assert!(connect(config, bare.addr, "cart").await.is_err());
    assert!(bare.handshake().await.is_err());
    assert_eq!(server.bytes_to_handler.load(Ordering::SeqCst), 0);
    assert_eq!(bare.bytes_to_handler.load(Ordering::SeqCst), 0);
    let _ = server_leaf;
}
