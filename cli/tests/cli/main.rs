//! The `sinew` binary, run as a person runs it: its flags, its output, and
//! the commands against real servers on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

#[path = "../../../tests/xds/server.rs"]
mod server;
#[path = "../../../tests/resilience/support.rs"]
mod support;

mod args;
mod body_limit;
mod commands;
mod output;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster::LbPolicy};
use server::{Ads, CLUSTER, ENDPOINTS, LISTENER, ROUTE};
use std::net::SocketAddr;
use std::time::Duration;

/// The longest any one run of the binary may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs `sinew` with `args`: its exit code, stdout and stderr.
async fn sinew(args: &[&str]) -> (i32, String, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sinew {args:?} still running after {DEADLINE:?}"))
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An ADS server with one service, `name`, of one round-robin cluster of
/// `endpoints`.
async fn control_plane(name: &str, endpoints: &[SocketAddr]) -> (Ads, support::Server) {
    serve_one(name, endpoints, false).await
}

/// As [`control_plane`], with the cluster marked HTTP/2 (for gRPC).
async fn control_plane_http2(name: &str, endpoints: &[SocketAddr]) -> (Ads, support::Server) {
    serve_one(name, endpoints, true).await
}

#[allow(deprecated)] // `http2_protocol_options`: still how control planes mark HTTP/2.
async fn serve_one(name: &str, endpoints: &[SocketAddr], http2: bool) -> (Ads, support::Server) {
    use prost::Message;
    let ads = Ads::default();
    let cluster_name = format!("{name}-v1");
    let mut cluster = Cluster::decode(
        server::eds_cluster(&cluster_name, LbPolicy::RoundRobin)
            .value
            .as_slice(),
    )
    .unwrap();
    if http2 {
        cluster.http2_protocol_options = Some(Default::default());
    }
    ads.update(|r| {
        r.put(LISTENER, name, server::listener(name, name));
        r.put(
            ROUTE,
            name,
            server::route_config(name, &[(&cluster_name, 1)]),
        );
        r.put(CLUSTER, &cluster_name, server::any(CLUSTER, &cluster));
        r.put(
            ENDPOINTS,
            &cluster_name,
            server::assignment(&cluster_name, endpoints),
        );
    });
    let server = ads.serve().await;
    (ads, server)
}
