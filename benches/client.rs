//! What the mesh client adds to a request over a bare hyper client, both
//! against the same loopback server: `cargo bench --bench client`
//! (criterion group `client`, ids `bare_hyper` and `sinew_default`).

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
    let bare = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let config = MeshConfig::from_yaml(&format!(
        "services:\n  echo:\n    routes: [{{ split: [{{ cluster: echo }}] }}]\nclusters:\n  echo:\n    endpoints: [{{ address: \"{addr}\" }}]\n"
    ))
    .unwrap();
    let mesh = runtime
        .block_on(Mesh::builder().config(config).build())
        .unwrap();
    let sinew = mesh.http_client::<Empty<Bytes>>("echo");
    let url = format!("http://{addr}/");

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
