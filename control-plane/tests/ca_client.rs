//! The library as a client of the control plane's CA, end to end over
//! loopback: a mesh gets its certificate when it is built (the key made in
//! process, only a CSR sent), renews at half the leaf's lifetime without
//! dropping connections, learns of a CA rotation before the new root
//! signs, renews at once when its root leaves the bundle early, and keeps
//! its last good certificate while the CA is away.
//!
//! Leaves live a minute (the CA's shortest). To see renewals in seconds,
//! not half minutes, the CA's clock lags the real one by [`LAG`]: each
//! leaf arrives already 28 s into its 60 s life, due for renewal 2 s
//! later and valid 32 s more. Every wait has a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::print_stderr
)]

mod common;

use bytes::Bytes;
use common::{TOKEN, admin, within};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use sinew::config::MeshConfig;
use sinew::mesh::{HttpClient, Mesh};
use sinew::tls::{Credentials, Identity, IssueError, Issuer, IssuerConfig, SpiffeId, TrustDomain};
use sinew_control_plane::ControlPlane;
use sinew_control_plane::ca::CaOptions;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

const TD: &str = "example.org";
const CART: &str = "spiffe://example.org/ns/shop/sa/cart";
const REVIEWS: &str = "spiffe://example.org/ns/shop/sa/reviews";
/// How far the CA's clock lags behind the real one in the renewal tests.
const LAG: Duration = Duration::from_secs(28);
const MINUTE: Duration = Duration::from_secs(60);

/// A control plane whose CA signs leaves living `ttl`, on a clock `lag`
/// behind the real one.
async fn control_plane(ttl: Duration, lag: Duration) -> ControlPlane {
    ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .ca(CaOptions {
            trust_domain: TD.to_owned(),
            leaf_ttl: ttl,
            clock: Arc::new(move || SystemTime::now() - lag),
            ..CaOptions::default()
        })
        .start()
        .await
        .unwrap()
}

/// A bootstrap token for `shop/<service>`.
async fn bootstrap_token(cp: &ControlPlane, service: &str) -> String {
    let (status, answer) = admin(
        cp,
        Method::POST,
        "/v1/bootstrap-tokens",
        Some(TOKEN),
        json!({ "namespace": "shop", "service": service }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

fn issuer_config(addr: SocketAddr, token: &str) -> IssuerConfig {
    IssuerConfig::new(&format!("http://{addr}"), token)
        .unwrap()
        .bundle_refresh(Duration::from_millis(200))
}

/// The DER of each certificate in `pem`.
fn ders(pem: &str) -> Vec<Vec<u8>> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

/// The CA's trusted roots now, and its status.
async fn ca_status(cp: &ControlPlane) -> Value {
    let (status, answer) = admin(cp, Method::GET, "/v1/ca", None, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// Whether `leaf` verifies against `roots` now, for client and server use.
fn chains_to(leaf: &CertificateDer<'_>, roots: &[Vec<u8>]) -> bool {
    let roots: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors: Vec<_> = roots
        .iter()
        .map(|r| webpki::anchor_from_trusted_cert(r).unwrap())
        .collect();
    let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    [
        webpki::KeyUsage::client_auth(),
        webpki::KeyUsage::server_auth(),
    ]
    .into_iter()
    .all(|usage| {
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                &[],
                UnixTime::now(),
                usage,
                None,
                None,
            )
            .is_ok()
    })
}

fn leaf(credentials: &Credentials) -> CertificateDer<'static> {
    credentials.chain()[0].clone()
}

fn td() -> TrustDomain {
    TrustDomain::new(TD).unwrap()
}

/// Waits (with the deadline) until `identity`'s credentials satisfy
/// `done`, and returns them.
async fn until(
    what: &str,
    identity: &Identity,
    mut done: impl FnMut(&Credentials) -> bool,
) -> Arc<Credentials> {
    let mut changes = identity.subscribe();
    within(what, async {
        loop {
            if let Some(current) = changes.borrow_and_update().clone()
                && done(&current)
            {
                return current;
            }
            changes.changed().await.unwrap();
        }
    })
    .await
}

/// A hyper server behind a TLS acceptor of `identity`. It records the
/// client leaf of each connection it accepts, and counts requests.
struct Server {
    addr: SocketAddr,
    /// The client's leaf, per connection accepted, in order.
    clients: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    served: Arc<AtomicUsize>,
}

async fn mtls_server(identity: &Identity) -> Server {
    let config = identity
        .server_config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = Arc::new(Mutex::new(Vec::new()));
    let served = Arc::new(AtomicUsize::new(0));
    let (seen, counter) = (clients.clone(), served.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen, counter) = (acceptor.clone(), seen.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(chain) = tls.get_ref().1.peer_certificates() {
                    seen.lock().unwrap().push(chain[0].clone().into_owned());
                }
                let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok")))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        addr,
        clients,
        served,
    }
}

/// A mesh with its certificate from `cp` through `token`, routing
/// `reviews` over HTTP/2 with mTLS to `server` (whose identity must be
/// REVIEWS).
async fn client_mesh(cp: &ControlPlane, token: &str, server: SocketAddr) -> Mesh {
    let config = MeshConfig::from_yaml(&format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews }}] }}]\n\
         clusters:\n  reviews:\n    protocol: http2\n    identities: [\"{REVIEWS}\"]\n    endpoints: [{{ address: \"{server}\" }}]\n"
    ))
    .unwrap();
    Mesh::builder()
        .config(config)
        .certificates_from_control_plane(issuer_config(cp.admin_addr(), token))
        .build()
        .await
        .unwrap()
}

