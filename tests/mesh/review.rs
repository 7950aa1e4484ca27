//! Defects found in review, each proved by a test that failed until it
//! was fixed.

use super::certs::Ca;
use super::mtls::{CART, REVIEWS, identity_of, mtls_server};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sinew::mesh::PeerIdentity;
use sinew::retry::ReplayBody;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tower::{Layer, ServiceExt};

const PAYMENTS: &str = "spiffe://example.org/ns/shop/sa/payments";

/// The connector checks an endpoint's SPIFFE ID against every cluster
/// holding it, but only when it opens a connection; the pool reuses a
/// connection by `https://address` whatever cluster the request is for.
/// An application's own client behind two clusters' layers (the pattern
/// `Mesh::connector` documents), and an endpoint that joins a second
/// cluster naming other identities: that cluster's requests ride the
/// connection verified for the first, and reach a peer it does not accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_is_not_reused_for_a_cluster_that_refuses_its_peer() {
    let ca = Ca::root("example.org root");
    let (addr, served) = mtls_server(&identity_of(&ca, REVIEWS)).await;
    let config = |payments: &str| {
        sinew::config::MeshConfig::from_yaml(&format!(
            "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]\n  payments:\n    routes: [{{ split: [{{ cluster: payments }}] }}]\n\
             clusters:\n  reviews:\n    protocol: http2\n    identities: [{REVIEWS}]\n    endpoints: [{{ address: \"{addr}\" }}]\n  payments:\n    protocol: http2\n    identities: [{PAYMENTS}]\n    endpoints: [{{ address: \"{payments}\" }}]\n"
        ))
        .unwrap()
    };
    let mesh = sinew::mesh::Mesh::builder()
        .identity(identity_of(&ca, CART))
        .config(config("127.0.0.1:9"))
        .build()
        .await
        .unwrap();
    let own =
        Client::builder(TokioExecutor::new()).build::<_, ReplayBody<Full<Bytes>>>(mesh.connector());
    let request = |host: &str| {
        Request::get(format!("http://{host}/"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    let response = tokio::time::timeout(
        Duration::from_secs(20),
        mesh.client_layer("reviews")
            .layer(own.clone())
            .oneshot(request("reviews")),
    )
    .await
    .unwrap()
    .unwrap();
    // HTTP/2: the connection is in the pool from its handshake on.
    response.into_body().collect().await.unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // The reviews endpoint's address joins `payments`, which accepts only
    // the payments identity.
    mesh.apply(config(&addr.to_string())).unwrap();
    // A client with an empty pool is refused: the connector sees the two
    // clusters holding the address accept no identity in common.
    let fresh =
        Client::builder(TokioExecutor::new()).build::<_, ReplayBody<Full<Bytes>>>(mesh.connector());
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        mesh.client_layer("payments")
            .layer(fresh)
            .oneshot(request("payments")),
    )
    .await
    .unwrap();
    assert!(refused.is_err(), "a new connection for payments was made");
    assert_eq!(served.load(Ordering::SeqCst), 1);
    // The client whose pool holds the connection verified for reviews:
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        mesh.client_layer("payments")
            .layer(own.clone())
            .oneshot(request("payments")),
    )
    .await
    .unwrap();
    if let Ok(response) = outcome {
        panic!(
            "a request to `payments` (identities [{PAYMENTS}]) reached {:?}; requests served: {}",
            response
                .extensions()
                .get::<PeerIdentity>()
                .map(|p| p.id().to_string()),
            served.load(Ordering::SeqCst)
        );
    }
    assert_eq!(served.load(Ordering::SeqCst), 1, "payments reached reviews");
}

