//! The discovery client against a real ADS server on loopback (built here
//! on envoy-types), driving real hyper servers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod bad_input;
mod interop;
mod rules;
mod server;
#[path = "../resilience/support.rs"]
mod support;

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use http::{Request, StatusCode};
use http_body_util::Empty;
use server::{Ads, CLUSTER, ENDPOINTS, LISTENER, ROUTE};
use sinew::mesh::{Mesh, RouteError};
use sinew::xds::{Kind, ResourceState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{body_text, named, send_all, serve_at};
use tower::ServiceExt;

/// The four resources for service `reviews`: Listener -> RDS `reviews` ->
/// the given clusters -> their assignments.
fn reviews(ads: &Ads, clusters: &[(&str, &[SocketAddr])]) {
    ads.update(|r| {
        r.put(LISTENER, "reviews", server::listener("reviews", "reviews"));
        let split: Vec<(&str, u32)> = clusters.iter().map(|(c, _)| (*c, 1)).collect();
        r.put(ROUTE, "reviews", server::route_config("reviews", &split));
        for (cluster, endpoints) in clusters {
            r.put(
                CLUSTER,
                cluster,
                server::eds_cluster(cluster, LbPolicy::RoundRobin),
            );
            r.put(ENDPOINTS, cluster, server::assignment(cluster, endpoints));
        }
    });
}

async fn get(
    client: &sinew::mesh::HttpClient<Empty<Bytes>>,
) -> Result<String, sinew::error::BoxError> {
    let request = Request::get("http://reviews/").body(Empty::new()).unwrap();
    let response = client.clone().oneshot(request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(body_text(response.into_body()).await)
}

/// A mesh on the control plane at `url`, and its client for `reviews`.
async fn reviews_client(url: &str) -> (Mesh, sinew::mesh::HttpClient<Empty<Bytes>>) {
    let mesh = Mesh::builder().control_plane(url).build().await.unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    (mesh, client)
}

fn state_of(mesh: &Mesh, kind: Kind, name: &str) -> Option<ResourceState> {
    mesh.xds_status()?
        .resources
        .into_iter()
        .find(|r| r.kind == kind && r.name == name)
        .map(|r| r.state)
}

#[tokio::test]
async fn the_initial_configuration_routes_requests() {
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr, b.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..4 {
        seen.push(get(&client).await.unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        ["a", "a", "b", "b"],
        "round robin over both endpoints"
    );
    for (kind, name) in [
        (Kind::Listener, "reviews"),
        (Kind::Route, "reviews"),
        (Kind::Cluster, "reviews-v1"),
        (Kind::Endpoints, "reviews-v1"),
    ] {
        assert_eq!(
            state_of(&mesh, kind, name),
            Some(ResourceState::Acked),
            "{kind:?} {name}"
        );
    }
    // Every response was ACKed with its version and nonce.
    let acks = ads.received();
    assert!(
        acks.iter().any(|r| r.type_url == ENDPOINTS
            && r.version_info == "1"
            && !r.response_nonce.is_empty())
    );
    assert!(ads.nacks().is_empty());
    let node = acks[0].node.clone().unwrap();
    assert_eq!(node.user_agent_name, "sinew");
    assert!(!node.id.is_empty());
}

#[tokio::test]
async fn endpoint_changes_are_followed_under_load_without_a_failed_request() {
    let (a, served_a) = named("a").await;
    let (b, _) = named("b").await;
    let (c, served_c) = named("c").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr, b.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    get(&client).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(send_all(
        client.clone(),
        "http://reviews/",
        3_000,
        16,
        sent.clone(),
    ));
    while sent.load(Ordering::SeqCst) < 1_000 {
        tokio::task::yield_now().await;
    }
    let version = mesh.config_status().version();
    ads.update(|r| {
        r.put(
            ENDPOINTS,
            "reviews-v1",
            server::assignment("reviews-v1", &[b.addr, c.addr]),
        )
    });
    while mesh.config_status().version() == version {
        tokio::task::yield_now().await;
    }
    let a_at_change = served_a.load(Ordering::SeqCst);
    let seen = running.await.unwrap();
    assert_eq!(
        seen.values().sum::<usize>(),
        3_000,
        "every request succeeded"
    );
    assert!(
        served_c.load(Ordering::SeqCst) > 100,
        "the new endpoint took traffic"
    );
    assert!(served_a.load(Ordering::SeqCst) <= a_at_change + 16);
}

#[tokio::test]
async fn a_new_cluster_takes_traffic_only_once_its_endpoints_arrive() {
    let (a, _) = named("a").await;
    let (b, served_b) = named("b").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    assert_eq!(get(&client).await.unwrap(), "a");

    // The route now splits over v1 and a new v2, whose assignment the
    // control plane has not published yet.
    ads.update(|r| {
        r.put(
            ROUTE,
            "reviews",
            server::route_config("reviews", &[("reviews-v1", 1), ("reviews-v2", 1)]),
        );
        r.put(
            CLUSTER,
            "reviews-v2",
            server::eds_cluster("reviews-v2", LbPolicy::RoundRobin),
        );
    });
    while state_of(&mesh, Kind::Cluster, "reviews-v2") != Some(ResourceState::Acked) {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        state_of(&mesh, Kind::Endpoints, "reviews-v2"),
        Some(ResourceState::Requested)
    );
    // Make before break: the earlier routes stay in force meanwhile.
    for _ in 0..100 {
        assert_eq!(get(&client).await.unwrap(), "a");
    }

    ads.update(|r| {
        r.put(
            ENDPOINTS,
            "reviews-v2",
            server::assignment("reviews-v2", &[b.addr]),
        )
    });
    while served_b.load(Ordering::SeqCst) == 0 {
        get(&client).await.unwrap();
    }
}

#[tokio::test]
async fn an_invalid_resource_is_nacked_by_name_and_field_while_its_siblings_apply() {
    let (a, _) = named("a").await;
    let (b, _) = named("b").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    assert_eq!(get(&client).await.unwrap(), "a");

    // One response: the route now splits over v1 and v2; v2 is valid, and
    // v1 changes to a policy Sinew refuses.
    ads.update(|r| {
        r.put(
            ROUTE,
            "reviews",
            server::route_config("reviews", &[("reviews-v1", 1), ("reviews-v2", 1)]),
        );
        r.put(
            CLUSTER,
            "reviews-v1",
            server::eds_cluster("reviews-v1", LbPolicy::ClusterProvided),
        );
        r.put(
            CLUSTER,
            "reviews-v2",
            server::eds_cluster("reviews-v2", LbPolicy::RoundRobin),
        );
        r.put(
            ENDPOINTS,
            "reviews-v2",
            server::assignment("reviews-v2", &[b.addr]),
        );
    });
    while ads.nacks().is_empty() {
        tokio::task::yield_now().await;
    }
    let nack = &ads.nacks()[0];
    assert_eq!(nack.type_url, CLUSTER);
    assert_eq!(
        nack.error_detail.as_ref().map(|e| e.message.as_str()),
        Some("Cluster reviews-v1: lb_policy: CLUSTER_PROVIDED is not supported")
    );
    assert_eq!(nack.version_info, "1", "a NACK carries the version in use");
    // The valid sibling applies and traffic reaches both clusters; the
    // rejected one keeps its last good value.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        if let Ok(name) = get(&client).await {
            seen.insert(name);
        }
        if seen.len() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(
        state_of(&mesh, Kind::Cluster, "reviews-v1"),
        Some(ResourceState::Nacked)
    );
    assert_eq!(
        state_of(&mesh, Kind::Cluster, "reviews-v2"),
        Some(ResourceState::Acked)
    );
    let status = mesh.xds_status().unwrap();
    let v1 = status
        .resources
        .iter()
        .find(|r| r.name == "reviews-v1" && r.kind == Kind::Cluster)
        .unwrap();
    assert_eq!(
        v1.error.as_deref(),
        Some("lb_policy: CLUSTER_PROVIDED is not supported")
    );
    assert!(v1.has_value);
}

#[tokio::test]
async fn a_control_plane_restart_mid_load_fails_no_request() {
    let (a, _) = named("a").await;
    let (b, served_b) = named("b").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let at = control.addr;
    let (mesh, client) = reviews_client(&control.url("")).await;
    get(&client).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(send_all(
        client.clone(),
        "http://reviews/",
        4_000,
        8,
        sent.clone(),
    ));
    while sent.load(Ordering::SeqCst) < 500 {
        tokio::task::yield_now().await;
    }
    drop(control);
    while !matches!(
        mesh.xds_status().map(|s| s.connection),
        Some(sinew::xds::ConnectionState::Disconnected { .. })
    ) {
        tokio::task::yield_now().await;
    }
    // Requests go on with the last good configuration; then the control
    // plane comes back (same port) with a new endpoint.
    ads.update(|r| {
        r.put(
            ENDPOINTS,
            "reviews-v1",
            server::assignment("reviews-v1", &[a.addr, b.addr]),
        )
    });
    let _back = serve_at(at, envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer::new(ads.clone())).await;
    let seen = running.await.unwrap();
    assert_eq!(
        seen.values().sum::<usize>(),
        4_000,
        "every request succeeded"
    );
    // The reconnected client follows the new endpoint.
    while served_b.load(Ordering::SeqCst) == 0 {
        get(&client).await.unwrap();
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn without_a_control_plane_or_a_cache_requests_fail_with_the_reason() {
    let closed = support::closed_port().await;
    let mesh = Mesh::builder()
        .control_plane(&format!("http://{closed}"))
        .initial_fetch_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let err = get(&client).await.unwrap_err();
    let route = err.downcast_ref::<RouteError>().cloned();
    let Some(RouteError::Undiscovered { service, reason }) = route else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(service, "reviews");
    assert!(
        reason.contains("300ms") && reason.contains("cannot connect"),
        "{reason}"
    );
}

#[tokio::test]
async fn with_a_cache_a_start_without_the_control_plane_serves_the_last_configuration() {
    let (a, _) = named("a").await;
    let dir = std::env::temp_dir().join(format!("sinew-xds-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cache = dir.join("mesh.json");
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let at = control.addr;
    {
        let first = Mesh::builder()
            .control_plane(&control.url(""))
            .xds_cache(&cache)
            .build()
            .await
            .unwrap();
        let client = first.http_client::<Empty<Bytes>>("reviews");
        assert_eq!(get(&client).await.unwrap(), "a");
    }
    drop(control);
    assert!(cache.exists(), "the configuration in force was written");

    let second = Mesh::builder()
        .control_plane(&format!("http://{at}"))
        .xds_cache(&cache)
        .initial_fetch_timeout(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    let client = second.http_client::<Empty<Bytes>>("reviews");
    assert_eq!(get(&client).await.unwrap(), "a", "served from the cache");
    let status = second.xds_status().unwrap();
    assert!(status.from_cache.is_some());
    assert!(matches!(
        status.connection,
        sinew::xds::ConnectionState::Disconnected { .. }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A metrics recorder that keeps every counter and gauge for reading,
/// installed once for every test here; each test reads the series
/// labelled with its own control plane.
struct Recorded(
    metrics_util::registry::Registry<metrics::Key, metrics_util::registry::AtomicStorage>,
);

impl Default for Recorded {
    fn default() -> Self {
        Self(metrics_util::registry::Registry::atomic())
    }
}

impl metrics::Recorder for &'static Recorded {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.0
            .get_or_create_counter(key, |c| metrics::Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.0
            .get_or_create_gauge(key, |g| metrics::Gauge::from_arc(g.clone()))
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        self.0
            .get_or_create_histogram(key, |h| metrics::Histogram::from_arc(h.clone()))
    }
}

fn recorded() -> &'static Recorded {
    static RECORDED: std::sync::OnceLock<&'static Recorded> = std::sync::OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorded: &'static Recorded = Box::leak(Box::default());
        metrics::set_global_recorder(recorded).unwrap();
        recorded
    })
}

/// The value of counter or gauge `name` of `control_plane` with the given
/// labels.
fn metric(control_plane: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches = |key: &metrics::Key| {
        let has = |k: &str, v: &str| key.labels().any(|l| l.key() == k && l.value() == v);
        key.name() == name
            && has("control_plane", control_plane)
            && labels.iter().all(|(k, v)| has(k, v))
    };
    let registry = &recorded().0;
    let counter = registry
        .get_counter_handles()
        .into_iter()
        .find(|(key, _)| matches(key))
        .map(|(_, c)| c.load(Ordering::SeqCst) as f64);
    counter.or_else(|| {
        registry
            .get_gauge_handles()
            .into_iter()
            .find(|(key, _)| matches(key))
            .map(|(_, g)| f64::from_bits(g.load(Ordering::SeqCst)))
    })
}

#[tokio::test]
async fn the_discovery_client_reports_its_state_as_metrics() {
    recorded();
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let cp = control.url("");
    let (_mesh, client) = reviews_client(&cp).await;
    get(&client).await.unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| metric(&cp, name, labels);
    assert_eq!(value("sinew_xds_connected", &[]), Some(1.0));
    assert_eq!(value("sinew_xds_from_cache", &[]), Some(0.0));
    for kind in [
        "Listener",
        "RouteConfiguration",
        "Cluster",
        "ClusterLoadAssignment",
    ] {
        let acked = [("type", kind), ("state", "acked")];
        assert_eq!(value("sinew_xds_resources", &acked), Some(1.0), "{kind}");
        let ack = [("type", kind), ("result", "ack")];
        assert!(
            value("sinew_xds_responses_total", &ack) >= Some(1.0),
            "{kind}"
        );
    }

    // A rejected cluster: a NACK counted, the cluster counted as NACKed.
    ads.update(|r| {
        r.put(
            CLUSTER,
            "reviews-v1",
            server::eds_cluster("reviews-v1", LbPolicy::ClusterProvided),
        )
    });
    let nacked = [("type", "Cluster"), ("state", "nacked")];
    while value("sinew_xds_resources", &nacked) != Some(1.0) {
        tokio::task::yield_now().await;
    }
    let nack = [("type", "Cluster"), ("result", "nack")];
    assert_eq!(value("sinew_xds_responses_total", &nack), Some(1.0));

    // The control plane goes away: the stream's failure is counted.
    drop(control);
    while value("sinew_xds_stream_failures_total", &[]).is_none() {
        tokio::task::yield_now().await;
    }
    assert_eq!(value("sinew_xds_connected", &[]), Some(0.0));
}