/// A serving workload (REVIEWS) and a calling one (CART), each with its
/// certificate from `cp`.
async fn two_workloads(cp: &ControlPlane) -> (Mesh, Server, Mesh) {
    let serving = Mesh::builder()
        .certificates_from_control_plane(issuer_config(
            cp.admin_addr(),
            &bootstrap_token(cp, "reviews").await,
        ))
        .build()
        .await
        .unwrap();
    let server = mtls_server(serving.identity().unwrap()).await;
    let calling = client_mesh(cp, &bootstrap_token(cp, "cart").await, server.addr).await;
    (serving, server, calling)
}

/// The mesh's client of `reviews`: one pool, made once and cloned.
type Client = HttpClient<Full<Bytes>>;

async fn call(client: &Client) -> Result<(), String> {
    let request = Request::get("http://reviews/")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    Ok(())
}

/// A new connection with a full handshake (no resumption: the
/// certificates are checked each time) from `identity` to `server`, and
/// one HTTP/1.1 request over it.
async fn fresh_call(identity: &Identity, server: SocketAddr) -> Result<(), String> {
    let reviews = SpiffeId::new(REVIEWS).unwrap();
    let shared = identity
        .client_config([reviews], vec![b"http/1.1".to_vec()])
        .map_err(|e| e.to_string())?;
    let mut config = (*shared).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let tls = connector
        .connect(ServerName::try_from("reviews").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get("/")
                .header("host", "reviews")
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .map_err(|e| format!("request: {e}"))?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    Ok(())
}

/// Calls every 10 ms until stopped: over the mesh's pooled HTTP/2
/// connection, and, when `fresh` is given, also over a new connection each
/// time. Returns the successes and the errors.
struct Load {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Load {
    fn start(client: Client, identity: Identity, fresh: Option<SocketAddr>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (mut ok, mut errors) = (0, Vec::new());
            // Paced, so as not to starve the renewals on a busy machine.
            let mut pace = tokio::time::interval(Duration::from_millis(10));
            while !*stopped.borrow() {
                pace.tick().await;
                let mut outcomes = vec![call(&client).await];
                if let Some(server) = fresh {
                    outcomes.push(fresh_call(&identity, server).await);
                }
                for outcome in outcomes {
                    match outcome {
                        Ok(()) => ok += 1,
                        Err(e) => errors.push(e),
                    }
                }
            }
            (ok, errors)
        });
        Self { stop, task }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.send_replace(true);
        within("the load to stop", self.task).await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_built_with_a_bootstrap_token_holds_the_tokens_certificate_chaining_to_the_ca() {
    let cp = control_plane(Duration::from_secs(3600), Duration::ZERO).await;
    let token = bootstrap_token(&cp, "cart").await;
    let before = SystemTime::now();
    let mesh = Mesh::builder()
        .certificates_from_control_plane(issuer_config(cp.admin_addr(), &token))
        .build()
        .await
        .unwrap();
    let identity = mesh.identity().expect("the mesh has an identity");
    assert!(identity.is_ready(), "the certificate is there once built");
    assert_eq!(identity.spiffe_id().unwrap().to_string(), CART);

    let credentials = identity.credentials().unwrap();
    let roots = ders(ca_status(&cp).await["trust_bundle"].as_str().unwrap());
    assert_eq!(roots.len(), 1);
    assert!(chains_to(&leaf(&credentials), &roots));
    let installed: Vec<Vec<u8>> = credentials
        .bundle()
        .roots(&td())
        .iter()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(installed, roots, "the CA's bundle is the workload's");
    let lifetime = credentials
        .expires_at()
        .duration_since(before)
        .unwrap()
        .as_secs();
    assert!((3590..=3610).contains(&lifetime), "{lifetime}");

    // An identity given to the builder is the one filled.
    let mine = Identity::new();
    let mesh = Mesh::builder()
        .identity(mine.clone())
        .certificates_from_control_plane(issuer_config(cp.admin_addr(), &token))
        .build()
        .await
        .unwrap();
    assert!(mine.is_ready());
    assert_eq!(mine.spiffe_id().unwrap().to_string(), CART);
    drop(mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_or_spiffe_id_fails_the_build_naming_the_cause() {
    let cp = control_plane(Duration::from_secs(3600), Duration::ZERO).await;

    let error = Mesh::builder()
        .certificates_from_control_plane(issuer_config(cp.admin_addr(), "not-a-token"))
        .build()
        .await
        .unwrap_err();
    assert_eq!(error.field(), "certificates_from_control_plane");
    assert!(
        error.message().contains("refused the token (401)"),
        "{error}"
    );

    // The same as a type, from the issuer alone; nothing installed.
    let identity = Identity::new();
    let error = Issuer::start(
        issuer_config(cp.admin_addr(), "not-a-token"),
        identity.clone(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, IssueError::TokenRefused { .. }), "{error}");
    assert!(!identity.is_ready());

    // A bootstrap token asking for another workload's SPIFFE ID: 403.
    let token = bootstrap_token(&cp, "cart").await;
    let config = issuer_config(cp.admin_addr(), &token).spiffe_id(SpiffeId::new(REVIEWS).unwrap());
    let error = Issuer::start(config, identity.clone()).await.unwrap_err();
    assert!(matches!(error, IssueError::Forbidden { .. }), "{error}");
    assert!(error.to_string().contains("(403)"), "{error}");

    // The admin token names the SPIFFE ID it asks for, and gets it.
    let config = issuer_config(cp.admin_addr(), TOKEN).spiffe_id(SpiffeId::new(REVIEWS).unwrap());
    let _issuer = Issuer::start(config, identity.clone()).await.unwrap();
    assert_eq!(identity.spiffe_id().unwrap().to_string(), REVIEWS);

    // Nobody listening.
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let error = Mesh::builder()
        .certificates_from_control_plane(issuer_config(addr, &token))
        .build()
        .await
        .unwrap_err();
    assert!(error.message().contains("unreachable"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_renew_before_they_expire_and_a_connection_made_before_keeps_working() {
    let cp = control_plane(MINUTE, LAG).await;
    let (serving, server, calling) = two_workloads(&cp).await;
    let (client_id, server_id) = (
        calling.identity().unwrap().clone(),
        serving.identity().unwrap().clone(),
    );
    let (first_client, first_server) = (
        client_id.credentials().unwrap(),
        server_id.credentials().unwrap(),
    );
    let client: Client = calling.http_client("reviews");
    call(&client).await.unwrap();
    assert_eq!(server.clients.lock().unwrap().len(), 1);

    let load = Load::start(client.clone(), calling.identity().unwrap().clone(), None);
    // Two renewals each, every one before the leaf it replaces expires.
    for (identity, first) in [(&client_id, &first_client), (&server_id, &first_server)] {
        let mut previous = first.clone();
        for _ in 0..2 {
            let next = until("a renewal", identity, |c| leaf(c) != leaf(&previous)).await;
            assert!(
                SystemTime::now() < previous.expires_at(),
                "renewed only after the leaf expired"
            );
            assert_eq!(next.spiffe_id(), previous.spiffe_id());
            previous = next;
        }
    }
    let served_before = server.served.load(Ordering::SeqCst);
    call(&client).await.unwrap();
    let (ok, errors) = load.finish().await;
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    assert!(ok > 10, "{ok}");
    assert!(server.served.load(Ordering::SeqCst) > served_before);
    // Every request went over the one connection made before the first
    // renewal, on the leaf the client had then.
    {
        let clients = server.clients.lock().unwrap();
        assert_eq!(clients.len(), 1, "the connection was not dropped");
        assert_eq!(clients[0], leaf(&first_client));
    }
    // A new connection presents the current leaf (read before and after:
    // a renewal may come in between).
    let before = leaf(&client_id.credentials().unwrap());
    fresh_call(&client_id, server.addr).await.unwrap();
    let after = leaf(&client_id.credentials().unwrap());
    let clients = server.clients.lock().unwrap();
    assert_eq!(clients.len(), 2);
    assert!(clients[1] == before || clients[1] == after);
    assert_ne!(clients[1], clients[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_rotation_is_trusted_before_it_signs_and_no_call_fails() {
    let cp = control_plane(MINUTE, LAG).await;
    let (serving, server, calling) = two_workloads(&cp).await;
    let (client_id, server_id) = (
        calling.identity().unwrap().clone(),
        serving.identity().unwrap().clone(),
    );
    let old_root = ders(ca_status(&cp).await["trust_bundle"].as_str().unwrap());
    // Calls over the pooled connection, and a full handshake each time.
    let load = Load::start(
        calling.http_client("reviews"),
        client_id.clone(),
        Some(server.addr),
    );

    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/ca/rotate",
        Some(TOKEN),
        json!({ "activate_in_seconds": 10 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let new_root = ders(answer["root"].as_str().unwrap());

    // Both roots reach both workloads while the new one is still pending,
    // their leaves still from the old root.
    for identity in [&client_id, &server_id] {
        let current = until("the two-root bundle", identity, |c| {
            c.bundle().roots(&td()).len() == 2
        })
        .await;
        assert!(chains_to(&leaf(&current), &old_root));
        assert!(!chains_to(&leaf(&current), &new_root));
    }
    let standing = ca_status(&cp).await;
    assert_eq!(standing["roots"][1]["standing"], "pending", "{standing}");

    // Then the new root signs, and each workload's next leaf is its.
    for identity in [&client_id, &server_id] {
        until("a leaf of the new root", identity, |c| {
            chains_to(&leaf(c), &new_root)
        })
        .await;
    }
    // One renewal more each, new root to new root, under load.
    for identity in [&client_id, &server_id] {
        let now = identity.credentials().unwrap();
        until("a renewal", identity, |c| leaf(c) != leaf(&now)).await;
    }
    let (ok, errors) = load.finish().await;
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    assert!(ok > 20, "{ok}");
    assert!(
        server.clients.lock().unwrap().len() > 10,
        "full handshakes were made across the rotation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_is_reread_between_renewals() {
    // Leaves of an hour: no renewal during the test.
    let cp = control_plane(Duration::from_secs(3600), Duration::ZERO).await;
    let identity = Identity::new();
    let token = bootstrap_token(&cp, "cart").await;
    let _issuer = Issuer::start(issuer_config(cp.admin_addr(), &token), identity.clone())
        .await
        .unwrap();
    let first = identity.credentials().unwrap();
    assert_eq!(first.bundle().roots(&td()).len(), 1);

    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/ca/rotate",
        Some(TOKEN),
        json!({ "activate_in_seconds": 3600 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let now = until("the two-root bundle", &identity, |c| {
        c.bundle().roots(&td()).len() == 2
    })
    .await;
    assert_eq!(leaf(&now), leaf(&first), "the same leaf, a new bundle");
    let expected = ders(answer["trust_bundle"].as_str().unwrap());
    let installed: Vec<Vec<u8>> = now
        .bundle()
        .roots(&td())
        .iter()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(installed, expected);
}

/// A TCP relay to `target` that records every byte sent to it, and can
/// be cut: then it closes each connection on which the workload sends
/// something, counting the certificate requests it refused that way.
struct Relay {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
    cut: Arc<AtomicBool>,
    refused_renewals: watch::Receiver<usize>,
}

async fn relay(target: SocketAddr) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let cut = Arc::new(AtomicBool::new(false));
    let (refusals, refused) = watch::channel(0usize);
    let (record, cutting) = (sent.clone(), cut.clone());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (record, cutting, refusals) = (record.clone(), cutting.clone(), refusals.clone());
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut from_server, mut to_server) = outbound.into_split();
                let (mut from_client, mut to_client) = inbound.split();
                let upstream = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if cutting.load(Ordering::SeqCst) {
                            let chunk = &buf[..n];
                            if chunk.windows(21).any(|w| w == b"POST /v1/certificates") {
                                refusals.send_modify(|n| *n += 1);
                            }
                            return;
                        }
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let downstream = tokio::io::copy(&mut from_server, &mut to_client);
                tokio::select! {
                    () = upstream => {}
                    _ = downstream => {}
                }
            });
        }
    });
    Relay {
        addr,
        sent,
        cut,
        refused_renewals: refused,
    }
}

/// Each `{"csr": ...}` object in `bytes`.
fn csr_bodies(bytes: &[u8]) -> Vec<Value> {
    let mut found = Vec::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(7).position(|w| w == br#"{"csr":"#) {
        let mut values = serde_json::Deserializer::from_slice(&rest[at..]).into_iter::<Value>();
        found.push(values.next().unwrap().unwrap());
        rest = &rest[at + 7..];
    }
    found
}

/// The subjectPublicKeyInfo a PEM CSR carries.
fn csr_public_key(pem: &str) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let der = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(der.label, "CERTIFICATE REQUEST");
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der.contents)
            .unwrap();
    csr.certification_request_info.subject_pki.raw.to_vec()
}

fn leaf_public_key(credentials: &Credentials) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(&credentials.chain()[0]).unwrap();
    cert.public_key().raw.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_csr_leaves_the_process_and_each_leaf_has_a_new_key() {
    let cp = control_plane(MINUTE, LAG).await;
    let token = bootstrap_token(&cp, "cart").await;
    let relay = relay(cp.admin_addr()).await;
    let identity = Identity::new();
    let issuer = Issuer::start(issuer_config(relay.addr, &token), identity.clone())
        .await
        .unwrap();
    let first = identity.credentials().unwrap();
    let second = until("a renewal", &identity, |c| leaf(c) != leaf(&first)).await;
    drop(issuer);

    let sent = relay.sent.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&sent);
    assert!(!text.contains("PRIVATE KEY"), "a private key was sent");
    let bodies = csr_bodies(&sent);
    assert!(bodies.len() >= 2, "{text}");
    for body in &bodies {
        let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(
            fields,
            ["csr"],
            "the request holds the CSR and nothing else"
        );
    }
    let keys: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| csr_public_key(b["csr"].as_str().unwrap()))
        .collect();
    // The leaves are for the CSRs' keys, whose private halves only the
    // workload holds (the credentials refuse a key that does not match).
    assert_eq!(keys[0], leaf_public_key(&first));
    assert_eq!(keys[1], leaf_public_key(&second));
    assert_ne!(keys[0], keys[1], "a new key for each leaf");
    // The token went in the Authorization header, not in a body.
    assert!(text.contains(&format!("authorization: Bearer {token}")));
    assert!(!bodies.iter().any(|b| b.to_string().contains(&token)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_ca_is_away_the_last_certificate_stays_and_renewal_resumes_before_it_expires() {
    let cp = control_plane(MINUTE, LAG).await;
    let token = bootstrap_token(&cp, "cart").await;
    let relay = relay(cp.admin_addr()).await;
    let identity = Identity::new();
    let _issuer = Issuer::start(issuer_config(relay.addr, &token), identity.clone())
        .await
        .unwrap();
    let first = identity.credentials().unwrap();

    relay.cut.store(true, Ordering::SeqCst);
    // Renewal (due in about 2 s) fails, and is tried again.
    let mut refused = relay.refused_renewals.clone();
    within("failed renewals", refused.wait_for(|n| *n >= 2))
        .await
        .unwrap();
    let during = identity.credentials().unwrap();
    assert_eq!(leaf(&during), leaf(&first), "the last good leaf stays");
    assert!(identity.is_ready());

    relay.cut.store(false, Ordering::SeqCst);
    let renewed = until("a renewal once the CA is back", &identity, |c| {
        leaf(c) != leaf(&first)
    })
    .await;
    assert!(SystemTime::now() < first.expires_at(), "renewed in time");
    assert_eq!(renewed.spiffe_id().to_string(), CART);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_that_leaves_the_bundle_early_brings_a_new_leaf_at_once() {
    // Leaves of an hour: the next scheduled renewal is half an hour away.
    let cp = control_plane(Duration::from_secs(3600), Duration::ZERO).await;
    let identity = Identity::new();
    let token = bootstrap_token(&cp, "cart").await;
    let _issuer = Issuer::start(issuer_config(cp.admin_addr(), &token), identity.clone())
        .await
        .unwrap();
    let old_root = ders(ca_status(&cp).await["trust_bundle"].as_str().unwrap());

    // A new root that signs at once, the old one trusted one second more
    // (a compromised root, say).
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/ca/rotate",
        Some(TOKEN),
        json!({ "activate_in_seconds": 0, "overlap_seconds": 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let new_root = ders(answer["root"].as_str().unwrap());

    // Once the bundle holds only the new root, the old leaf cannot stay:
    // a new one comes with the next bundle read, not in half an hour.
    let now = until("a leaf of the new root", &identity, |c| {
        chains_to(&leaf(c), &new_root)
    })
    .await;
    assert!(!chains_to(&leaf(&now), &old_root));
    let installed: Vec<Vec<u8>> = now
        .bundle()
        .roots(&td())
        .iter()
        .map(|r| r.to_vec())
        .collect();
    assert_eq!(installed, new_root, "the old root is no longer trusted");
}

/// openssl, a TLS peer we did not write, with a key it made and a
/// certificate the Sinew CA signed for its CSR, reaches a Sinew server
/// (`mesh.serve`, strict by default, its own certificate from the same
/// CA) over mutual TLS; without a certificate it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_with_a_certificate_from_the_sinew_ca_reaches_a_sinew_server() {
    if !std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("openssl not found: this test is skipped");
        return;
    }
    let cp = control_plane(Duration::from_secs(3600), Duration::ZERO).await;
    let token = bootstrap_token(&cp, "reviews").await;
    let serving = Mesh::builder()
        .certificates_from_control_plane(issuer_config(cp.admin_addr(), &token))
        .build()
        .await
        .unwrap();
    let app = tower::service_fn(|req: Request<Incoming>| async move {
        let caller = req
            .extensions()
            .get::<sinew::mesh::PeerIdentity>()
            .map_or_else(|| "-".to_owned(), |p| p.id().to_string());
        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
            "caller={caller}"
        )))))
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = serving.serve("reviews", listener, app).await.unwrap();

    // openssl's key and CSR; the CA signs it for the admin token.
    let dir = std::env::temp_dir().join(format!("sinew-ca-openssl-peer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str], input: Option<&'static [u8]>| {
        let dir = dir.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let mut child = tokio::process::Command::new("openssl")
                .args(&args)
                .current_dir(&dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            if let Some(input) = input {
                stdin.write_all(input).await.unwrap();
            }
            // s_client -quiet keeps reading until the server closes.
            let output = within("openssl", async {
                let out = child.wait_with_output().await.unwrap();
                drop(stdin);
                out
            })
            .await;
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let (ok, _, err) = run(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "csr.pem",
            "-subj",
            "/CN=cart",
            "-addext",
            &format!("subjectAltName=URI:{CART}"),
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let csr = std::fs::read_to_string(dir.join("csr.pem")).unwrap();
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/certificates",
        Some(TOKEN),
        json!({ "csr": csr }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    std::fs::write(
        dir.join("cert.pem"),
        answer["certificate_chain"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("ca.pem"), answer["trust_bundle"].as_str().unwrap()).unwrap();

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: reviews\r\nconnection: close\r\n\r\n";
    let target = addr.to_string();
    // With the certificate: the server's chain verified against the CA's
    // bundle, the request answered, the caller seen as CART.
    let (_, out, err) = run(
        &[
            "s_client",
            "-connect",
            &target,
            "-quiet",
            "-verify_return_error",
            "-CAfile",
            "ca.pem",
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
        ],
        Some(GET),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}\n{err}");
    assert!(out.contains(&format!("caller={CART}")), "{out}");
    // Without one: no answer.
    let (_, out, err) = run(
        &[
            "s_client", "-connect", &target, "-quiet", "-CAfile", "ca.pem",
        ],
        Some(GET),
    )
    .await;
    assert!(
        !out.contains("HTTP/1.1"),
        "answered without a certificate: {out}\n{err}"
    );
    assert!(err.contains("alert") || err.contains("error"), "{err}");

    within("shutdown", server.shutdown()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
