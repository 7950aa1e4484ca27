//! xDS security with gRPC on both ends (gRFC A29 and A36), through the
//! control plane: a grpcio xDS server takes its server Listener (STRICT
//! mTLS, certificates from its bootstrap's `file_watcher` provider) from
//! the control plane, and a grpcio xDS client takes the cluster's
//! `UpstreamTlsContext` (the same provider instance, the server's SPIFFE
//! ID as SAN matcher). Certificates are made here with the `openssl`
//! command line: a root for `spiffe://example.org`, and leaves for the
//! client and the server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;
#[path = "common/python.rs"]
mod python;
#[path = "common/svid.rs"]
mod svid;

use common::{admin, scratch, start};
use http::Method;
use python::{Python, script};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use svid::{free_port, id, leaf, root};

/// A gRPC bootstrap for `service`, as node `security-<service>`.
fn bootstrap(dir: &Path, service: &str, xds: SocketAddr) -> PathBuf {
    svid::bootstrap(dir, service, &format!("security-{service}"), xds)
}

/// One command to the client: the servers' replies and the errors.
async fn ask(client: &mut Python, command: &str) -> (Vec<Value>, Vec<Value>) {
    client.send(command).await;
    let answer: Value = serde_json::from_str(&client.line().await).unwrap();
    (
        answer["replies"].as_array().unwrap().clone(),
        answer["errors"].as_array().unwrap().clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_speaks_mtls_configured_by_the_control_plane() {
    let dir = scratch("security");
    root(&dir);
    leaf(&dir, "greeter", "1");
    leaf(&dir, "client", "2");
    let server_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // The same endpoint behind two clusters: one naming the server's
    // identity, one naming another.
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: greeter }}] }}]\n  impostor:\n    routes: [{{ split: [{{ cluster: impostor }}] }}]\nclusters:\n  greeter:\n    protocol: http2\n    lb: {{ policy: round_robin }}\n    identities: [\"{}\"]\n    endpoints: [{{ address: \"{server_addr}\" }}]\n  impostor:\n    protocol: http2\n    lb: {{ policy: round_robin }}\n    identities: [\"{}\"]\n    endpoints: [{{ address: \"{server_addr}\" }}]\n",
            id("greeter"),
            id("someone-else"),
        ),
    )
    .unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;
    let xds = cp.xds_addr();

    let server_bootstrap = bootstrap(&dir, "greeter", xds);
    let mut server = Python::start(
        &[
            &script("xds_secure_server.py"),
            "greeter",
            // On every interface, as servers usually listen: the control
            // plane takes it for the endpoint its ADS connection comes
            // from (127.0.0.1).
            &format!("0.0.0.0:{}", server_addr.port()),
        ],
        &[("GRPC_XDS_BOOTSTRAP", server_bootstrap.to_str().unwrap())],
    )
    .await;
    assert_eq!(server.line().await, "ready");
    let client_bootstrap = bootstrap(&dir, "client", xds);
    let mut client = Python::start(
        &[&script("xds_secure_client.py")],
        &[("GRPC_XDS_BOOTSTRAP", client_bootstrap.to_str().unwrap())],
    )
    .await;
    assert_eq!(client.line().await, "ready");
    // What each gRPC peer holds, to explain a failure.
    let standing = || async {
        let (_, clients) = admin(&cp, Method::GET, "/v1/clients", None, Value::Null).await;
        clients
    };

    // Over mTLS: the server sees the client's SPIFFE ID.
    let (replies, errors) = ask(&mut client, "call xds:///greeter 3").await;
    assert!(
        errors.is_empty(),
        "{errors:?}; clients: {}",
        standing().await
    );
    assert_eq!(replies.len(), 3);
    for reply in &replies {
        assert_eq!(reply["name"], "greeter");
        assert_eq!(
            reply["auth"]["transport_security_type"],
            json!(["tls"]),
            "{reply}"
        );
        assert_eq!(
            reply["auth"]["peer_spiffe_id"],
            json!([id("client")]),
            "{reply}"
        );
        assert_eq!(
            reply["auth"]["ssl_tls_version"],
            json!(["TLSv1.3"]),
            "{reply}"
        );
        let seen: Vec<&str> = reply["peer_identities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(seen.contains(&id("client").as_str()), "{reply}");
    }
    let handled = replies[2]["calls"].as_u64().unwrap();

    // The STRICT Listener refuses plaintext, before any handler runs.
    let (replies, errors) = ask(&mut client, &format!("plain {server_addr} 2")).await;
    assert!(replies.is_empty(), "plaintext was answered: {replies:?}");
    assert_eq!(errors.len(), 2);
    for error in &errors {
        assert_eq!(error["code"], "UNAVAILABLE", "{error}");
    }

    // A cluster naming another identity: the server's certificate does
    // not match its SAN matcher, and the call fails.
    let (replies, errors) = ask(&mut client, "try xds:///impostor 2").await;
    assert!(
        replies.is_empty(),
        "the SAN matcher was not honoured: {replies:?}"
    );
    assert_eq!(errors.len(), 2);
    for error in &errors {
        assert_eq!(error["code"], "UNAVAILABLE", "{error}");
        // gRPC's words for a certificate its SAN matchers refuse.
        assert!(
            error["details"]
                .as_str()
                .unwrap()
                .contains("SANs from certificate did not match"),
            "{error}"
        );
    }

    // Neither reached the server's handler.
    let (replies, errors) = ask(&mut client, "call xds:///greeter 1").await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(replies[0]["calls"].as_u64().unwrap(), handled + 1);

    // Both peers took every resource: nothing NACKed.
    let clients = standing().await;
    for node in ["security-greeter", "security-client"] {
        let view = clients
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node_id"] == node)
            .unwrap_or_else(|| panic!("{node} is not listed: {clients}"));
        for (kind, types) in view["types"].as_object().unwrap() {
            assert!(types["last_nack"].is_null(), "{node} NACKed {kind}: {view}");
        }
    }
    drop((client, server));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/sinew.test.Echo/Call` served by tonic behind a Sinew server: answers
/// with its name, the caller's SPIFFE ID and the calls it has handled, as
/// the Python server does.
#[derive(Clone)]
struct SinewEcho {
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl tonic::server::NamedService for SinewEcho {
    const NAME: &'static str = "sinew.test.Echo";
}

impl tower::Service<http::Request<tonic::body::Body>> for SinewEcho {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let calls = self.calls.clone();
        Box::pin(async move {
            let method = tower::service_fn(move |req: tonic::Request<bytes::Bytes>| {
                let calls = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                let peer = req
                    .extensions()
                    .get::<sinew::mesh::PeerIdentity>()
                    .map(|p| p.id().to_string());
                let reply = json!({"name": "sinew-greeter", "peer": peer, "calls": calls});
                async move {
                    Ok::<_, tonic::Status>(tonic::Response::new(bytes::Bytes::from(
                        reply.to_string(),
                    )))
                }
            });
            Ok(tonic::server::Grpc::new(sinew::mesh::RawCodec)
                .unary(method, request)
                .await)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_calls_a_sinew_server_over_mtls_configured_by_the_control_plane() {
    let dir = scratch("security-sinew");
    root(&dir);
    leaf(&dir, "greeter", "1");
    leaf(&dir, "client", "2");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: greeter }}] }}]\n  impostor:\n    routes: [{{ split: [{{ cluster: impostor }}] }}]\nclusters:\n  greeter:\n    protocol: http2\n    identities: [\"{}\"]\n    endpoints: [{{ address: \"{server_addr}\" }}]\n  impostor:\n    protocol: http2\n    identities: [\"{}\"]\n    endpoints: [{{ address: \"{server_addr}\" }}]\n",
            id("greeter"),
            id("someone-else"),
        ),
    )
    .unwrap();
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;

    // The Sinew server: its certificate from the same kind of files grpcio
    // reads, strict by default since it has an identity.
    let files = sinew::tls::FileWatcherConfig::new(
        dir.join("greeter.pem"),
        dir.join("greeter.key"),
        dir.join("ca.pem"),
    );
    let mesh = sinew::mesh::Mesh::builder()
        .certificate_files(files)
        .build()
        .await
        .unwrap();
    let server = mesh.server("greeter");
    let layer = server.layer().unwrap();
    let incoming = server.incoming(listener).unwrap();
    let echo = SinewEcho {
        calls: std::sync::Arc::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(echo.clone())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );

    let client_bootstrap = bootstrap(&dir, "client", cp.xds_addr());
    let mut client = Python::start(
        &[&script("xds_secure_client.py")],
        &[("GRPC_XDS_BOOTSTRAP", client_bootstrap.to_str().unwrap())],
    )
    .await;
    assert_eq!(client.line().await, "ready");

    // grpcio's xDS credentials against Sinew's server: mTLS both ways, the
    // server sees grpcio's SPIFFE ID.
    let (replies, errors) = ask(&mut client, "call xds:///greeter 3").await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(replies.len(), 3);
    for reply in &replies {
        assert_eq!(reply["name"], "sinew-greeter", "{reply}");
        assert_eq!(reply["peer"], json!(id("client")), "{reply}");
    }

    // Plaintext straight to the port, and a cluster naming another
    // identity: refused, and neither reaches the handler.
    let (replies, errors) = ask(&mut client, &format!("plain {server_addr} 2")).await;
    assert!(replies.is_empty(), "plaintext was answered: {replies:?}");
    assert_eq!(errors.len(), 2);
    assert!(
        errors.iter().all(|e| e["code"] == "UNAVAILABLE"),
        "{errors:?}"
    );
    let (replies, errors) = ask(&mut client, "try xds:///impostor 2").await;
    assert!(
        replies.is_empty(),
        "the SAN matcher was not honoured: {replies:?}"
    );
    assert_eq!(errors.len(), 2);
    assert!(
        errors.iter().all(|e| e["details"]
            .as_str()
            .unwrap_or_default()
            .contains("SANs from certificate did not match")),
        "{errors:?}"
    );
    assert_eq!(
        echo.calls.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "only the mTLS calls were handled"
    );

    drop(client);
    let _ = stop.send(());
    common::within("the server to stop", serving)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request to `server`: in plaintext when `identity` is
/// `None`, otherwise over mTLS with it, checking the server is greeter.
async fn get(
    identity: Option<&sinew::tls::Identity>,
    server: SocketAddr,
) -> Result<http::StatusCode, String> {
    use hyper_util::rt::TokioIo;
    let tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let request = http::Request::get("/")
        .header("host", "greeter")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    let response = match identity {
        None => {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
        Some(identity) => {
            let greeter = sinew::tls::SpiffeId::new(&id("greeter")).unwrap();
            let config = identity
                .client_config([greeter], vec![b"http/1.1".to_vec()])
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(
                    rustls_pki_types::ServerName::try_from("greeter").unwrap(),
                    tcp,
                )
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            sender.send_request(request).await
        }
    };
    response
        .map(|r| r.status())
        .map_err(|e| format!("request: {e}"))
}

/// Waits (with a deadline) for the mesh to hold version `after` or a
/// later one of the server Listener `name`, accepted; returns its version.
async fn server_listener_acked(
    mesh: &sinew::mesh::Mesh,
    name: &str,
    after: Option<&str>,
) -> String {
    let mut versions = mesh.versions();
    common::within("the server Listener to arrive", async {
        loop {
            let status = mesh.xds_status().unwrap();
            if let Some(listener) = status.resources.iter().find(|r| {
                r.kind == sinew::xds::Kind::Listener
                    && r.name == name
                    && r.state == sinew::xds::ResourceState::Acked
                    && Some(r.version.as_str()) != after
            }) {
                return listener.version.clone();
            }
            // Each response the discovery client applies bumps the mesh's
            // version.
            versions.changed().await.unwrap();
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sinew_server_takes_its_transport_from_its_server_listener() {
    let dir = scratch("security-server-listener");
    root(&dir);
    leaf(&dir, "greeter", "1");
    leaf(&dir, "client", "2");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let mesh_file = |identities: &str| {
        std::fs::write(
            dir.join("mesh.yaml"),
            format!(
                "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: greeter }}] }}]\nclusters:\n  greeter:\n    protocol: http1\n{identities}    endpoints: [{{ address: \"{server_addr}\" }}]\n"
            ),
        )
        .unwrap();
    };
    // The cluster holding the server's endpoint requires mTLS; the mesh
    // file says nothing of the server's `inbound`.
    mesh_file(&format!("    identities: [\"{}\"]\n", id("greeter")));
    let cp = start(&dir, "127.0.0.1:0".parse().unwrap()).await;

    let bootstrap =
        sinew::xds::Bootstrap::from_file(bootstrap(&dir, "greeter", cp.xds_addr())).unwrap();
    assert_eq!(
        bootstrap.server_listener_resource_name_template.as_deref(),
        Some("grpc/server?xds.resource.listening_address=%s")
    );
    let mesh = sinew::mesh::Mesh::builder()
        .bootstrap(bootstrap)
        .certificate_files(sinew::tls::FileWatcherConfig::new(
            dir.join("greeter.pem"),
            dir.join("greeter.key"),
            dir.join("ca.pem"),
        ))
        .build()
        .await
        .unwrap();
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = handled.clone();
    let app = tower::service_fn(move |_: http::Request<hyper::body::Incoming>| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<
                bytes::Bytes,
            >::from("hello")))
        }
    });
    let server = mesh.server("greeter").serve(listener, app).await.unwrap();
    let name = format!("grpc/server?xds.resource.listening_address={server_addr}");
    let first = server_listener_acked(&mesh, &name, None).await;

    let client = sinew::tls::Identity::new();
    client.set_credentials(
        sinew::tls::FileWatcherConfig::new(
            dir.join("client.pem"),
            dir.join("client.key"),
            dir.join("ca.pem"),
        )
        .load()
        .unwrap(),
    );
    // STRICT: a plaintext caller is refused, an mTLS caller served.
    let plain = get(None, server_addr).await;
    assert!(plain.is_err(), "plaintext was answered: {plain:?}");
    assert_eq!(
        get(Some(&client), server_addr).await,
        Ok(http::StatusCode::OK)
    );
    assert_eq!(handled.load(std::sync::atomic::Ordering::SeqCst), 1);

    // No cluster requires mTLS for the endpoint any more: the control
    // plane's server Listener has no transport socket, and the server
    // takes plaintext callers (its own default, with an identity, would
    // be strict).
    mesh_file("");
    server_listener_acked(&mesh, &name, Some(&first)).await;
    assert_eq!(get(None, server_addr).await, Ok(http::StatusCode::OK));
    let tls = get(Some(&client), server_addr).await;
    assert!(tls.is_err(), "a plaintext server answered TLS: {tls:?}");
    assert_eq!(handled.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Nothing was refused by the mesh's discovery client.
    let status = mesh.xds_status().unwrap();
    assert!(
        status.resources.iter().all(|r| r.error.is_none()),
        "{status:?}"
    );
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_before_the_server_listener_arrives_waits_for_it() {
    let dir = scratch("security-server-listener-wait");
    root(&dir);
    leaf(&dir, "greeter", "1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    // No cluster requires mTLS: the server Listener will say plaintext,
    // where the server's own default (it has an identity) is strict.
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "services:\n  greeter:\n    routes: [{{ split: [{{ cluster: greeter }}] }}]\nclusters:\n  greeter:\n    protocol: http1\n    endpoints: [{{ address: \"{server_addr}\" }}]\n"
        ),
    )
    .unwrap();
    // The control plane is not there yet: its port is known, nothing
    // listens on it.
    let xds = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mesh = sinew::mesh::Mesh::builder()
        .bootstrap(sinew::xds::Bootstrap::from_file(bootstrap(&dir, "greeter", xds)).unwrap())
        .certificate_files(sinew::tls::FileWatcherConfig::new(
            dir.join("greeter.pem"),
            dir.join("greeter.key"),
            dir.join("ca.pem"),
        ))
        .build()
        .await
        .unwrap();
    let app = tower::service_fn(|_: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(
            http_body_util::Full::<bytes::Bytes>::from("hello"),
        ))
    });
    let server = mesh.server("greeter").serve(listener, app).await.unwrap();
    // A plaintext caller before the server Listener exists: not refused on
    // the server's default, but held until the Listener says plaintext.
    let early = tokio::spawn(get(None, server_addr));
    let cp = start(&dir, xds).await;
    assert_eq!(
        common::within("the early caller", early).await.unwrap(),
        Ok(http::StatusCode::OK)
    );
    server.shutdown().await.unwrap();
    drop(cp);
    let _ = std::fs::remove_dir_all(&dir);
}
