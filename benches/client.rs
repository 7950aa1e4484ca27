//! What the mesh client adds to a request over a bare hyper client, both
//! against the same loopback server: `cargo bench --bench client`
//! (criterion group `client`, ids `bare_hyper` and `sinew_default`).
//!
//! Loopback round trips on a small shared VM drift by more than the
//! difference measured, between two criterion runs made a few seconds
//! apart. `SINEW_BENCH_PAIRED=<rounds> cargo bench --bench client` instead
//! alternates the two clients in rounds of 2,000 requests each and prints
//! the median over rounds of the per-request difference, which drift
//! affects far less.
//!
//! `SINEW_BENCH_SATURATION=<requests> cargo bench --bench client` keeps 64
//! requests in flight through each client in turn (three rounds each,
//! alternating) and prints the process's CPU time per request (user +
//! system, client and server together, read from `/proc/self/stat`) and
//! the throughput: what a latency measurement hides in idle time.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sinew::config::MeshConfig;
use sinew::mesh::Mesh;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;
use tower::ServiceExt;

async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn client(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = runtime.block_on(server());
    // The same connector settings as the mesh client's.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let bare = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let config = MeshConfig::from_yaml(&format!(
        "services:\n  echo:\n    routes: [{{ split: [{{ cluster: echo }}] }}]\nclusters:\n  echo:\n    endpoints: [{{ address: \"{addr}\" }}]\n"
    ))
    .unwrap();
    let mesh = runtime
        .block_on(Mesh::builder().config(config).build())
        .unwrap();
    let sinew = mesh.http_client::<Empty<Bytes>>("echo");
    let url = format!("http://{addr}/");

    if let Some(rounds) = std::env::var("SINEW_BENCH_PAIRED")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    {
        const PER_ROUND: u32 = 2_000;
        let mut differences: Vec<f64> = Vec::with_capacity(rounds);
        let mut bare_times = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let (bare_time, sinew_time) = runtime.block_on(async {
                let time_bare = || async {
                    let started = Instant::now();
                    for _ in 0..PER_ROUND {
                        let request = Request::get(&url).body(Empty::new()).unwrap();
                        let response = bare.request(request).await.unwrap();
                        response.into_body().collect().await.unwrap();
                    }
                    started.elapsed() / PER_ROUND
                };
                let time_sinew = || async {
                    let started = Instant::now();
                    for _ in 0..PER_ROUND {
                        let request = Request::get("http://echo/").body(Empty::new()).unwrap();
                        let response = sinew.clone().oneshot(request).await.unwrap();
                        response.into_body().collect().await.unwrap();
                    }
                    started.elapsed() / PER_ROUND
                };
                // Alternate which goes first, so that neither always
                // follows the other.
                if round % 2 == 0 {
                    let b = time_bare().await;
                    (b, time_sinew().await)
                } else {
                    let s = time_sinew().await;
                    (time_bare().await, s)
                }
            });
            bare_times.push(bare_time.as_secs_f64() * 1e6);
            differences.push((sinew_time.as_secs_f64() - bare_time.as_secs_f64()) * 1e6);
        }
        differences.sort_by(f64::total_cmp);
        bare_times.sort_by(f64::total_cmp);
        #[allow(clippy::print_stdout)]
        {
            println!(
                "client paired over {rounds} rounds of {PER_ROUND}: bare_hyper median {:.1} µs; sinew_default adds median {:+.2} µs (quartiles {:+.2} / {:+.2})",
                bare_times[rounds / 2],
                differences[rounds / 2],
                differences[rounds / 4],
                differences[rounds * 3 / 4],
            );
        }
        return;
    }

    if let Some(total) = std::env::var("SINEW_BENCH_SATURATION")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    {
        let bare = bare.clone();
        let url = url.clone();
        let send_bare = move || {
            let bare = bare.clone();
            let request = Request::get(&url).body(Empty::new()).unwrap();
            async move {
                let response = bare.request(request).await.unwrap();
                response.into_body().collect().await.unwrap();
            }
        };
        let send_sinew = move || {
            let sinew = sinew.clone();
            let request = Request::get("http://echo/").body(Empty::new()).unwrap();
            async move {
                let response = sinew.oneshot(request).await.unwrap();
                response.into_body().collect().await.unwrap();
            }
        };
        for round in 0..6 {
            let (name, (cpu, wall)) = if round % 2 == 0 {
                (
                    "bare_hyper",
                    runtime.block_on(saturate(total, send_bare.clone())),
                )
            } else {
                (
                    "sinew_default",
                    runtime.block_on(saturate(total, send_sinew.clone())),
                )
            };
            #[allow(clippy::print_stdout)]
            {
                println!(
                    "client saturation {name}: {:.2} µs CPU per request, {:.0} requests/s",
                    cpu * 1e6 / total as f64,
                    total as f64 / wall,
                );
            }
        }
        return;
    }

    let mut group = c.benchmark_group("client");
    group.bench_function("bare_hyper", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let request = Request::get(&url).body(Empty::new()).unwrap();
                    let response = bare.request(request).await.unwrap();
                    response.into_body().collect().await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("sinew_default", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let request = Request::get("http://echo/").body(Empty::new()).unwrap();
                    let response = sinew.clone().oneshot(request).await.unwrap();
                    response.into_body().collect().await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

/// Sends `total` requests with 64 in flight; returns the CPU seconds the
/// process used and the wall seconds it took.
async fn saturate<F, Fut>(total: usize, send: F) -> (f64, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    const IN_FLIGHT: usize = 64;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let send = send.clone();
            let share = total / IN_FLIGHT + usize::from(i < total % IN_FLIGHT);
            tokio::spawn(async move {
                for _ in 0..share {
                    send().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (cpu_seconds() - cpu_before, started.elapsed().as_secs_f64())
}

/// User and system CPU time of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the
    // state, field 3; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // Linux reports in clock ticks of 1/100 s on every common platform.
    ticks / 100.0
}

criterion_group!(benches, client);
criterion_main!(benches);
