//! Sinew's own clients of the admin API (the certificate issuer and the
//! registration) against a control plane serving that API over TLS:
//! real sockets on loopback, real TLS, the server verified against the
//! CA certificate the caller gives and the URL's host (a DNS or an IP
//! SAN). A wrong anchor, or none, is refused with a clear error. Every
//! wait has a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;

use bytes::Bytes;
use common::{TOKEN, scratch, within};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use sinew::mesh::{Registration, RegistrationError};
use sinew::tls::{IssueError, Issuer, IssuerConfig, SpiffeId, TrustDomain};
use sinew_control_plane::ControlPlane;
use sinew_control_plane::ca::CaOptions;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TD: &str = "example.org";
const CART: &str = "spiffe://example.org/ns/shop/sa/cart";
const MESH: &str = "services:\n  reviews:\n    routes: [{ split: [{ cluster: reviews-v1 }] }]\nclusters:\n  reviews-v1:\n    endpoints: []\n";

/// A control plane serving its admin API over TLS only, on loopback.
async fn tls_control_plane(dir: &Path) -> ControlPlane {
    std::fs::write(dir.join("mesh.yaml"), MESH).unwrap();
    ControlPlane::builder()
        .mesh_file(dir.join("mesh.yaml"))
        .registry_store(dir.join("registry.json"))
        .token(TOKEN)
        .admin_tls()
        .insecure_xds()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .ca(CaOptions {
            trust_domain: TD.to_owned(),
            ..CaOptions::default()
        })
        .start()
        .await
        .unwrap()
}

/// One admin API call over TLS (verified against `cp`'s bundle, as
/// `localhost`), the admin token attached: the status and the JSON.
async fn https_admin(
    cp: &ControlPlane,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cp.trust_bundle_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(cp.admin_addr())
            .await
            .unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Full::new(Bytes::from(if body.is_null() {
                String::new()
            } else {
                body.to_string()
            })))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    };
    within("an https admin answer", exchange).await
}

