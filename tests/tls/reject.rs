//! The reject matrix, both directions: each broken certificate is refused
//! at the handshake with a reason naming the rule, and no application
//! byte reaches the handler or comes back to the client.

use crate::cases::{Case, cases};
use crate::certs::{Issued, Leaf, id};
use crate::harness::{Server, connect, exchange};
use crate::{CLIENT_ID, SERVER_ID, TD, mesh};
use rustls::{ClientConfig, ServerConfig};
use sinew::tls::{Identity, SpiffeClientVerifier, SpiffeServerVerifier, VerifyError};
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server presenting `issued` as is, verifying clients as Sinew does.
fn raw_server(issued: &Issued, verifying_with: &Identity) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(verifying_with)))
        .with_single_cert(issued.chain.clone(), issued.key())
        .unwrap();
    Arc::new(config)
}

/// A client presenting `issued` (or nothing) as is, verifying the server
/// as Sinew does.
fn raw_client(issued: Option<&Issued>, verifying_with: &Identity) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(
            verifying_with,
            [id(SERVER_ID)],
        )));
    let config = match issued {
        Some(issued) => builder
            .with_client_auth_cert(issued.chain.clone(), issued.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

#[tokio::test]
async fn the_client_refuses_bad_servers() {
    let mesh = mesh();
    let mut all = cases(&mesh.ca, SERVER_ID);
    all.push(Case {
        name: "wrong SPIFFE ID",
        issued: mesh
            .ca
            .issue(&Leaf::svid("spiffe://cluster.local/ns/shop/sa/evil")),
        expect: |e| {
            matches!(e, VerifyError::UnexpectedIdentity { peer, expected }
                if peer.to_string() == "spiffe://cluster.local/ns/shop/sa/evil"
                    && expected == &[id(SERVER_ID)])
                && e.to_string().contains(SERVER_ID)
        },
    });
    let config = mesh
        .client
        .client_config([id(SERVER_ID)], vec![b"h2".to_vec()])
        .unwrap();
    for case in all {
        let mut server = Server::start(raw_server(&case.issued, &mesh.client)).await;
        let err = match connect(config.clone(), server.addr, "cart").await {
            Ok(_) => panic!("{}: the client accepted the server", case.name),
            Err(err) => err,
        };
        let reason = VerifyError::find(&err)
            .unwrap_or_else(|| panic!("{}: no VerifyError in {err}", case.name));
        assert!(
            (case.expect)(reason),
            "{}: wrong reason: {reason}",
            case.name
        );
        // The server saw the client's alert, and no byte went either way.
        assert!(server.handshake().await.is_err(), "{}", case.name);
        assert_eq!(
            server.bytes_to_handler.load(Ordering::SeqCst),
            0,
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn the_server_refuses_bad_clients() {
    let mesh = mesh();
    let mut server = Server::start(mesh.server.server_config(vec![b"h2".to_vec()]).unwrap()).await;
    for case in cases(&mesh.ca, CLIENT_ID) {
        let config = raw_client(Some(&case.issued), &mesh.client);
        // TLS 1.3: the client is done before the server has judged its
        // certificate; its first read meets the server's alert.
        let echoed = match connect(config, server.addr, "cart").await {
            Err(_) => Vec::new(),
            Ok(mut stream) => exchange(&mut stream, b"ping").await.unwrap_or_default(),
        };
        assert!(echoed.is_empty(), "{}: the client got an answer", case.name);
        let err = match server.handshake().await {
            Ok(accepted) => panic!("{}: the server accepted {:?}", case.name, accepted.peer),
            Err(err) => err,
        };
        let reason = VerifyError::find(&err)
            .unwrap_or_else(|| panic!("{}: no VerifyError in {err}", case.name));
        assert!(
            (case.expect)(reason),
            "{}: wrong reason: {reason}",
            case.name
        );
        assert_eq!(
            server.bytes_to_handler.load(Ordering::SeqCst),
            0,
            "{}",
            case.name
        );
    }
}

#[tokio::test]
async fn the_server_requires_a_client_certificate() {
    let mesh = mesh();
    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let echoed = match connect(raw_client(None, &mesh.client), server.addr, "cart").await {
        Err(_) => Vec::new(),
        Ok(mut stream) => exchange(&mut stream, b"ping").await.unwrap_or_default(),
    };
    assert!(echoed.is_empty());
    let err = server.handshake().await.unwrap_err();
    let rustls_err = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert_eq!(
        rustls_err,
        Some(&rustls::Error::NoCertificatesPresented),
        "{err}"
    );
    assert_eq!(server.bytes_to_handler.load(Ordering::SeqCst), 0);
}

/// Authorization is not the handshake's business: any SVID of a trusted
/// trust domain is let in, and its ID is there for the authorizer.
#[tokio::test]
async fn the_server_admits_any_id_of_a_trusted_domain() {
    let mesh = mesh();
    let mut server = Server::start(mesh.server.server_config(Vec::new()).unwrap()).await;
    let stranger = "spiffe://cluster.local/ns/other/sa/batch";
    let issued = mesh.ca.issue(&Leaf::svid(stranger));
    let mut stream = connect(raw_client(Some(&issued), &mesh.client), server.addr, "cart")
        .await
        .unwrap();
    assert_eq!(exchange(&mut stream, b"hi").await.unwrap(), b"hi");
    assert_eq!(server.handshake().await.unwrap().peer, Some(id(stranger)));
    let _ = TD;
}
