//! Bad input against the control plane, on real sockets: the admin API
//! (malformed JSON, wrong types, huge or slow bodies, bad addresses, the
//! wrong content type, too many connections or leases) and ADS (huge node
//! ids and name lists, NACK floods, garbage on the stream). Each case
//! gets a clear error naming the field, or is handled; the process stays
//! up, and nothing already accepted is lost.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;

use common::{RawStream, TOKEN, admin, raw_admin, scratch, start_with, within};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sinew_control_plane::generate::{CLUSTER, ENDPOINTS};
use sinew_control_plane::{ControlPlane, Limits};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const JSON: (&str, &str) = ("content-type", "application/json");
const AUTH: (&str, &str) = ("authorization", "Bearer test-token");

async fn post(cp: &ControlPlane, body: &str) -> (StatusCode, String) {
    let (status, answer) = raw_admin(
        cp,
        Method::POST,
        "/v1/registrations",
        &[JSON, AUTH],
        body.to_owned(),
    )
    .await;
    (status, answer["error"].as_str().unwrap_or("").to_owned())
}

/// The control plane still serves, and still holds what it accepted.
async fn still_whole(cp: &ControlPlane, leases: usize) {
    let (status, health) = admin(cp, Method::GET, "/v1/health", None, Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["leases"], leases, "{health}");
    assert_eq!(
        cp.published().clusters["reviews"].endpoints.len(),
        leases,
        "every accepted registration is served"
    );
}

fn mesh(dir: &std::path::Path) {
    std::fs::write(
        dir.join("mesh.yaml"),
        "services:\n  reviews:\n    routes: [{ split: [{ cluster: reviews }] }]\nclusters:\n  reviews: {}\n",
    )
    .unwrap();
}

