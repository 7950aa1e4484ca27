//! Rotation: new material applies to the next handshake, and connections
//! already open go on with the old.

use crate::certs::{Ca, Leaf, id};
use crate::harness::{Server, connect, exchange, server_leaf};
use crate::{CLIENT_ID, SERVER_ID, TD, mesh};
use sinew::tls::{IdentityError, SvidError, TrustBundle, TrustDomain};

#[tokio::test]
async fn a_new_leaf_serves_new_handshakes_and_old_connections_live_on() {
    let mesh = mesh();
    // Built once, before the rotation.
    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let config = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();

    let mut old = connect(config.clone(), server.addr, "first").await.unwrap();
    exchange(&mut old, b"before").await.unwrap();
    let old_server_leaf = server_leaf(&old);
    let old_client_leaf = server.handshake().await.unwrap().peer_leaf.unwrap();

    let server_leaf_2 = mesh.ca.issue(&Leaf::svid(SERVER_ID));
    let client_leaf_2 = mesh.ca.issue(&Leaf::svid(CLIENT_ID));
    mesh.server
        .set(
            server_leaf_2.chain.clone(),
            server_leaf_2.key(),
            mesh.ca.bundle(TD),
        )
        .unwrap();
    mesh.client
        .set(
            client_leaf_2.chain.clone(),
            client_leaf_2.key(),
            mesh.ca.bundle(TD),
        )
        .unwrap();

    // Another server name: no session to resume, a full handshake.
    let mut new = connect(config, server.addr, "second").await.unwrap();
    exchange(&mut new, b"after").await.unwrap();
    assert_eq!(server_leaf(&new), server_leaf_2.chain[0]);
    assert_ne!(server_leaf(&new), old_server_leaf);
    let accepted = server.handshake().await.unwrap();
    assert_eq!(accepted.peer_leaf.unwrap(), client_leaf_2.chain[0]);
    assert_ne!(client_leaf_2.chain[0], old_client_leaf);

    // The old connection still works, on its old certificates.
    assert_eq!(
        exchange(&mut old, b"still here").await.unwrap(),
        b"still here"
    );
    assert_eq!(server_leaf(&old), old_server_leaf);
}

#[tokio::test]
async fn a_ca_rotates_in_with_an_overlap() {
    let mesh = mesh();
    let new_ca = Ca::root("new root");
    let td = TrustDomain::new(TD).unwrap();
    let mut both = TrustBundle::new();
    both.add_pem(&td, mesh.ca.root_pem.as_bytes()).unwrap();
    both.add_pem(&td, new_ca.root_pem.as_bytes()).unwrap();
    assert_eq!(both.roots(&td).len(), 2);

    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let config = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();

    // Both trust both roots; then the server moves to the new CA while
    // the client is still on the old one.
    mesh.client.set_bundle(both.clone()).unwrap();
    mesh.server.set_bundle(both.clone()).unwrap();
    let moved = new_ca.issue(&Leaf::svid(SERVER_ID));
    mesh.server
        .set(moved.chain.clone(), moved.key(), both.clone())
        .unwrap();

    let mut stream = connect(config.clone(), server.addr, "one").await.unwrap();
    exchange(&mut stream, b"overlap").await.unwrap();
    assert_eq!(server_leaf(&stream), moved.chain[0]);
    assert_eq!(server.handshake().await.unwrap().peer, Some(id(CLIENT_ID)));

    // The old root leaves the client's bundle: its own old-CA leaf no
    // longer verifies against it, so that bundle is refused and the
    // overlap bundle stays.
    let only_new = new_ca.bundle(TD);
    assert!(matches!(
        mesh.client.set_bundle(only_new.clone()),
        Err(IdentityError::UntrustedChain(_))
    ));
    assert_eq!(
        mesh.client.credentials().unwrap().bundle().roots(&td).len(),
        2
    );

    // Once the client has its new leaf, the old root can go.
    let client_moved = new_ca.issue(&Leaf::svid(CLIENT_ID));
    mesh.client
        .set(
            client_moved.chain.clone(),
            client_moved.key(),
            only_new.clone(),
        )
        .unwrap();
    mesh.server.set_bundle(only_new).unwrap();
    let mut stream = connect(config, server.addr, "two").await.unwrap();
    exchange(&mut stream, b"new only").await.unwrap();
    assert_eq!(
        server.handshake().await.unwrap().peer_leaf.unwrap(),
        client_moved.chain[0]
    );
}

