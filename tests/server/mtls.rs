//! Mutual TLS on `mesh.serve`: the modes (strict, permissive, disabled),
//! the caller's SPIFFE ID on each request, handshakes bounded by the
//! header-read timeout, and a mode that needs an identity the mesh lacks.

use super::*;
use crate::certs::{Ca, Leaf};
use crate::mtls_support::{
    CART, REVIEWS, TD, identity_of, mesh_as, mesh_get, mtls_config, plaintext_get, raw_client,
    read_to_close, recording, tls_get,
};
use rustls_pki_types::ServerName;
use sinew::mesh::ServeError;
use sinew::tls::Identity;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