/// The leases the control plane holds now.
async fn leases(cp: &ControlPlane) -> Vec<Value> {
    let (status, answer) = https_admin(cp, Method::GET, "/v1/registrations", Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer.as_array().unwrap().clone()
}

#[tokio::test]
async fn an_issuer_gets_and_keeps_its_certificate_over_admin_tls() {
    let dir = scratch("admin-tls-issuer");
    let cp = tls_control_plane(&dir).await;
    let cart = SpiffeId::new(CART).unwrap();
    let td = TrustDomain::new(TD).unwrap();

    // By DNS name (`localhost`), the anchor given as PEM bytes.
    let identity = sinew::tls::Identity::new();
    let config = IssuerConfig::new(
        &format!("https://localhost:{}", cp.admin_addr().port()),
        TOKEN,
    )
    .unwrap()
    .spiffe_id(cart.clone())
    .admin_ca_pem(cp.trust_bundle_pem())
    .bundle_refresh(Duration::from_millis(50));
    let issuer = within(
        "a certificate over TLS",
        Issuer::start(config, identity.clone()),
    )
    .await
    .unwrap();
    let credentials = identity.credentials().unwrap();
    assert_eq!(credentials.spiffe_id(), &cart);
    assert_eq!(credentials.bundle().roots(&td).len(), 1);

    // The trust bundle is re-read over TLS too: a root rotated in (not
    // signing yet) is installed as soon as it is announced.
    let (status, answer) = https_admin(
        &cp,
        Method::POST,
        "/v1/ca/rotate",
        json!({ "activate_in_seconds": 3600 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut changes = identity.subscribe();
    within("the rotated bundle", async {
        loop {
            if let Some(current) = changes.borrow_and_update().clone()
                && current.bundle().roots(&td).len() == 2
            {
                return;
            }
            changes.changed().await.unwrap();
        }
    })
    .await;
    drop(issuer);

    // By IP address (an IP SAN), the anchor read from a file.
    let ca_file = dir.join("control-plane-ca.pem");
    std::fs::write(&ca_file, cp.trust_bundle_pem()).unwrap();
    let identity = sinew::tls::Identity::new();
    let config = IssuerConfig::new(&format!("https://{}", cp.admin_addr()), TOKEN)
        .unwrap()
        .spiffe_id(cart.clone())
        .admin_ca_file(&ca_file);
    let _issuer = within(
        "a certificate over TLS",
        Issuer::start(config, identity.clone()),
    )
    .await
    .unwrap();
    assert_eq!(identity.credentials().unwrap().spiffe_id(), &cart);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_registration_registers_renews_and_deregisters_over_admin_tls() {
    let dir = scratch("admin-tls-registration");
    let cp = tls_control_plane(&dir).await;
    let ca_file = dir.join("control-plane-ca.pem");
    std::fs::write(&ca_file, cp.trust_bundle_pem()).unwrap();
    let url = format!("https://localhost:{}", cp.admin_addr().port());
    let registration = within(
        "a registration over TLS",
        Registration::builder(&url, "reviews-v1", "127.0.0.1:8080".parse().unwrap())
            .token(TOKEN)
            .admin_ca_file(&ca_file)
            .metadata("version", "v1")
            .heartbeat_interval(Duration::from_millis(10))
            .start(),
    )
    .await
    .unwrap();
    let first = registration.lease();
    let listed = leases(&cp).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["lease"], first.as_str());
    assert_eq!(listed[0]["registration"]["metadata"]["version"], "v1");

    // The control plane loses the lease: a heartbeat (a renewal over
    // TLS) learns it and registers again, under a new lease.
    let path = format!("/v1/registrations/{first}");
    let (status, _) = https_admin(&cp, Method::DELETE, &path, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    within("a new lease over TLS", async {
        loop {
            let listed = leases(&cp).await;
            if listed.len() == 1
                && listed[0]["lease"] != first.as_str()
                && listed[0]["lease"] == registration.lease().as_str()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;

    within("a deregistration over TLS", registration.deregister())
        .await
        .unwrap();
    assert!(leases(&cp).await.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_wrong_trust_anchor_or_none_is_refused_clearly() {
    let dir = scratch("admin-tls-refused");
    let cp = tls_control_plane(&dir).await;
    // Another control plane's root: a CA, but not this one's.
    let other = ControlPlane::builder()
        .insecure_xds()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let wrong = other.trust_bundle_pem();
    let url = format!("https://localhost:{}", cp.admin_addr().port());

    let config = IssuerConfig::new(&url, TOKEN)
        .unwrap()
        .spiffe_id(SpiffeId::new(CART).unwrap())
        .admin_ca_pem(wrong.clone());
    let refused = within(
        "a refusal",
        Issuer::start(config, sinew::tls::Identity::new()),
    )
    .await
    .unwrap_err();
    match &refused {
        IssueError::Unreachable { reason, .. } => {
            assert!(reason.contains("TLS with the control plane"), "{refused}");
            assert!(reason.contains("UnknownIssuer"), "{refused}");
        }
        other => panic!("{other}"),
    }

    let refused = within(
        "a refusal",
        Registration::builder(&url, "reviews-v1", "127.0.0.1:8080".parse().unwrap())
            .token(TOKEN)
            .admin_ca_pem(wrong)
            .start(),
    )
    .await
    .unwrap_err();
    match &refused {
        RegistrationError::Unreachable(reason) => {
            assert!(reason.contains("UnknownIssuer"), "{refused}");
        }
        other => panic!("{other}"),
    }
    assert!(leases(&cp).await.is_empty(), "nothing was registered");

    // No anchor at all: refused before connecting, naming the field.
    let config = IssuerConfig::new(&url, TOKEN)
        .unwrap()
        .spiffe_id(SpiffeId::new(CART).unwrap());
    match Issuer::start(config, sinew::tls::Identity::new()).await {
        Err(IssueError::Config(e)) => assert_eq!(e.field(), "admin_ca_file", "{e}"),
        other => panic!("{other:?}"),
    }
    let refused = Registration::builder(&url, "reviews-v1", "127.0.0.1:8080".parse().unwrap())
        .token(TOKEN)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RegistrationError::Config(e) if e.field() == "admin_ca_file"),
        "{refused}"
    );
    // A file that is not there is named too.
    let refused = Registration::builder(&url, "reviews-v1", "127.0.0.1:8080".parse().unwrap())
        .admin_ca_file(dir.join("missing.pem"))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RegistrationError::Config(e) if e.field() == "admin_ca_file"),
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