#[tokio::test]
async fn the_admin_api_names_the_field_of_every_bad_registration() {
    let dir = scratch("bad-admin");
    mesh(&dir);
    let cp = start_with(&dir, "127.0.0.1:0".parse().unwrap(), Limits::default()).await;
    let (status, _) = post(&cp, r#"{"name": "reviews", "address": "127.0.0.1:1"}"#).await;
    assert_eq!(status, StatusCode::CREATED);

    let bad_request = [
        // Malformed JSON.
        (r#"{"name": "reviews", "#, "invalid registration: "),
        ("", "invalid registration: "),
        (
            "[1, 2]",
            "invalid registration: body: must be a JSON object",
        ),
        ("\"x\"", "invalid registration: body: must be a JSON object"),
        (
            r#"{"name": "reviews", "address": "127.0.0.1:2"} trailing"#,
            "invalid registration: body: trailing characters",
        ),
        (
            "{\"name\": \"reviews\", \"address\": \"127.0.0.1:2\", \"locality\": {\"zone\": \"\u{0}\u{1}\"}}\u{0}",
            "invalid registration: ",
        ),
        // Wrong types.
        (
            r#"{"name": 5, "address": "127.0.0.1:2"}"#,
            "invalid registration: name: invalid type: integer `5`",
        ),
        (
            r#"{"name": "reviews", "address": "127.0.0.1:2", "metadata": {"k": 1}}"#,
            "invalid registration: metadata.k: invalid type: integer `1`",
        ),
        (
            r#"{"name": "reviews", "address": "127.0.0.1:2", "ttl_seconds": -1}"#,
            "invalid registration: ttl_seconds: invalid value",
        ),
        (
            r#"{"name": "reviews", "address": "127.0.0.1:2", "locality": "eu"}"#,
            "invalid registration: locality: invalid type: string",
        ),
        (
            r#"{"name": "reviews"}"#,
            "invalid registration: body: missing field `address`",
        ),
        // Bad addresses.
        (
            r#"{"name": "reviews", "address": ""}"#,
            "invalid registration: address: ",
        ),
        (
            r#"{"name": "reviews", "address": "127.0.0.1"}"#,
            "invalid registration: address: ",
        ),
        (
            r#"{"name": "reviews", "address": "[::1]"}"#,
            "invalid registration: address: ",
        ),
        (
            r#"{"name": "reviews", "address": "127.0.0.1:99999"}"#,
            "invalid registration: address: ",
        ),
        (
            r#"{"name": "reviews", "address": "reviews.svc:80"}"#,
            "invalid registration: address: ",
        ),
        (
            r#"{"name": "reviews", "address": " 127.0.0.1:80"}"#,
            "invalid registration: address: ",
        ),
        // Values out of range.
        (
            r#"{"name": "a b", "address": "127.0.0.1:2"}"#,
            "invalid registration: name: ",
        ),
        (
            r#"{"name": "reviews", "address": "127.0.0.1:2", "ttl_seconds": 0}"#,
            "invalid registration: ttl_seconds: ",
        ),
    ];
    let long_zone = json!({ "name": "reviews", "address": "127.0.0.1:2", "locality": { "zone": "z".repeat(300) } });
    let long_zone = long_zone.to_string();
    for (body, expected) in bad_request
        .iter()
        .map(|(b, e)| (b.to_string(), *e))
        .chain([(long_zone, "invalid registration: locality.zone: ")])
    {
        let (status, error) = post(&cp, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert!(error.starts_with(expected), "{body}: {error}");
    }

    // A huge body.
    let huge = format!(
        r#"{{"name": "reviews", "address": "127.0.0.1:3", "metadata": {{"k": "{}"}}}}"#,
        "v".repeat(1 << 20)
    );
    let (status, error) = post(&cp, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");

    // Invalid UTF-8.
    let (status, answer) = raw_admin(
        &cp,
        Method::POST,
        "/v1/registrations",
        &[JSON, AUTH],
        b"{\"name\": \"\xff\xfe\", \"address\": \"127.0.0.1:4\"}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // A lease id that is huge, or not one.
    let path = format!("/v1/registrations/{}", "x".repeat(10_000));
    let (status, _) = admin(&cp, Method::DELETE, &path, Some(TOKEN), Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin(
        &cp,
        Method::PUT,
        "/v1/registrations/%00",
        Some(TOKEN),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    still_whole(&cp, 1).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn writes_need_json_and_the_token_in_any_case_of_scheme() {
    let dir = scratch("content-type");
    mesh(&dir);
    // Unauthenticated writes allowed: a form posted by a web page must
    // still not register anything.
    let open = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .mesh_file(dir.join("mesh.yaml"))
        .allow_unauthenticated_writes()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    let body = r#"{"name": "reviews", "address": "127.0.0.1:1"}"#;
    for content_type in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| ("content-type", c))
            .into_iter()
            .collect();
        let (status, answer) = raw_admin(
            &open,
            Method::POST,
            "/v1/registrations",
            &headers,
            body.to_owned(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .starts_with("Content-Type:"),
            "{answer}"
        );
    }
    let (_, leases) = admin(&open, Method::GET, "/v1/registrations", None, Value::Null).await;
    assert_eq!(leases, json!([]));
    let (status, answer) = raw_admin(
        &open,
        Method::POST,
        "/v1/registrations",
        &[("content-type", "Application/JSON; charset=utf-8")],
        body.to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(answer["stored"], Value::Null, "no store: {answer}");

    // With a token: the scheme in any case; anything else refused.
    let cp = start_with(&dir, "127.0.0.1:0".parse().unwrap(), Limits::default()).await;
    for (authorization, expected) in [
        ("bearer test-token", StatusCode::CREATED),
        ("BEARER  test-token", StatusCode::CREATED),
        ("Bearer test-token2", StatusCode::UNAUTHORIZED),
        ("Bearer test-toke", StatusCode::UNAUTHORIZED),
        ("Basic dGVzdC10b2tlbg==", StatusCode::UNAUTHORIZED),
        ("Bearer", StatusCode::UNAUTHORIZED),
        ("test-token", StatusCode::UNAUTHORIZED),
    ] {
        let (status, answer) = raw_admin(
            &cp,
            Method::POST,
            "/v1/registrations",
            &[JSON, ("authorization", authorization)],
            body.to_owned(),
        )
        .await;
        assert_eq!(status, expected, "{authorization}: {answer}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn lease_limits_refuse_with_429_and_keep_what_was_accepted() {
    let dir = scratch("lease-limits");
    mesh(&dir);
    let limits = Limits {
        max_leases: 3,
        max_leases_per_cluster: 2,
        ..Limits::default()
    };
    let cp = start_with(&dir, "127.0.0.1:0".parse().unwrap(), limits).await;
    for port in [1, 2] {
        let (status, _) = post(
            &cp,
            &format!(r#"{{"name": "reviews", "address": "127.0.0.1:{port}"}}"#),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, error) = post(&cp, r#"{"name": "reviews", "address": "127.0.0.1:3"}"#).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        error,
        "registration refused: name: cluster `reviews` holds 2 leases, the most allowed"
    );
    // The same instance again replaces its lease: not one more.
    let (status, _) = post(&cp, r#"{"name": "reviews", "address": "127.0.0.1:2"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = post(&cp, r#"{"name": "other", "address": "127.0.0.1:4"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, error) = post(&cp, r#"{"name": "third", "address": "127.0.0.1:5"}"#).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        error.starts_with("registration refused: name: the registry holds 3"),
        "{error}"
    );
    let (_, health) = admin(&cp, Method::GET, "/v1/health", None, Value::Null).await;
    assert_eq!(health["leases"], 3);
    assert_eq!(cp.published().clusters["reviews"].endpoints.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads until the peer closes; what was read.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut read = Vec::new();
    within("the connection closed", async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_connections_capped() {
    let dir = scratch("slow");
    mesh(&dir);
    let limits = Limits {
        admin_read_timeout: Duration::from_millis(300),
        max_admin_connections: 2,
        ..Limits::default()
    };
    let cp = start_with(&dir, "127.0.0.1:0".parse().unwrap(), limits).await;
    let addr = cp.admin_addr();

    // Headers that never end (slow-loris): the connection is closed.
    let mut loris = tokio::net::TcpStream::connect(addr).await.unwrap();
    loris
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    until_closed(&mut loris).await;

    // A body that never comes: 408.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /v1/registrations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer test-token\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut slow).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Two idle connections hold both places: a third is closed at once.
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The second is known to be accepted once it is answered.
    second
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    within("an answer", second.read_exact(&mut buf))
        .await
        .unwrap();
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(until_closed(&mut third).await.is_empty());
    // A connection that never sends a byte is cut off too.
    let mut first = _first;
    until_closed(&mut first).await;
    // And so is one kept alive after its answer, idle.
    let rest = until_closed(&mut second).await;
    assert!(!rest.is_empty(), "the rest of the answer, then the close");
    // Once the places are free, the API answers again.
    drop(second);
    within("the API answering again", async {
        loop {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let uri = format!("http://{addr}/v1/health").parse().unwrap();
            if client.get(uri).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Counts the warnings whose message is `NACK`.
struct NackLog(Arc<AtomicUsize>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for NackLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        if *event.metadata().level() == tracing::Level::WARN && message.0 == "NACK" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn discovery(type_url: &str, names: Vec<String>, node_id: String) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(envoy_types::pb::envoy::config::core::v3::Node {
            id: node_id,
            ..Default::default()
        }),
        type_url: type_url.to_owned(),
        resource_names: names,
        ..Default::default()
    }
}

// Single-threaded (the default): the stream tasks log on this thread,
// to the subscriber set here.
#[tokio::test]
async fn ads_takes_huge_ids_name_lists_nack_floods_and_garbage() {
    let nacks = Arc::new(AtomicUsize::new(0));
    let _log = tracing::subscriber::set_default(NackLog(nacks.clone()));
    let dir = scratch("bad-ads");
    mesh(&dir);
    let limits = Limits {
        max_resource_names: 100,
        max_message_bytes: 1 << 20,
        ..Limits::default()
    };
    let cp = start_with(&dir, "127.0.0.1:0".parse().unwrap(), limits).await;
    let (status, _) = post(&cp, r#"{"name": "reviews", "address": "127.0.0.1:1"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let xds = cp.xds_addr();

    // A huge node id (100 KB): kept truncated.
    let mut stream = RawStream::open(xds).await;
    stream
        .requests
        .send(discovery(
            ENDPOINTS,
            vec!["reviews".into()],
            "n".repeat(100_000),
        ))
        .unwrap();
    let (_, version, nonce, names) = stream.next().await;
    assert_eq!(names, ["reviews"]);
    let node = &cp.clients()[0].node_id;
    assert!(
        node.len() < 300 && node.ends_with("(100000 bytes)"),
        "{node}"
    );

    // A NACK flood: the same NACK, with a huge message, 500 times: logged
    // once, recorded truncated.
    let message = "m".repeat(100_000);
    for _ in 0..500 {
        stream.request(ENDPOINTS, &["reviews"], "", &nonce, Some(&message));
    }
    // An unknown type is ignored, and the stream still answers.
    stream.request("type.googleapis.com/nothing", &[], "", "", None);
    stream.request(CLUSTER, &["reviews"], "", "", None);
    let (type_url, ..) = stream.next().await;
    assert_eq!(type_url, CLUSTER);
    let view = cp.clients()[0].types["ClusterLoadAssignment"].clone();
    let nack = view.last_nack.unwrap();
    assert_eq!(nack.version, version);
    assert!(nack.message.len() < 1100, "{}", nack.message.len());
    assert_eq!(nacks.load(Ordering::Relaxed), 1, "logged once");

    // Too many names in one request: the stream ends, naming the field.
    let mut many = RawStream::open(xds).await;
    let names: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    many.requests
        .send(discovery(ENDPOINTS, names, "many".into()))
        .unwrap();
    let status = within("the refusal", many.inbound.message())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with("resource_names: 101 names"),
        "{status:?}"
    );

    // A message over the largest allowed: the stream ends.
    let mut big = RawStream::open(xds).await;
    big.requests
        .send(discovery(ENDPOINTS, vec![], "b".repeat(2 << 20)))
        .unwrap();
    let status = within("the refusal", big.inbound.message())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");

    // Garbage instead of HTTP/2: the connection is closed.
    let mut garbage = tokio::net::TcpStream::connect(xds).await.unwrap();
    let _ = garbage.write_all(&[0xde; 4096]).await;
    until_closed(&mut garbage).await;

    // A gRPC frame that is not a DiscoveryRequest: the stream fails.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut frame = vec![0u8, 0, 0, 0, 8];
    frame.extend_from_slice(&[0xff; 8]);
    let request = http::Request::post(format!(
        "http://{xds}/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
    .unwrap();
    let response = within("an answer", client.request(request)).await.unwrap();
    let headers = response.headers().clone();
    let collected = within(
        "the trailers",
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let grpc_status = trailers
        .get("grpc-status")
        .or_else(|| headers.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        grpc_status.as_deref().is_some_and(|s| s != "0"),
        "{grpc_status:?} {headers:?} {trailers:?}"
    );

    // Through it all: the first stream still gets news, a new stream the
    // whole mesh, and the registration is still served.
    let (status, _) = post(&cp, r#"{"name": "reviews", "address": "127.0.0.1:2"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    let (type_url, _, _, names) = stream.next().await;
    assert_eq!(
        (type_url.as_str(), names),
        (ENDPOINTS, vec!["reviews".to_owned()])
    );
    let mut fresh = RawStream::open(xds).await;
    fresh.request(ENDPOINTS, &["reviews"], "", "", None);
    let (_, _, _, names) = fresh.next().await;
    assert_eq!(names, ["reviews"]);
    still_whole(&cp, 2).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ads_connections_over_the_cap_are_closed() {
    let dir = scratch("ads-cap");
    mesh(&dir);
    let limits = Limits {
        max_ads_connections: 1,
        ..Limits::default()
    };
    let cp = start_with(&dir, "127.0.0.1:0".parse().unwrap(), limits).await;
    let mut first = RawStream::open(cp.xds_addr()).await;
    first.request(CLUSTER, &[], "", "", None);
    let (type_url, ..) = first.next().await;
    assert_eq!(type_url, CLUSTER);
    let mut second = tokio::net::TcpStream::connect(cp.xds_addr()).await.unwrap();
    assert!(until_closed(&mut second).await.is_empty());
    // The place is free again once the first goes.
    drop(first);
    within("a place again", async {
        loop {
            let connect = sinew_control_plane_test_connect(cp.xds_addr()).await;
            if connect {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether a new ADS stream is answered.
async fn sinew_control_plane_test_connect(xds: std::net::SocketAddr) -> bool {
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    let Ok(mut client) = AggregatedDiscoveryServiceClient::connect(format!("http://{xds}")).await
    else {
        return false;
    };
    let request = discovery(CLUSTER, vec![], "again".into());
    let Ok(response) = client
        .stream_aggregated_resources(futures_util::stream::iter([request]))
        .await
    else {
        return false;
    };
    let mut inbound = response.into_inner();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), inbound.message()).await,
        Ok(Ok(Some(_)))
    )
}

/// The HTTP/2 settings the ADS server announces first: the limit on
/// concurrent streams per connection is among them.
#[tokio::test]
async fn ads_announces_its_streams_per_connection() {
    let dir = scratch("streams");
    mesh(&dir);
    let limits = Limits {
        max_streams_per_connection: 3,
        ..Limits::default()
    };
    let cp = start_with(&dir, "127.0.0.1:0".parse().unwrap(), limits).await;
    let mut connection = tokio::net::TcpStream::connect(cp.xds_addr()).await.unwrap();
    // The client preface and an empty SETTINGS frame.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    connection.write_all(&hello).await.unwrap();
    let mut header = [0u8; 9];
    within("the server's settings", connection.read_exact(&mut header))
        .await
        .unwrap();
    assert_eq!(header[3], 4, "a SETTINGS frame first");
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    within("the settings", connection.read_exact(&mut payload))
        .await
        .unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(3, 3)), "{settings:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
