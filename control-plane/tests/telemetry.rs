//! Telemetry to the control plane, through real sockets: a real Sinew
//! client calls a real Sinew server registered with the control plane,
//! both meshes push their edges as OTLP on the xDS port, and `/v1/graph`
//! shows both sides of the edge with what the client saw; malformed
//! exports are refused naming the field; the window keeps a bounded
//! number of edges; over mutual TLS the server names its caller and a
//! workload reports only as itself; the graph needs the admin API's read
//! access.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;
mod telemetry_support;

use bytes::Bytes;
use common::{TOKEN, admin, raw_admin, scratch, within};
use http::{Method, StatusCode};
use http_body_util::Empty;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde_json::Value;
use sinew::telemetry::edges::{Direction, EdgeStats, Edges};
use sinew_control_plane::ControlPlane;
use sinew_control_plane::telemetry::TelemetryOptions;
use std::time::Duration;
use telemetry_support::{
    MESH, Sent, edge, graph, graph_until, pushing_mesh, send, serve_reviews, until_reachable,
};

/// A control plane with plaintext xDS and reads behind the token.
async fn start(dir: &std::path::Path, telemetry: TelemetryOptions) -> ControlPlane {
    std::fs::write(dir.join("mesh.yaml"), MESH).unwrap();
    ControlPlane::builder()
        .insecure_xds()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .telemetry(telemetry)
        .start()
        .await
        .unwrap()
}

/// Hand-recorded outbound traffic of cart to reviews: only for the
/// refused push, which no honest mesh sends.
fn record(mesh: &sinew::mesh::Mesh, source: &str, requests: u32) {
    let recorder = mesh.edges().edge(Direction::Outbound, source, "reviews");
    for _ in 0..requests {
        recorder.record(true, Duration::from_millis(1));
    }
}

fn service<'a>(g: &'a Value, name: &str) -> &'a Value {
    g["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name}: {g:#}"))
}

fn success_rate(e: &Value) -> f64 {
    e["success_rate"].as_f64().unwrap()
}

