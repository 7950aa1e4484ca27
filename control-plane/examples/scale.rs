//! The control plane under load: 1,000 ADS subscribers (simulated here, one
//! connection each) of a mesh with 10,000 endpoints, and endpoint changes
//! made through the registration API. Reports how long each change takes
//! to reach every subscriber, and the control plane's resident memory.
//!
//! ```sh
//! cargo run --release -p sinew-control-plane --example scale
//! SINEW_SCALE_SUBSCRIBERS=2000 SINEW_SCALE_CHANGES=50 cargo run --release -p sinew-control-plane --example scale
//! ```
//!
//! The control plane runs in a child process (this program, started again
//! with `serve`), so that its memory is measured alone. The mesh: 10
//! services, each with a cluster of 1,000 endpoints. Every subscriber
//! watches service 0 and one other (as a client calling two services
//! would), subscribing to their Listeners, Clusters and assignments and
//! ACKing every response. Each change registers one more endpoint in
//! cluster 0; it counts as arrived at a subscriber when that subscriber
//! receives an assignment of the new version.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use sinew::config::{
    ClusterConfig, EndpointConfig, LbPolicy, Locality, MeshConfig, RouteConfig, ServiceConfig,
    WeightedCluster,
};
use sinew_control_plane::ControlPlane;
use sinew_control_plane::generate::{CLUSTER, ENDPOINTS, LISTENER};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

const SERVICES: usize = 10;
const PER_CLUSTER: usize = 1_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mesh() -> MeshConfig {
    let mut mesh = MeshConfig::default();
    for s in 0..SERVICES {
        let name = format!("svc-{s}");
        let endpoints = (0..PER_CLUSTER)
            .map(|e| EndpointConfig {
                locality: Locality {
                    region: "r".to_owned(),
                    zone: format!("z{}", e % 3),
                },
                ..EndpointConfig::new(format!("10.{s}.{}.{}:8080", e / 250, e % 250))
            })
            .collect();
        mesh.clusters.insert(
            name.clone(),
            ClusterConfig {
                lb: LbPolicy::RoundRobin,
                endpoints,
                ..ClusterConfig::default()
            },
        );
        mesh.services.insert(
            name.clone(),
            ServiceConfig {
                routes: vec![RouteConfig {
                    split: vec![WeightedCluster {
                        cluster: name,
                        weight: 1,
                    }],
                    ..RouteConfig::default()
                }],
                inbound: None,
                debug_header: false,
            },
        );
    }
    mesh
}

/// The child: serves until its stdin closes.
async fn serve() {
    let cp = ControlPlane::builder()
        .insecure_xds()
        .allow_unauthenticated_reads()
        .mesh(mesh())
        .allow_unauthenticated_writes()
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    println!("ready {} {}", cp.xds_addr(), cp.admin_addr());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {}
}

/// The highest assignment version a subscriber has received, and when.
#[derive(Default)]
struct Seen {
    version: AtomicU64,
    /// Nanoseconds since the program's epoch.
    at: AtomicU64,
}

async fn subscriber(xds: SocketAddr, i: usize, seen: Arc<Seen>, epoch: Instant) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{xds}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let (requests, outbound) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let names = vec![
        "svc-0".to_owned(),
        format!("svc-{}", 1 + i % (SERVICES - 1)),
    ];
    let node = Node {
        id: format!("scale-{i}"),
        user_agent_name: "scale".to_owned(),
        ..Node::default()
    };
    for type_url in [LISTENER, CLUSTER, ENDPOINTS] {
        requests
            .send(DiscoveryRequest {
                node: Some(node.clone()),
                type_url: type_url.to_owned(),
                resource_names: names.clone(),
                ..DiscoveryRequest::default()
            })
            .unwrap();
    }
    let outbound = futures_util::stream::unfold(outbound, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let mut inbound = client
        .stream_aggregated_resources(outbound)
        .await
        .unwrap()
        .into_inner();
    while let Ok(Some(response)) = inbound.message().await {
        if response.type_url == ENDPOINTS {
            let version: u64 = response.version_info.parse().unwrap_or(0);
            if version > seen.version.load(Ordering::Acquire) {
                seen.at
                    .store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
                seen.version.store(version, Ordering::Release);
            }
        }
        let _ = requests.send(DiscoveryRequest {
            type_url: response.type_url.clone(),
            version_info: response.version_info.clone(),
            response_nonce: response.nonce.clone(),
            resource_names: names.clone(),
            ..DiscoveryRequest::default()
        });
    }
}

fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn register(admin: SocketAddr, n: usize) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let body = format!(
        r#"{{"name":"svc-0","address":"10.200.{}.{}:8080","ttl_seconds":3600}}"#,
        n / 250,
        n % 250
    );
    let request = http::Request::post(format!("http://{admin}/v1/registrations"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::CREATED);
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn drive() {
    let subscribers = env("SINEW_SCALE_SUBSCRIBERS", 1_000);
    let changes = env("SINEW_SCALE_CHANGES", 20);
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .arg("serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next_line().await.unwrap().unwrap();
    let mut words = ready.split_whitespace().skip(1);
    let xds: SocketAddr = words.next().unwrap().parse().unwrap();
    let admin: SocketAddr = words.next().unwrap().parse().unwrap();
    let (rss, _) = memory_kib(pid);
    println!(
        "control plane: {SERVICES} services, {} endpoints; resident {} MiB before subscribers",
        SERVICES * PER_CLUSTER,
        rss / 1024
    );

    let epoch = Instant::now();
    let seen: Vec<Arc<Seen>> = (0..subscribers).map(|_| Arc::default()).collect();
    let started = Instant::now();
    for (i, s) in seen.iter().enumerate() {
        tokio::spawn(subscriber(xds, i, s.clone(), epoch));
    }
    while seen.iter().any(|s| s.version.load(Ordering::Acquire) == 0) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (rss, hwm) = memory_kib(pid);
    println!(
        "{subscribers} subscribers synced in {:?}; resident {} MiB (peak {} MiB)",
        started.elapsed(),
        rss / 1024,
        hwm / 1024
    );

    let mut latencies = Vec::with_capacity(subscribers * changes);
    let mut slowest = Vec::with_capacity(changes);
    for n in 0..changes {
        let before: Vec<u64> = seen
            .iter()
            .map(|s| s.version.load(Ordering::Acquire))
            .collect();
        let sent = epoch.elapsed();
        register(admin, n).await;
        // Polls the subscribers' slots; the latencies come from the times
        // they recorded on arrival, not from this loop.
        while seen
            .iter()
            .zip(&before)
            .any(|(s, b)| s.version.load(Ordering::Acquire) <= *b)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut worst = Duration::ZERO;
        for s in &seen {
            let at = Duration::from_nanos(s.at.load(Ordering::Acquire));
            let latency = at.saturating_sub(sent);
            worst = worst.max(latency);
            latencies.push(latency);
        }
        slowest.push(worst);
    }
    latencies.sort();
    slowest.sort();
    let (rss, hwm) = memory_kib(pid);
    println!(
        "{changes} endpoint changes, each to all {subscribers} subscribers: arrival p50 {:?}, p99 {:?}, max {:?}; slowest subscriber per change: median {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        percentile(&slowest, 0.5),
        slowest.last().copied().unwrap_or_default(),
    );
    println!(
        "control plane resident memory: {} MiB now, peak {} MiB",
        rss / 1024,
        hwm / 1024
    );
    drop(child);
}

#[tokio::main]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        serve().await;
    } else {
        drive().await;
    }
}
