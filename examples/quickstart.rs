//! Sinew's quickstart: a flaky HTTP server on loopback, and a client whose
//! requests go through Sinew's resilience layers. It prints what the layers
//! did in each phase of the server's life.
//!
//! Run it with `cargo run --release --example quickstart`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sinew::breaker::{BreakerConfig, BreakerLayer, BreakerOpen, State};
use sinew::deadline::PropagateDeadlineLayer;
use sinew::error::BoxError;
use sinew::retry::{Attempts, RetryConfig, RetryLayer};
use sinew::timeout::{TimeoutConfig, TimeoutLayer};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::{ServiceBuilder, ServiceExt};

/// How the server behaves.
#[derive(Clone, Copy, PartialEq)]
#[repr(u8)]
enum Mode {
    /// Every third request fails with 503.
    Flaky = 0,
    /// Every request fails with 500.
    Down = 1,
    /// Every request succeeds.
    Healthy = 2,
}

#[derive(Default)]
struct Row {
    requests: usize,
    ok: usize,
    failed: usize,
    refused: usize,
    attempts: usize,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mode = Arc::new(AtomicU8::new(Mode::Flaky as u8));
    let served = Arc::new(AtomicUsize::new(0));
    let addr = start_server(mode.clone(), served.clone()).await?;
    println!("flaky server listening on http://{addr}\n");

    let transitions = Arc::new(Mutex::new(Vec::new()));
    let log = transitions.clone();
    let started = Instant::now();
    let breaker = BreakerLayer::new(BreakerConfig {
        consecutive_failures: Some(5),
        open_for: Duration::from_millis(300),
        ..BreakerConfig::default()
    })?
    .on_transition(move |t| {
        log.lock().unwrap().push((started.elapsed(), t.from, t.to));
    });
    let retry = RetryLayer::new(RetryConfig::default())?;
    let client = ServiceBuilder::new()
        .layer(TimeoutLayer::new(TimeoutConfig::after(
            Duration::from_secs(2),
        ))?)
        .layer(retry.clone())
        .layer(TimeoutLayer::new(TimeoutConfig::after(
            Duration::from_millis(250),
        ))?)
        .layer(breaker.clone())
        .layer(PropagateDeadlineLayer::new())
        .service(Client::builder(TokioExecutor::new()).build_http());

    let phases = [
        ("flaky: every 3rd request fails with 503", Mode::Flaky, 60),
        ("down: every request fails with 500", Mode::Down, 30),
        ("healed: every request succeeds", Mode::Healthy, 30),
    ];
    let mut rows = Vec::new();
    for (name, phase, count) in phases {
        mode.store(phase as u8, Ordering::SeqCst);
        if phase == Mode::Healthy {
            // Give the open breaker time to let a probe through.
            tokio::time::sleep(Duration::from_millis(350)).await;
        }
        let mut row = Row::default();
        for _ in 0..count {
            row.requests += 1;
            let request = Request::get(format!("http://{addr}/"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            match client.clone().oneshot(request).await {
                Ok(response) => {
                    row.attempts += response
                        .extensions()
                        .get::<Attempts>()
                        .map_or(1, |a| a.0 as usize);
                    if response.status().is_success() {
                        row.ok += 1;
                    } else {
                        row.failed += 1;
                    }
                }
                Err(e) if e.is::<BreakerOpen>() => row.refused += 1,
                Err(_) => row.failed += 1,
            }
        }
        rows.push((name, row));
    }

    println!(
        "{:<42} {:>8} {:>4} {:>7} {:>8} {:>16}",
        "phase", "requests", "ok", "failed", "attempts", "breaker refused"
    );
    for (name, row) in &rows {
        println!(
            "{:<42} {:>8} {:>4} {:>7} {:>8} {:>16}",
            name, row.requests, row.ok, row.failed, row.attempts, row.refused
        );
    }
    let stats = retry.stats();
    println!(
        "\nretries: {} sent, {} refused by the budget; the server saw {} requests",
        stats.retries,
        stats.budget_exhausted,
        served.load(Ordering::SeqCst)
    );
    println!("\nbreaker transitions:");
    let transitions = transitions.lock().unwrap();
    let failed_probes = transitions
        .iter()
        .filter(|(_, from, to)| (*from, *to) == (State::HalfOpen, State::Open))
        .count();
    for (at, from, to) in transitions.iter() {
        if (*from, *to) == (State::Closed, State::Open) || *to == State::Closed {
            println!("  {:>6} ms  {from:?} -> {to:?}", at.as_millis());
        }
    }
    println!("  ({failed_probes} half-open probes failed while the server was down)");
    println!("breaker now: {:?}", breaker.state());
    assert_eq!(
        breaker.state(),
        State::Closed,
        "the breaker closes once the server heals"
    );
    Ok(())
}

/// Serves the flaky handler on a fresh loopback port.
async fn start_server(
    mode: Arc<AtomicU8>,
    served: Arc<AtomicUsize>,
) -> Result<std::net::SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (mode, served) = (mode.clone(), served.clone());
            let handler = hyper::service::service_fn(move |_req| {
                let n = served.fetch_add(1, Ordering::SeqCst);
                let status = match mode.load(Ordering::SeqCst) {
                    0 if n % 3 == 2 => StatusCode::SERVICE_UNAVAILABLE,
                    1 => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::OK,
                };
                let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
                *response.status_mut() = status;
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), handler)
                    .await;
            });
        }
    });
    Ok(addr)
}