/// The connector finds an endpoint's clusters by its exact socket
/// address, and speaks plaintext to an address no mTLS cluster holds. The
/// IPv4-mapped IPv6 form of an mTLS endpoint's address reaches the same
/// socket, and is spoken to in plaintext: a request aimed by hand (or a
/// URL from elsewhere) gets around the refusal the connector promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_endpoint_is_not_reached_in_plaintext_by_its_ipv4_mapped_address() {
    use super::mtls::{listener, refusal};
    let (addr, mut accepted) = listener().await;
    let ca = Ca::root("example.org root");
    let mesh = sinew::mesh::Mesh::builder()
        .identity(identity_of(&ca, CART))
        .config(
            sinew::config::MeshConfig::from_yaml(&format!(
                "services:\n  secure:\n    routes: [{{ split: [{{ cluster: secure }}] }}]\n\
                 clusters:\n  secure:\n    identities: [{REVIEWS}]\n    endpoints: [{{ address: \"{addr}\" }}]\n"
            ))
            .unwrap(),
        )
        .build()
        .await
        .unwrap();
    let own =
        Client::builder(TokioExecutor::new()).build::<_, ReplayBody<Full<Bytes>>>(mesh.connector());
    let std::net::IpAddr::V4(v4) = addr.ip() else {
        unreachable!()
    };
    let mapped = std::net::SocketAddr::new(v4.to_ipv6_mapped().into(), addr.port());
    let by_hand = Request::get(format!("http://{mapped}/"))
        .body(ReplayBody::new(Full::<Bytes>::default(), 0))
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), own.request(by_hand))
        .await
        .unwrap();
    // Refused, or spoken to over mTLS (the endpoint here speaks no TLS:
    // the handshake fails), never in plaintext.
    if let Err(error) = &outcome
        && (refusal(error).is_some()
            || std::error::Error::source(error)
                .and_then(|e| e.downcast_ref::<sinew::mesh::HandshakeFailed>())
                .is_some_and(|failed| failed.clusters == ["secure"]))
    {
        return;
    }
    // Not refused: see what reached the endpoint.
    let reached = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .ok()
        .flatten();
    panic!(
        "a request to {mapped} (the endpoint {addr} of `secure`) was not refused: {:?}; the endpoint got {:?} (peer, plaintext bytes)",
        outcome.map(|r| r.status()),
        reached
    );
}

/// TLS 1.3: the client's handshake is over before the server has checked
/// the client's certificate. A server that refused the mesh's certificate
/// (another CA) answered with an alert after the request went out, and the
/// caller got hyper's error for a closed connection, not the
/// `HandshakeFailed` the docs promise for a failed handshake, which
/// retries treat as a request never processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_the_client_certificate_is_a_handshake_failure() {
    refused_by_the_server("http1").await;
}

/// The same over HTTP/2, where h2 does not hand the connection's error to
/// the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_refuses_the_client_certificate_over_http2_is_a_handshake_failure() {
    refused_by_the_server("http2").await;
}

async fn refused_by_the_server(protocol: &str) {
    use sinew::mesh::HandshakeFailed;
    let ours = Ca::root("the server's root");
    let theirs = Ca::root("another root");
    let (addr, served) = mtls_server(&identity_of(&ours, REVIEWS)).await;
    // The client trusts the server's root, but its own leaf is from a
    // root the server does not trust.
    let client = sinew::tls::Identity::new();
    let leaf = theirs.issue(&super::certs::Leaf::svid(CART));
    let mut bundle = theirs.bundle("example.org");
    bundle
        .add_pem(
            &sinew::tls::TrustDomain::new("example.org").unwrap(),
            ours.root_pem.as_bytes(),
        )
        .unwrap();
    client.set(leaf.chain.clone(), leaf.key(), bundle).unwrap();
    let mesh = sinew::mesh::Mesh::builder()
        .identity(client)
        .config(
            sinew::config::MeshConfig::from_yaml(&format!(
                "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]\n\
                 clusters:\n  reviews:\n    protocol: {protocol}\n    identities: [{REVIEWS}]\n    endpoints: [{{ address: \"{addr}\" }}]\n"
            ))
            .unwrap(),
        )
        .build()
        .await
        .unwrap();
    let error = tokio::time::timeout(
        Duration::from_secs(20),
        mesh.http_client("reviews").oneshot(request_to("reviews")),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(served.load(Ordering::SeqCst), 0);
    // Whether the alert beat the request out or not, and over HTTP/2 too
    // (where h2 keeps no connection error's type), the error says the
    // endpoint refused the mesh's certificate.
    let failed = HandshakeFailed::find(error.as_ref())
        .unwrap_or_else(|| panic!("not a HandshakeFailed: {error:?}"));
    assert_eq!(failed.endpoint, addr);
    assert_eq!(failed.clusters, ["reviews"]);
    assert!(
        sinew::classify::never_processed(error.as_ref()),
        "a refused handshake is a request never processed: {error:?}"
    );
}

fn request_to(host: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{host}/"))
        .body(Full::<Bytes>::default())
        .unwrap()
}