#[tokio::test]
async fn bad_material_is_refused_and_the_last_good_stays() {
    let mesh = mesh();
    let before = mesh.server.credentials().unwrap();
    let other = Ca::root("other");

    let expired = mesh.ca.issue(&Leaf {
        not_before: time::OffsetDateTime::now_utc() - time::Duration::hours(2),
        not_after: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
        ..Leaf::svid(SERVER_ID)
    });
    let err = mesh
        .server
        .set(expired.chain.clone(), expired.key(), mesh.ca.bundle(TD))
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::Svid(SvidError::Expired { .. })),
        "{err}"
    );

    let a = mesh.ca.issue(&Leaf::svid(SERVER_ID));
    let b = mesh.ca.issue(&Leaf::svid(SERVER_ID));
    assert_eq!(
        mesh.server
            .set(a.chain.clone(), b.key(), mesh.ca.bundle(TD)),
        Err(IdentityError::KeyMismatch)
    );

    let foreign = other.issue(&Leaf::svid(SERVER_ID));
    assert!(matches!(
        mesh.server
            .set(foreign.chain.clone(), foreign.key(), mesh.ca.bundle(TD)),
        Err(IdentityError::UntrustedChain(_))
    ));
    assert!(matches!(
        mesh.server.set(a.chain.clone(), a.key(), other.bundle("elsewhere.org")),
        Err(IdentityError::UnknownTrustDomain(td)) if td.as_str() == TD
    ));
    assert_eq!(
        mesh.server.set(Vec::new(), a.key(), mesh.ca.bundle(TD)),
        Err(IdentityError::EmptyChain)
    );

    let after = mesh.server.credentials().unwrap();
    assert!(std::sync::Arc::ptr_eq(&before, &after));
    assert_eq!(mesh.server.spiffe_id(), Some(id(SERVER_ID)));
    assert!(mesh.server.expires_at().unwrap() > std::time::SystemTime::now());
}

/// Leaves rotate on both sides, over and over, while connections are made
/// and a long-lived one keeps talking: no handshake fails, no exchange
/// fails, and the long-lived connection is never reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_nothing() {
    let mesh = mesh();
    let server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let config = mesh
        .client
        .client_config([id(SERVER_ID)], Vec::new())
        .unwrap();
    let mut long_lived = connect(config.clone(), server.addr, "long").await.unwrap();

    let leaves: Vec<_> = (0..8)
        .map(|_| {
            (
                mesh.ca.issue(&Leaf::svid(SERVER_ID)),
                mesh.ca.issue(&Leaf::svid(CLIENT_ID)),
            )
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotator = {
        let (server_id, client_id, ca_bundle) =
            (mesh.server.clone(), mesh.client.clone(), mesh.ca.bundle(TD));
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut rotations = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (s, c) = &leaves[rotations % leaves.len()];
                server_id
                    .set(s.chain.clone(), s.key(), ca_bundle.clone())
                    .unwrap();
                client_id
                    .set(c.chain.clone(), c.key(), ca_bundle.clone())
                    .unwrap();
                rotations += 1;
                tokio::task::yield_now().await;
            }
            rotations
        })
    };

    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let config = config.clone();
        let addr = server.addr;
        workers.spawn(async move {
            for n in 0..10 {
                // A fresh name each time: full handshakes, not resumptions.
                let name = format!("w{worker}-{n}");
                let mut stream = connect(config.clone(), addr, &name).await.unwrap();
                assert_eq!(
                    exchange(&mut stream, name.as_bytes()).await.unwrap(),
                    name.as_bytes()
                );
            }
        });
    }
    let talker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut talks = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                assert_eq!(exchange(&mut long_lived, b"tick").await.unwrap(), b"tick");
                talks += 1;
            }
            (long_lived, talks)
        })
    };
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rotations = crate::harness::within("rotator", rotator).await.unwrap();
    let (mut long_lived, talks) = crate::harness::within("talker", talker).await.unwrap();
    assert!(rotations > 1, "the leaves rotated {rotations} times");
    assert!(talks > 0);
    assert_eq!(exchange(&mut long_lived, b"last").await.unwrap(), b"last");
}
