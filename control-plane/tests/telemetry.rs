//! Telemetry to the control plane, through real sockets: a real Sinew
//! mesh pushes its edges as OTLP on the xDS port and `/v1/graph` shows
//! them; malformed exports are refused naming the field; the window keeps
//! a bounded number of edges; over mutual TLS a workload reports only as
//! itself; the graph needs the admin API's read access.

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

use common::{TOKEN, admin, raw_admin, scratch, within};
use http::{Method, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde_json::Value;
use sinew::telemetry::edges::{Direction, EdgeStats, Edges};
use sinew_control_plane::ControlPlane;
use sinew_control_plane::telemetry::TelemetryOptions;
use std::time::Duration;
use telemetry_support::{MESH, edge, graph, graph_until, pushing_mesh};

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

fn record(mesh: &sinew::mesh::Mesh, ok: u32, failed: u32, latency: Duration) {
    let recorder = mesh.edges().edge(Direction::Outbound, "cart", "reviews");
    for _ in 0..ok {
        recorder.record(true, latency);
    }
    for _ in 0..failed {
        recorder.record(false, latency);
    }
}

#[tokio::test]
async fn a_mesh_pushes_its_edges_and_the_graph_shows_them() {
    let dir = scratch("telemetry-push");
    let cp = start(&dir, TelemetryOptions::default()).await;
    let mesh = pushing_mesh(&cp, "cart", "cart-1").await;
    record(&mesh, 8, 2, Duration::from_micros(800));
    let g = graph_until(&cp, "the first push", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == 10
    })
    .await;
    let e = edge(&g, "cart", "reviews", "outbound");
    assert_eq!(e["failures"], 2, "{g:#}");
    assert!(
        (e["success_rate"].as_f64().unwrap() - 0.8).abs() < 1e-9,
        "{g:#}"
    );
    let p50 = e["p50_ms"].as_f64().unwrap();
    assert!(p50 > 0.5 && p50 <= 1.0, "{g:#}");
    assert!(e["rps"].as_f64().unwrap() > 0.0, "{g:#}");
    assert!(edge(&g, "cart", "reviews", "inbound").is_null());
    let names: Vec<&str> = g["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"cart") && names.contains(&"reviews"),
        "{names:?}"
    );
    let cart = g["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cart")
        .unwrap();
    assert_eq!(cart["reporters"][0]["instance"], "cart-1", "{cart:#}");
    let reviews = g["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "reviews")
        .unwrap();
    assert_eq!(
        reviews["clusters"][0]["endpoints"][0]["address"], "127.0.0.1:9",
        "{reviews:#}"
    );

    // More traffic: the window adds it up.
    record(&mesh, 5, 0, Duration::from_millis(40));
    let g = graph_until(&cp, "the second push", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == 15
    })
    .await;
    let e = edge(&g, "cart", "reviews", "outbound");
    assert_eq!(e["failures"], 2, "{g:#}");
    assert!(e["p99_ms"].as_f64().unwrap() > 25.0, "{g:#}");
    assert_eq!(cp.telemetry().counts().rejected_exports, 0);
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
    std::fs::write(dir.join("mesh.yaml"), MESH).unwrap();
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

    // With a certificate of the mesh, as itself: accepted.
    let cart = telemetry_support::identity(&cp, "shop", "cart").await;
    let mesh = telemetry_support::pushing_mesh_tls(&cp, cart.clone(), "cart", "cart-1").await;
    record(&mesh, 4, 0, Duration::from_millis(2));
    graph_until(&cp, "the push over mutual TLS", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == 4
    })
    .await;
    drop(mesh);
    assert_eq!(cp.telemetry().counts().rejected_exports, 0);

    // The same certificate passing for another service: refused whole.
    let liar = telemetry_support::pushing_mesh_tls(&cp, cart, "payments", "payments-1").await;
    liar.edges()
        .edge(Direction::Outbound, "payments", "reviews")
        .record(true, Duration::from_millis(1));
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
