//! The balance layer used alone, without a `Mesh`: three HTTP servers on
//! loopback, a hyper-util client balanced over them by least request, and
//! the endpoint set changed through a tower `Discover` stream while
//! requests flow. It prints which server answered how many requests in
//! each phase.
//!
//! Run it with `cargo run --example balance`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sinew::balance::{BalanceLayer, EndpointSet};
use sinew::config::LbPolicy;
use sinew::error::BoxError;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use tower::discover::Change;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(start_server().await?);
    }
    let [a, b, c] = [servers[0], servers[1], servers[2]];
    println!("servers: a = {a}, b = {b}, c = {c}\n");

    // The set, fed by a Discover stream (here from a channel; in a real
    // service, from a registry or DNS).
    let set = EndpointSet::new(LbPolicy::LeastRequest)?;
    let (changes, rx) = tokio::sync::mpsc::unbounded_channel();
    let discover = futures_util::stream::unfold(rx, |mut rx| async move {
        let change = rx.recv().await?;
        Some((Ok::<_, Infallible>(change), rx))
    });
    tokio::spawn(set.feed(discover));

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let balanced = ServiceBuilder::new()
        .layer(BalanceLayer::new(set.clone()))
        .service(client);

    let mut versions = set.subscribe();
    let phases: [(&str, Vec<Change<SocketAddr, u32>>); 3] = [
        ("a and b", vec![Change::Insert(a, 1), Change::Insert(b, 1)]),
        ("c joins", vec![Change::Insert(c, 1)]),
        ("a leaves", vec![Change::Remove(a)]),
    ];
    for (phase, batch) in phases {
        let expected: Vec<SocketAddr> = {
            let mut now = set.endpoints();
            for change in &batch {
                match change {
                    Change::Insert(address, _) => now.push(*address),
                    Change::Remove(address) => now.retain(|e| e != address),
                }
            }
            now
        };
        for change in batch {
            changes.send(change)?;
        }
        // Wait until the feed applied the phase's changes.
        versions
            .wait_for(|_| expected.iter().all(|e| set.contains(*e)) && set.len() == expected.len())
            .await?;

        let mut answered: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..300 {
            let request = Request::get("/hello").body(Empty::new())?;
            let response = balanced.clone().oneshot(request).await?;
            let body = response.into_body().collect().await?.to_bytes();
            *answered
                .entry(String::from_utf8_lossy(&body).into_owned())
                .or_default() += 1;
        }
        println!("{phase}: {answered:?}");
    }
    Ok(())
}

/// A server answering every request with its own address.
async fn start_server() -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_req| async move {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(addr.to_string()))))
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}
