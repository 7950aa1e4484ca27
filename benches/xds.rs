//! How fast discovery changes reach requests, through a real ADS server on
//! loopback (the tests' server, on envoy-types):
//! `cargo bench --bench xds`. Prints:
//!
//! - `eds_change/1000`: a one-endpoint change to a 1,000-endpoint cluster,
//!   from the server publishing it until requests use it (p50, p99 over 300
//!   changes); an upper bound on the time from its arrival, since it also
//!   counts the server's encoding and the loopback hop;
//! - `cla/100000`: a 100,000-endpoint ClusterLoadAssignment replacing
//!   another (every endpoint different), from publication until in force:
//!   decoded, translated, validated, diffed and applied.

#![allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

#[path = "../tests/xds/server.rs"]
mod server;
#[path = "../tests/resilience/support.rs"]
mod support;

use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
use server::{Ads, CLUSTER, ENDPOINTS, LISTENER, ROUTE};
use sinew::mesh::Mesh;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addresses(n: usize, port: u16) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], port)))
        .collect()
}

/// Publishes `endpoints` and waits for the mesh to take them in. Returns
/// the time from publication, and the client's own time from the
/// response's arrival to in force.
async fn publish(ads: &Ads, mesh: &Mesh, endpoints: &[SocketAddr]) -> (Duration, Duration) {
    let any = server::assignment("big", endpoints);
    let mut versions = mesh.versions();
    versions.mark_unchanged();
    let responses = mesh.xds_status().map_or(0, |s| s.responses);
    let started = Instant::now();
    ads.update(|r| r.put(ENDPOINTS, "big", any));
    loop {
        versions.changed().await.unwrap();
        let count = mesh.snapshot().cluster("big").map(|c| c.endpoints().len());
        if count == Some(endpoints.len()) {
            let total = started.elapsed();
            // The status is written just after the change is in force.
            let own = loop {
                match mesh.xds_status() {
                    Some(s) if s.responses > responses => break s.last_apply.unwrap(),
                    _ => tokio::task::yield_now().await,
                }
            };
            return (total, own);
        }
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is read.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ads = Ads::default();
        let base = addresses(1_000, 8080);
        ads.update(|r| {
            r.put(LISTENER, "svc", server::listener("svc", "svc"));
            r.put(ROUTE, "svc", server::route_config("svc", &[("big", 1)]));
            r.put(CLUSTER, "big", server::eds_cluster("big", LbPolicy::RoundRobin));
            r.put(ENDPOINTS, "big", server::assignment("big", &base));
        });
        let control = ads.serve().await;
        let mesh = Mesh::builder()
            .control_plane(&control.url(""))
            .build()
            .await
            .unwrap();
        let _client = mesh.http_client::<http_body_util::Empty<bytes::Bytes>>("svc");
        while mesh.snapshot().cluster("big").map(|c| c.endpoints().len()) != Some(1_000) {
            mesh.versions().changed().await.unwrap();
        }

        let mut samples = Vec::new();
        let mut own = Vec::new();
        let mut grown = base.clone();
        grown.push(SocketAddr::from(([10, 255, 0, 1], 8080)));
        for i in 0..300 {
            let set = if i % 2 == 0 { &grown } else { &base };
            let (total, mine) = publish(&ads, &mesh, set).await;
            samples.push(total);
            own.push(mine);
        }
        println!(
            "eds_change/1000 (300 one-endpoint changes): arrival to in force p50 {:?}, p99 {:?}, max {:?}; publication to in force p50 {:?}, p99 {:?}",
            percentile(&mut own, 0.5),
            percentile(&mut own, 0.99),
            percentile(&mut own, 1.0),
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.99),
        );

        let mut big = Vec::new();
        let mut big_own = Vec::new();
        for i in 0..6 {
            let set = addresses(100_000, 9000 + (i % 2) as u16);
            let (total, mine) = publish(&ads, &mesh, &set).await;
            big.push(total);
            big_own.push(mine);
        }
        println!(
            "cla/100000 (6 assignments, each replacing every endpoint): arrival to in force median {:?}, max {:?}; publication to in force median {:?}, max {:?}",
            percentile(&mut big_own, 0.5),
            percentile(&mut big_own, 1.0),
            percentile(&mut big, 0.5),
            percentile(&mut big, 1.0),
        );
    });
}
