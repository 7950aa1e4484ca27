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

criterion_group!(benches, client);
criterion_main!(benches);