#[tokio::test]
async fn real_requests_reach_the_graph_from_both_sides() {
    let dir = scratch("telemetry-push");
    let cp = start(&dir, TelemetryOptions::default()).await;
    // A real reviews server, registered with the control plane; a real
    // cart client, configured by it; both push their edges.
    let reviews = pushing_mesh(&cp, "reviews", "reviews-1").await;
    let server = serve_reviews(&cp, &reviews).await;
    let cart = pushing_mesh(&cp, "cart", "cart-1").await;
    let client = cart.http_client::<Empty<Bytes>>("reviews");
    let warm = until_reachable(&client).await;
    let mut paths = vec!["/"; 7];
    paths.extend(["/fail", "/busy"]);
    let batch = send(&client, &paths).await;
    assert_eq!(batch.failures, 2, "the server's 500 and 503");
    let sent = Sent {
        requests: warm.requests + batch.requests,
        failures: warm.failures + batch.failures,
    };
    // What reached the server: the warm-up's failures found no endpoint.
    let served = Sent {
        requests: sent.requests - warm.failures,
        failures: batch.failures,
    };

    let g = graph_until(&cp, "the first pushes", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == sent.requests
            && edge(g, "unknown", "reviews", "inbound")["requests"] == served.requests
    })
    .await;
    let out = edge(&g, "cart", "reviews", "outbound");
    assert_eq!(out["failures"], sent.failures, "{g:#}");
    let expected = 1.0 - sent.failures as f64 / sent.requests as f64;
    assert!((success_rate(out) - expected).abs() < 1e-9, "{g:#}");
    let p50 = out["p50_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 25.0, "loopback answers: {g:#}");
    assert!(out["rps"].as_f64().unwrap() > 0.0, "{g:#}");
    // Without mutual TLS the server cannot tell who called: `unknown`.
    let inb = edge(&g, "unknown", "reviews", "inbound");
    assert_eq!(inb["failures"], served.failures, "{g:#}");
    let expected = 1.0 - served.failures as f64 / served.requests as f64;
    assert!((success_rate(inb) - expected).abs() < 1e-9, "{g:#}");
    assert!(edge(&g, "cart", "reviews", "inbound").is_null(), "{g:#}");
    assert_eq!(
        service(&g, "cart")["reporters"][0]["instance"],
        "cart-1",
        "{g:#}"
    );
    let registered = server.local_addr().to_string();
    assert_eq!(
        service(&g, "reviews")["clusters"][0]["endpoints"][0]["address"],
        registered.as_str(),
        "{g:#}"
    );

    // More traffic, slower: the window adds it up, and its tail shows.
    let slow = send(&client, &["/slow"; 5]).await;
    assert_eq!(slow.failures, 0);
    let g = graph_until(&cp, "the next pushes", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == sent.requests + slow.requests
            && edge(g, "unknown", "reviews", "inbound")["requests"]
                == served.requests + slow.requests
    })
    .await;
    let out = edge(&g, "cart", "reviews", "outbound");
    assert_eq!(out["failures"], sent.failures, "{g:#}");
    assert!(out["p99_ms"].as_f64().unwrap() > 25.0, "{g:#}");
    let inb = edge(&g, "unknown", "reviews", "inbound");
    assert!(inb["p99_ms"].as_f64().unwrap() > 25.0, "{g:#}");
    assert_eq!(cp.telemetry().counts().rejected_exports, 0);
    within("the shutdown", server.shutdown()).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An export of `edges` by `service`, as the library writes it.
fn export(
    service: &str,
    edges: &[EdgeStats],
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    sinew::telemetry::push::export_request(service, "test-1", edges, 1, 2)
}

fn stats(source: &str, destination: &str, requests: u32) -> Vec<EdgeStats> {
    let edges = Edges::default();
    let r = edges.edge(Direction::Outbound, source, destination);
    for _ in 0..requests {
        r.record(true, Duration::from_millis(1));
    }
    edges.take()
}

async fn client(cp: &ControlPlane) -> MetricsServiceClient<tonic::transport::Channel> {
    within(
        "an OTLP connection",
        MetricsServiceClient::connect(format!("http://{}", cp.xds_addr())),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn malformed_exports_are_refused_naming_the_field() {
    let dir = scratch("telemetry-malformed");
    let cp = start(
        &dir,
        TelemetryOptions {
            max_export_bytes: 4096,
            ..TelemetryOptions::default()
        },
    )
    .await;
    let mut otlp = client(&cp).await;
    let good = export("cart", &stats("cart", "reviews", 3));

    let refused = |request| {
        let mut otlp = otlp.clone();
        async move {
            within("an OTLP answer", otlp.export(request))
                .await
                .unwrap_err()
        }
    };

    // No service name.
    let mut bad = good.clone();
    bad.resource_metrics[0].resource = None;
    let status = refused(bad).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("resource_metrics[0].resource.attributes[service.name]: missing"),
        "{status:?}"
    );

    // Other bucket bounds.
    let mut bad = good.clone();
    let Some(Data::Histogram(h)) = &mut bad.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("the histogram first");
    };
    h.data_points[0].explicit_bounds.pop();
    let status = refused(bad).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().starts_with(
            "resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points[0].explicit_bounds:"
        ),
        "{status:?}"
    );

    // A latency sum past a day per request (it would overflow the
    // window's totals).
    let mut bad = good.clone();
    let Some(Data::Histogram(h)) = &mut bad.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("the histogram first");
    };
    h.data_points[0].sum = Some(1e13);
    let status = refused(bad).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .ends_with("histogram.data_points[0].sum: must be a non-negative number of seconds, at most a day per request"),
        "{status:?}"
    );

    // Cumulative, not delta.
    let mut bad = good.clone();
    let Some(Data::Histogram(h)) = &mut bad.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("the histogram first");
    };
    h.aggregation_temporality = 2;
    let status = refused(bad).await;
    assert!(
        status.message().ends_with("aggregation_temporality: must be DELTA: the control plane adds up what each export says"),
        "{status:?}"
    );

    // A count that is not its buckets' sum, and a name that is no name.
    let mut bad = good.clone();
    let Some(Data::Histogram(h)) = &mut bad.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        panic!("the histogram first");
    };
    h.data_points[0].count += 1;
    assert!(
        refused(bad)
            .await
            .message()
            .contains("data_points[0].count: is not the sum")
    );
    let bad = export("cart", &stats("cart", "re<script>", 1));
    let status = refused(bad).await;
    assert!(
        status
            .message()
            .contains("attributes[destination]: `re<script>` is not a service name"),
        "{status:?}"
    );

    // Larger than the limit.
    let many: Vec<EdgeStats> = (0..100)
        .flat_map(|i| stats("cart", &format!("service-{i}"), 1))
        .collect();
    let status = refused(export("cart", &many)).await;
    assert!(
        matches!(
            status.code(),
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange
        ),
        "{status:?}"
    );

    // None of it reached the window; the good export does.
    let g = graph(&cp).await;
    assert_eq!(g["edges"], Value::Array(vec![]), "{g:#}");
    assert!(
        g["intake"]["rejected_exports"].as_u64().unwrap() >= 5,
        "{g:#}"
    );
    let answer = within("an OTLP answer", otlp.export(good)).await.unwrap();
    assert!(answer.into_inner().partial_success.is_none());
    assert_eq!(
        edge(&graph(&cp).await, "cart", "reviews", "outbound")["requests"],
        3
    );

    // A service name as xDS spells it, with a port, is one.
    let with_port = export("cart", &stats("cart", "reviews:8080", 1));
    within("an OTLP answer", otlp.export(with_port))
        .await
        .expect("`reviews:8080` is a service name");
    assert_eq!(
        edge(&graph(&cp).await, "cart", "reviews:8080", "outbound")["requests"],
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_window_keeps_a_bounded_number_of_edges() {
    let dir = scratch("telemetry-bounded");
    let cp = start(
        &dir,
        TelemetryOptions {
            max_edges: 3,
            ..TelemetryOptions::default()
        },
    )
    .await;
    let mut otlp = client(&cp).await;
    for i in 0..5 {
        let request = export("cart", &stats("cart", &format!("service-{i}"), 1));
        within("an OTLP answer", otlp.export(request))
            .await
            .unwrap();
    }
    let g = graph(&cp).await;
    let kept: Vec<&str> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["destination"].as_str())
        .collect();
    // The newest three: the oldest went to make room, and were counted.
    assert_eq!(kept, ["service-2", "service-3", "service-4"], "{g:#}");
    assert_eq!(g["intake"]["evicted_edges"], 2, "{g:#}");
    assert_eq!(g["intake"]["edges"], 3, "{g:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_graph_needs_read_access_and_pushes_need_the_mesh_identity() {
    let dir = scratch("telemetry-access");
    std::fs::write(dir.join("mesh.yaml"), telemetry_support::MESH_MTLS).unwrap();
    // The secure defaults: xDS (and so OTLP) over mutual TLS, reads
    // behind a token.
    let cp = ControlPlane::builder()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();

    let (status, _) = admin(&cp, Method::GET, "/v1/graph", None, Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin(&cp, Method::GET, "/v1/graph", Some("wrong"), Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The page is served to anyone, and holds no data.
    let (status, body) = raw_admin(&cp, Method::GET, "/dashboard", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Value::Null, "HTML, not JSON");

    // Plaintext to the mutual TLS port: no export gets through.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        MetricsServiceClient::connect(format!("http://{}", cp.xds_addr())),
    )
    .await;
    if let Ok(Ok(mut otlp)) = plain {
        let request = export("cart", &stats("cart", "reviews", 1));
        assert!(
            within("an OTLP answer", otlp.export(request))
                .await
                .is_err()
        );
    }

    // With certificates of the mesh, each as itself: accepted. Real
    // requests over mutual TLS, so the server names its caller.
    let cart = telemetry_support::identity(&cp, "shop", "cart").await;
    let reviews_identity = telemetry_support::identity(&cp, "shop", "reviews").await;
    let reviews =
        telemetry_support::pushing_mesh_tls(&cp, reviews_identity, "reviews", "reviews-1").await;
    let server = serve_reviews(&cp, &reviews).await;
    let mesh = telemetry_support::pushing_mesh_tls(&cp, cart.clone(), "cart", "cart-1").await;
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let warm = until_reachable(&client).await;
    let batch = send(&client, &["/", "/", "/busy"]).await;
    assert_eq!(batch.failures, 1, "the server's 503");
    let sent = warm.requests + batch.requests;
    let served = sent - warm.failures;
    let g = graph_until(&cp, "the pushes over mutual TLS", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == sent
            && edge(g, "cart", "reviews", "inbound")["requests"] == served
    })
    .await;
    assert_eq!(
        edge(&g, "cart", "reviews", "inbound")["failures"],
        1,
        "{g:#}"
    );
    assert!(edge(&g, "unknown", "reviews", "inbound").is_null(), "{g:#}");
    within("the shutdown", server.shutdown()).await.unwrap();
    drop((client, mesh, reviews));
    assert_eq!(cp.telemetry().counts().rejected_exports, 0);

    // The same certificate passing for another service: refused whole.
    let liar = telemetry_support::pushing_mesh_tls(&cp, cart, "payments", "payments-1").await;
    record(&liar, "payments", 1);
    graph_until(&cp, "the refused push", |g| {
        g["intake"]["rejected_exports"].as_u64() >= Some(1)
    })
    .await;
    let g = graph(&cp).await;
    assert!(
        edge(&g, "payments", "reviews", "outbound").is_null(),
        "{g:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
