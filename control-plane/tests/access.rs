//! The control plane's own doors, through real sockets and real TLS:
//! xDS over mutual TLS (an unauthenticated client, a client of another
//! CA, a node that does not match its certificate are refused; a client
//! whose node matches is served), the admin API's tokens and scopes (reads
//! without a token, a token without the scope needed, a register-scoped
//! token renewing its own service's lease and refused for another's), and
//! the admin API over TLS.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;
#[path = "../../tests/resilience/support.rs"]
mod support;

use common::{TOKEN, admin, scratch, within};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use http::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use sinew_control_plane::generate::LISTENER;
use sinew_control_plane::{ControlPlane, StartError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const MESH: &str = "services:\n  reviews:\n    routes: [{ split: [{ cluster: reviews-v1 }] }]\nclusters:\n  reviews-v1:\n    endpoints: [{ address: \"127.0.0.1:9\" }]\n";

/// A control plane with the secure defaults: mTLS xDS, reads behind a
/// token.
async fn secure(dir: &Path) -> ControlPlane {
    secure_with(dir, MESH).await
}

async fn secure_with(dir: &Path, mesh: &str) -> ControlPlane {
    std::fs::write(dir.join("mesh.yaml"), mesh).unwrap();
    ControlPlane::builder()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap()
}

/// A certificate for `namespace`/`service` from `cp`'s CA: chain PEM and
/// key PEM.
async fn certificate(cp: &ControlPlane, namespace: &str, service: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let id = format!("spiffe://cluster.local/ns/{namespace}/sa/{service}");
    params.subject_alt_names = vec![SanType::URI(id.as_str().try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let (status, answer) = admin(
        cp,
        Method::POST,
        "/v1/certificates",
        Some(TOKEN),
        json!({ "csr": csr }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    (
        answer["certificate_chain"].as_str().unwrap().to_owned(),
        key.serialize_pem(),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(bundle_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A client config checking the server by host name against `bundle_pem`
/// (as gRPC's `tls` channel credentials do), presenting `client` if any.
fn tls_client(
    bundle_pem: &str,
    client: Option<&(String, String)>,
    alpn: &[u8],
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(bundle_pem));
    let mut config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(chain.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// An ADS stream to `cp` over TLS with `config` (or plaintext), sending
/// one request for the `reviews` Listener from `node`: its first
/// response, or why there was none.
async fn first_response(
    cp: &ControlPlane,
    config: Option<Arc<rustls::ClientConfig>>,
    node: Option<Node>,
) -> Result<DiscoveryResponse, String> {
    first_response_for(cp, config, node, LISTENER, &["reviews"]).await
}

/// [`first_response`], asking for `names` of `type_url` (none: all).
async fn first_response_for(
    cp: &ControlPlane,
    config: Option<Arc<rustls::ClientConfig>>,
    node: Option<Node>,
    type_url: &str,
    names: &[&str],
) -> Result<DiscoveryResponse, String> {
    let addr = cp.xds_addr();
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://localhost:{}", addr.port()))
            .unwrap()
            .connect_timeout(Duration::from_secs(5));
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            match config {
                None => Ok::<_, std::io::Error>(TokioIo::new(Box::new(tcp) as Box<dyn Io>)),
                Some(config) => {
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(ServerName::try_from("localhost").unwrap(), tcp)
                        .await?;
                    Ok(TokioIo::new(Box::new(tls) as Box<dyn Io>))
                }
            }
        }
    });
    let channel = within("a connection", endpoint.connect_with_connector(connector))
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let request = DiscoveryRequest {
        node,
        type_url: type_url.to_owned(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    };
    let mut inbound = within(
        "a stream",
        client.stream_aggregated_resources(
            futures_util::stream::iter([request]).chain(futures_util::stream::pending()),
        ),
    )
    .await
    .map_err(|s| format!("stream: {:?}: {}", s.code(), s.message()))?
    .into_inner();
    match within("a response", inbound.message()).await {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err("the stream ended".to_owned()),
        Err(s) => Err(format!("stream: {:?}: {}", s.code(), s.message())),
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

use futures_util::StreamExt;

fn node(cluster: &str) -> Option<Node> {
    Some(Node {
        id: format!("{cluster}-1"),
        cluster: cluster.to_owned(),
        ..Default::default()
    })
}

#[tokio::test]
async fn an_unauthenticated_xds_client_is_refused() {
    let dir = scratch("access-unauthenticated");
    let cp = secure(&dir).await;
    let bundle = cp.trust_bundle_pem();

    // Plaintext to the mTLS port.
    let plaintext = first_response(&cp, None, node("cart")).await;
    assert!(plaintext.is_err(), "{plaintext:?}");

    // TLS, the server verified, but no client certificate.
    let anonymous = first_response(&cp, Some(tls_client(&bundle, None, b"h2")), node("cart")).await;
    assert!(anonymous.is_err(), "{anonymous:?}");

    // A certificate of another mesh's CA.
    let other_dir = scratch("access-other-ca");
    let other = secure(&other_dir).await;
    let foreign = certificate(&other, "shop", "cart").await;
    let stranger = first_response(
        &cp,
        Some(tls_client(&bundle, Some(&foreign), b"h2")),
        node("cart"),
    )
    .await;
    assert!(stranger.is_err(), "{stranger:?}");

    // A connection that never starts its handshake holds up no one.
    let _stalled = tokio::net::TcpStream::connect(cp.xds_addr()).await.unwrap();

    // The same client with a certificate of this mesh is served: the
    // refusals above were for the credentials, not the request.
    let own = certificate(&cp, "shop", "cart").await;
    let served = first_response(
        &cp,
        Some(tls_client(&bundle, Some(&own), b"h2")),
        node("cart"),
    )
    .await;
    assert!(served.is_ok_and(|r| r.type_url == LISTENER && r.resources.len() == 1));
    // Nobody refused is listed as a client.
    let (status, clients) = admin(&cp, Method::GET, "/v1/clients", Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        clients.as_array().is_some_and(|c| c.len() <= 1),
        "{clients}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other_dir);
}

#[tokio::test]
async fn a_node_that_does_not_match_its_certificate_is_refused() {
    let dir = scratch("access-node");
    let cp = secure(&dir).await;
    let bundle = cp.trust_bundle_pem();
    let cart = certificate(&cp, "shop", "cart").await;
    let config = tls_client(&bundle, Some(&cart), b"h2");

    let impostor = first_response(&cp, Some(config.clone()), node("payments")).await;
    let error = impostor.unwrap_err();
    assert!(
        error.contains("PermissionDenied")
            && error.contains("node.cluster: `payments` is not `cart`")
            && error.contains("spiffe://cluster.local/ns/shop/sa/cart"),
        "{error}"
    );
    let nameless = first_response(&cp, Some(config.clone()), None).await;
    let error = nameless.unwrap_err();
    assert!(
        error.contains("PermissionDenied") && error.contains("node: missing"),
        "{error}"
    );

    let served = first_response(&cp, Some(config), node("cart"))
        .await
        .unwrap();
    assert_eq!(served.type_url, LISTENER);
    assert_eq!(served.resources.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_sinew_identity_verifies_the_control_plane_by_its_spiffe_id() {
    // The mesh's own verifier (SPIFFE ID, no host name), as Sinew's
    // discovery client uses it.
    let dir = scratch("access-spiffe");
    let cp = secure(&dir).await;
    let (chain, key) = certificate(&cp, "shop", "cart").await;
    let identity = sinew::tls::Identity::new();
    identity.set_credentials(
        sinew::tls::Credentials::from_pem(
            chain.as_bytes(),
            key.as_bytes(),
            cp.trust_bundle_pem().as_bytes(),
        )
        .unwrap(),
    );
    assert_eq!(cp.spiffe_id(), "spiffe://cluster.local/sinew/control-plane");
    let expected: sinew::tls::SpiffeId = cp.spiffe_id().parse().unwrap();
    let config = identity
        .client_config([expected], vec![b"h2".to_vec()])
        .unwrap();
    let served = first_response(&cp, Some(config), node("cart"))
        .await
        .unwrap();
    assert_eq!(served.type_url, LISTENER);
    // Expecting another identity, the client refuses the control plane.
    let wrong: sinew::tls::SpiffeId = "spiffe://cluster.local/ns/shop/sa/cart".parse().unwrap();
    let config = identity
        .client_config([wrong], vec![b"h2".to_vec()])
        .unwrap();
    assert!(
        first_response(&cp, Some(config), node("cart"))
            .await
            .is_err()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn token(cp: &ControlPlane, body: Value) -> String {
    let (status, answer) = admin(cp, Method::POST, "/v1/bootstrap-tokens", Some(TOKEN), body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn admin_reads_need_a_token_with_the_read_scope() {
    let dir = scratch("access-reads");
    let cp = secure(&dir).await;
    let certificate_only = token(&cp, json!({ "namespace": "shop", "service": "cart" })).await;
    let reader = token(&cp, json!({ "scopes": ["read"] })).await;
    for path in [
        "/v1/services",
        "/v1/clients",
        "/v1/registrations",
        "/v1/graph",
    ] {
        let (status, answer) = admin(&cp, Method::GET, path, None, Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {answer}");
        let (status, _) = admin(&cp, Method::GET, path, Some("nonsense.token"), Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, answer) =
            admin(&cp, Method::GET, path, Some(&certificate_only), Value::Null).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {answer}");
        assert_eq!(answer["error"], "this token lacks the `read` scope");
        let (status, _) = admin(&cp, Method::GET, path, Some(&reader), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let (status, _) = admin(&cp, Method::GET, path, Some(TOKEN), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // Health, the trust bundle and the CA's roots stay public.
    for path in ["/v1/health", "/v1/ca"] {
        let (status, _) = admin(&cp, Method::GET, path, None, Value::Null).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    // A read token writes nothing and gets no certificate.
    let (status, _) = admin(
        &cp,
        Method::POST,
        "/v1/registrations",
        Some(&reader),
        json!({ "name": "cart", "address": "127.0.0.1:9001" }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = admin(
        &cp,
        Method::POST,
        "/v1/certificates",
        Some(&reader),
        json!({ "csr": "x" }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    // Scopes are checked when issued.
    for (body, error) in [
        (
            json!({ "scopes": [] }),
            "invalid bootstrap token request: scopes: empty",
        ),
        (
            json!({ "scopes": ["register"], "service": "cart" }),
            "invalid bootstrap token request: namespace: needed for the `register` scope",
        ),
        (
            json!({ "scopes": ["root"] }),
            "invalid bootstrap token request: scopes[0]: unknown variant `root`",
        ),
    ] {
        let (status, answer) =
            admin(&cp, Method::POST, "/v1/bootstrap-tokens", Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().starts_with(error),
            "{answer}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_register_token_renews_its_own_service_and_nothing_else() {
    let dir = scratch("access-register");
    let cp = secure(&dir).await;
    let cart = token(
        &cp,
        json!({ "namespace": "shop", "service": "cart", "scopes": ["register"] }),
    )
    .await;
    let register = |who: Option<String>, name: &'static str, port: u16| {
        let cp = &cp;
        async move {
            admin(
                cp,
                Method::POST,
                "/v1/registrations",
                who.as_deref(),
                json!({ "name": name, "address": format!("127.0.0.1:{port}") }),
            )
            .await
        }
    };
    let (status, own) = register(Some(cart.clone()), "cart", 9001).await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let own = own["lease"].as_str().unwrap().to_owned();
    let (status, answer) = register(Some(cart.clone()), "payments", 9002).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("its own service only")
    );
    let (status, _) = register(None, "cart", 9003).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, other) = register(Some(TOKEN.to_owned()), "payments", 9004).await;
    assert_eq!(status, StatusCode::CREATED);
    let other = other["lease"].as_str().unwrap().to_owned();

    // Its own lease: renewed.
    let (status, answer) = admin(
        &cp,
        Method::PUT,
        &format!("/v1/registrations/{own}"),
        Some(&cart),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Another service's lease: neither renewed nor deregistered.
    for method in [Method::PUT, Method::DELETE] {
        let (status, answer) = admin(
            &cp,
            method.clone(),
            &format!("/v1/registrations/{other}"),
            Some(&cart),
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}: {answer}");
    }
    // Without a token, no lease is revealed: 401 whether it exists or not.
    for lease in [other.as_str(), "no-such-lease"] {
        let (status, _) = admin(
            &cp,
            Method::PUT,
            &format!("/v1/registrations/{lease}"),
            None,
            json!({}),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The register token reads nothing and mints no certificate.
    let (status, _) = admin(
        &cp,
        Method::GET,
        "/v1/registrations",
        Some(&cart),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Its own lease, deregistered.
    let (status, _) = admin(
        &cp,
        Method::DELETE,
        &format!("/v1/registrations/{own}"),
        Some(&cart),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, registrations) = admin(
        &cp,
        Method::GET,
        "/v1/registrations",
        Some(TOKEN),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        registrations.as_array().map(Vec::len),
        Some(1),
        "{registrations}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One GET over TLS to the admin API: the status.
async fn https_get(
    cp: &ControlPlane,
    path: &str,
    token: Option<&str>,
) -> Result<StatusCode, String> {
    use http_body_util::Empty;
    let tcp = tokio::net::TcpStream::connect(cp.admin_addr())
        .await
        .map_err(|e| e.to_string())?;
    let tls =
        tokio_rustls::TlsConnector::from(tls_client(&cp.trust_bundle_pem(), None, b"http/1.1"))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = http::Request::get(path).header("host", "localhost");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = sender
        .send_request(request.body(Empty::new()).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status())
}

#[tokio::test]
async fn the_admin_api_over_tls_and_never_plaintext_off_loopback() {
    let dir = scratch("access-admin-tls");
    std::fs::write(dir.join("mesh.yaml"), MESH).unwrap();
    let cp = ControlPlane::builder()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .admin_tls()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let status = within(
        "an https answer",
        https_get(&cp, "/v1/services", Some(TOKEN)),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    let status = within("an https answer", https_get(&cp, "/v1/services", None))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Plaintext to the TLS port gets no answer.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let plain = within(
        "a plaintext attempt",
        client.get(
            format!("http://{}/v1/health", cp.admin_addr())
                .parse()
                .unwrap(),
        ),
    )
    .await;
    assert!(plain.is_err(), "{plain:?}");

    // Off loopback, plaintext is refused unless allowed on purpose.
    let refused = ControlPlane::builder()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("0.0.0.0:0".parse().unwrap())
        .start()
        .await;
    match refused {
        Err(StartError::Option(e)) => {
            assert!(
                e.to_string()
                    .starts_with("admin_tls: the admin API on 0.0.0.0:0 is not on loopback"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    let allowed = ControlPlane::builder()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("0.0.0.0:0".parse().unwrap())
        .allow_plaintext_admin()
        .start()
        .await;
    assert!(allowed.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// One request through `mesh` to the `reviews` service: who answered.
async fn call(mesh: &sinew::mesh::Mesh) -> String {
    use tower::ServiceExt;
    let client = mesh.http_client::<http_body_util::Empty<bytes::Bytes>>("reviews");
    let request = http::Request::get("http://reviews/")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = within("an answer", client.oneshot(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    within("a body", support::body_text(response.into_body())).await
}

#[tokio::test]
async fn a_sinew_mesh_takes_its_configuration_over_mtls() {
    let dir = scratch("access-mesh");
    let (a, _) = support::named("a").await;
    let mesh_file = format!(
        "services:\n  reviews:\n    routes: [{{ split: [{{ cluster: reviews-v1 }}] }}]\nclusters:\n  reviews-v1:\n    endpoints: [{{ address: \"{}\" }}]\n",
        a.addr
    );
    let cp = secure_with(&dir, &mesh_file).await;
    let port = cp.xds_addr().port();
    let (chain, key) = certificate(&cp, "shop", "cart").await;

    // With the mesh's identity: the control plane verified by its SPIFFE
    // ID against the identity's bundle.
    let identity = sinew::tls::Identity::new();
    identity.set_credentials(
        sinew::tls::Credentials::from_pem(
            chain.as_bytes(),
            key.as_bytes(),
            cp.trust_bundle_pem().as_bytes(),
        )
        .unwrap(),
    );
    let bootstrap = sinew::xds::Bootstrap::from_json(&format!(
        r#"{{"xds_servers": [{{"server_uri": "127.0.0.1:{port}", "channel_creds": [{{"type": "tls"}}]}}], "node": {{"id": "cart-1", "cluster": "cart"}}}}"#
    ))
    .unwrap();
    let mesh = within(
        "the mesh",
        sinew::mesh::Mesh::builder()
            .identity(identity)
            .bootstrap(bootstrap)
            .build(),
    )
    .await
    .unwrap();
    assert_eq!(call(&mesh).await, "a");
    drop(mesh);

    // With gRPC's files (gRFC A65): the control plane verified by host
    // name (its certificate names 127.0.0.1) against the CA file.
    for (name, text) in [
        ("ca.pem", cp.trust_bundle_pem()),
        ("cert.pem", chain.clone()),
        ("key.pem", key.clone()),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let files = |file: &str| dir.join(file).display().to_string();
    let bootstrap = sinew::xds::Bootstrap::from_json(&format!(
        r#"{{"xds_servers": [{{"server_uri": "127.0.0.1:{port}", "channel_creds": [{{"type": "tls", "config": {{"ca_certificate_file": "{}", "certificate_file": "{}", "private_key_file": "{}"}}}}]}}], "node": {{"id": "cart-2", "cluster": "cart"}}}}"#,
        files("ca.pem"),
        files("cert.pem"),
        files("key.pem")
    ))
    .unwrap();
    let mesh = within(
        "the mesh",
        sinew::mesh::Mesh::builder().bootstrap(bootstrap).build(),
    )
    .await
    .unwrap();
    assert_eq!(call(&mesh).await, "a");
    let (_, clients) = admin(&cp, Method::GET, "/v1/clients", Some(TOKEN), Value::Null).await;
    assert!(
        clients
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["spiffe_id"] == "spiffe://cluster.local/ns/shop/sa/cart"),
        "{clients}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The names of a response's resources (Listeners or Clusters).
fn names(response: &DiscoveryResponse) -> Vec<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use prost::Message;
    response
        .resources
        .iter()
        .map(|any| match response.type_url.as_str() {
            LISTENER => Listener::decode(any.value.as_slice()).unwrap().name,
            _ => Cluster::decode(any.value.as_slice()).unwrap().name,
        })
        .collect()
}

#[tokio::test]
async fn a_scoped_client_sees_only_the_services_it_may_call() {
    use sinew_control_plane::generate::CLUSTER;
    let dir = scratch("access-scope");
    std::fs::write(
        dir.join("mesh.yaml"),
        "services:\n  reviews:\n    routes: [{ split: [{ cluster: reviews-v1 }] }]\n  payments:\n    routes: [{ split: [{ cluster: payments-v1 }] }]\nclusters:\n  reviews-v1:\n    endpoints: [{ address: \"127.0.0.1:9\" }]\n  payments-v1:\n    endpoints: [{ address: \"127.0.0.1:10\" }]\n",
    )
    .unwrap();
    let cp = ControlPlane::builder()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .xds_scope("cart", ["reviews"])
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let bundle = cp.trust_bundle_pem();
    let cart = tls_client(
        &bundle,
        Some(&certificate(&cp, "shop", "cart").await),
        b"h2",
    );
    let orders = tls_client(
        &bundle,
        Some(&certificate(&cp, "shop", "orders").await),
        b"h2",
    );

    // Every Listener, every Cluster: the scoped client gets its own.
    for (type_url, expected) in [(LISTENER, "reviews"), (CLUSTER, "reviews-v1")] {
        let seen = first_response_for(&cp, Some(cart.clone()), node("cart"), type_url, &[])
            .await
            .unwrap();
        assert_eq!(names(&seen), [expected], "{type_url}");
    }
    // Asked by name, a service out of scope does not exist for it.
    let payments = first_response_for(&cp, Some(cart), node("cart"), LISTENER, &["payments"])
        .await
        .unwrap();
    assert!(payments.resources.is_empty());
    // A service without a scope sees everything.
    let all = first_response_for(&cp, Some(orders), node("orders"), LISTENER, &[])
        .await
        .unwrap();
    assert_eq!(names(&all), ["payments", "reviews"]);
    let _ = std::fs::remove_dir_all(&dir);
}
