//! What the mesh's server stack adds to a request over a bare hyper
//! server, both called by the same bare hyper client over loopback:
//! `cargo bench --bench server` (criterion group `server`, ids
//! `bare_hyper` and `sinew_stack`). The stack runs with an inbound block
//! that sets every limit (deadline default, rate, concurrency, adaptive),
//! none of them reached.
//!
//! Group `authz` (`cargo bench --bench server -- authz`) times one policy
//! decision through `AuthorizeLayer` at 100 rules, against the same layer
//! without policies: `allow_100_rules` (99 allow policies that do not
//! match the caller, then the one that does) and `deny_scan_100_rules`
//! (100 deny policies, none matching, then an allow-all), both keyed by
//! the caller's ID as most policies are, and `allow_100_rules_by_path`
//! (99 allow policies on other path prefixes) and
//! `allow_100_rules_by_namespace` (99 allow policies on other prefixes of
//! the caller's ID): the index by ID and by path, whole or by prefix,
//! evaluates only the policies that can match. `allow_100_rules_unindexed`
//! (99 allow policies on a header, then one for any authenticated caller)
//! is the worst case: every policy evaluated.
//!
//! `SINEW_BENCH_PAIRED=<rounds>` alternates the two servers in rounds of
//! 2,000 sequential requests and prints the median per-request difference
//! (loopback drift between criterion runs exceeds the difference), then
//! the CPU time per request at saturation (64 requests in flight, client
//! and server in this process, so the difference is the stack's), read
//! from `/proc/self/stat` (Linux; skipped elsewhere).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_time;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sinew::config::MeshConfig;
use sinew::mesh::Mesh;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

type BareClient = Client<HttpConnector, Empty<Bytes>>;

fn ok() -> http::Response<Full<Bytes>> {
    http::Response::new(Full::new(Bytes::from_static(b"ok")))
}

async fn bare_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(|_req| async { Ok::<_, Infallible>(ok()) });
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

async fn sinew_server() -> (SocketAddr, sinew::mesh::Server) {
    let config = MeshConfig::from_yaml(
        "services:\n  echo:\n    inbound:\n      deadline: { default: 10s }\n      \
         rate_limit: { per_second: 1000000000, burst: 1000000 }\n      \
         concurrency_limit: { max_concurrent: 100000, max_queue: 0 }\n      \
         adaptive_limit: { initial_limit: 100000, min_limit: 100000, max_limit: 100000 }\n",
    )
    .unwrap();
    let mesh = Mesh::builder().config(config).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = tower::service_fn(|_req: Request<hyper::body::Incoming>| async {
        Ok::<_, Infallible>(ok())
    });
    let server = mesh.serve("echo", listener, app).await.unwrap();
    (addr, server)
}

async fn sequential(client: &BareClient, url: &str, n: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let request = Request::get(url).body(Empty::new()).unwrap();
        let response = client.request(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    started.elapsed()
}

/// CPU time per request with 64 requests in flight.
async fn saturated(client: &BareClient, url: &str, total: u32) -> Option<Duration> {
    const IN_FLIGHT: u32 = 64;
    let before = cpu_time()?;
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move { sequential(&client, &url, total / IN_FLIGHT).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Some((cpu_time()? - before) / total)
}

fn server(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let bare_addr = runtime.block_on(bare_server());
    let (sinew_addr, _server) = runtime.block_on(sinew_server());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: BareClient = Client::builder(TokioExecutor::new()).build(connector);
    let bare_url = format!("http://{bare_addr}/");
    let sinew_url = format!("http://{sinew_addr}/");

    if let Some(rounds) = std::env::var("SINEW_BENCH_PAIRED")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|r| *r > 0)
    {
        const PER_ROUND: u32 = 2_000;
        let mut differences: Vec<f64> = Vec::with_capacity(rounds);
        let mut bare_times = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let (bare, sinew) = runtime.block_on(async {
                // Alternate which goes first, so that neither always follows the other.
                if round % 2 == 0 {
                    let b = sequential(&client, &bare_url, PER_ROUND).await;
                    (b, sequential(&client, &sinew_url, PER_ROUND).await)
                } else {
                    let s = sequential(&client, &sinew_url, PER_ROUND).await;
                    (sequential(&client, &bare_url, PER_ROUND).await, s)
                }
            });
            let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(PER_ROUND);
            bare_times.push(per(bare));
            differences.push(per(sinew) - per(bare));
        }
        differences.sort_by(f64::total_cmp);
        bare_times.sort_by(f64::total_cmp);
        let mut cpu: Vec<(f64, f64)> = Vec::new();
        for round in 0..6 {
            const TOTAL: u32 = 64_000;
            let pair = runtime.block_on(async {
                if round % 2 == 0 {
                    let b = saturated(&client, &bare_url, TOTAL).await;
                    (b, saturated(&client, &sinew_url, TOTAL).await)
                } else {
                    let s = saturated(&client, &sinew_url, TOTAL).await;
                    (saturated(&client, &bare_url, TOTAL).await, s)
                }
            });
            if let (Some(b), Some(s)) = pair {
                cpu.push((b.as_secs_f64() * 1e6, s.as_secs_f64() * 1e6));
            }
        }
        cpu.sort_by(|a, b| (a.1 - a.0).total_cmp(&(b.1 - b.0)));
        #[allow(clippy::print_stdout)]
        {
            println!(
                "server paired over {rounds} rounds of {PER_ROUND}: bare_hyper median {:.1} µs; sinew_stack adds median {:+.2} µs (quartiles {:+.2} / {:+.2})",
                bare_times[rounds / 2],
                differences[rounds / 2],
                differences[rounds / 4],
                differences[rounds * 3 / 4],
            );
            match cpu.get(cpu.len() / 2) {
                Some((bare, sinew)) => println!(
                    "server CPU per request at 64 in flight (client and server), median of {} pairs: bare_hyper {bare:.2} µs, sinew_stack {sinew:.2} µs ({:+.2} µs)",
                    cpu.len(),
                    sinew - bare
                ),
                None => println!("server CPU per request: /proc/self/stat not readable, skipped"),
            }
        }
        return;
    }

    let mut group = c.benchmark_group("server");
    group.bench_function("bare_hyper", |b| {
        b.iter_custom(|iters| runtime.block_on(sequential(&client, &bare_url, iters as u32)))
    });
    group.bench_function("sinew_stack", |b| {
        b.iter_custom(|iters| runtime.block_on(sequential(&client, &sinew_url, iters as u32)))
    });
    group.finish();
}

/// An `AuthorizeLayer` over a service that hands the request back, so
/// that one request serves every iteration.
fn authorize(
    policies: &str,
) -> impl tower::Service<
    Request<()>,
    Response = Request<()>,
    Error = sinew::error::BoxError,
    Future = impl Future<Output = Result<Request<()>, sinew::error::BoxError>>,
> {
    use tower::Layer;
    let yaml = format!("services:\n  reviews:\n    inbound:\n      authorization: {policies}\n");
    let config = MeshConfig::from_yaml(&yaml).unwrap();
    let list = &config.services["reviews"]
        .inbound
        .as_ref()
        .unwrap()
        .authorization;
    sinew::authz::AuthorizeLayer::new("reviews", list)
        .unwrap()
        .layer(tower::service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req)
        }))
}

fn authz(c: &mut Criterion) {
    use futures_util::FutureExt;
    use tower::Service;
    let other = |i: usize, action: &str| {
        format!(
            "{{ name: p{i}, action: {action}, rules: [{{ principals: [{{ id: \"spiffe://example.org/ns/shop/sa/other-{i}\" }}], methods: [GET, HEAD], paths: [{{ prefix: /reviews/ }}] }}] }}"
        )
    };
    let matching = "{ name: cart, action: allow, rules: [{ principals: [{ id: \"spiffe://example.org/ns/shop/sa/cart\" }], methods: [GET, HEAD], paths: [{ prefix: /reviews/ }] }] }";
    let allow: Vec<String> = (0..99).map(|i| other(i, "allow")).collect();
    let deny: Vec<String> = (0..100).map(|i| other(i, "deny")).collect();
    // The same, keyed by path prefix rather than by caller.
    let by_path = |i: usize| {
        format!(
            "{{ name: q{i}, action: allow, rules: [{{ principals: [authenticated], methods: [GET, HEAD], paths: [{{ prefix: /other-{i}/ }}] }}] }}"
        )
    };
    let by_path: Vec<String> = (0..99).map(by_path).collect();
    // Keyed by nothing the index knows (a header): every rule evaluated.
    let by_header: Vec<String> = (0..99)
        .map(|i| {
            format!(
                "{{ name: h{i}, action: allow, rules: [{{ headers: [{{ name: x-team, exact: t{i} }}] }}] }}"
            )
        })
        .collect();
    // Keyed by a prefix of the caller's ID (a namespace), as trust-domain
    // and namespace rules are.
    let by_namespace: Vec<String> = (0..99)
        .map(|i| {
            format!(
                "{{ name: n{i}, action: allow, rules: [{{ principals: [{{ prefix: \"spiffe://example.org/ns/team-{i}/\" }}] }}] }}"
            )
        })
        .collect();
    let cases = [
        ("no_policies", "[]".to_owned()),
        (
            "allow_100_rules_by_path",
            format!(
                "[{}, {{ name: reviews, action: allow, rules: [{{ principals: [authenticated], paths: [{{ prefix: /reviews/ }}] }}] }}]",
                by_path.join(", ")
            ),
        ),
        (
            "allow_100_rules_unindexed",
            format!(
                "[{}, {{ name: all, action: allow, rules: [{{ principals: [authenticated] }}] }}]",
                by_header.join(", ")
            ),
        ),
        (
            "allow_100_rules_by_namespace",
            format!(
                "[{}, {{ name: shop, action: allow, rules: [{{ principals: [{{ prefix: \"spiffe://example.org/ns/shop/\" }}] }}] }}]",
                by_namespace.join(", ")
            ),
        ),
        (
            "allow_100_rules",
            format!("[{}, {matching}]", allow.join(", ")),
        ),
        (
            "deny_scan_100_rules",
            format!(
                "[{}, {{ name: all, action: allow, rules: [{{}}] }}]",
                deny.join(", ")
            ),
        ),
    ];
    let id: sinew::tls::SpiffeId = "spiffe://example.org/ns/shop/sa/cart".parse().unwrap();
    let mut group = c.benchmark_group("authz");
    for (name, policies) in cases {
        let mut svc = authorize(&policies);
        let mut request = Request::get("/reviews/1").body(()).unwrap();
        request
            .extensions_mut()
            .insert(sinew::mesh::PeerIdentity::new(id.clone()));
        let mut slot = Some(request);
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = slot.take().unwrap();
                let back = svc.call(req).now_or_never().unwrap().unwrap();
                slot = Some(back);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, server, authz);
criterion_main!(benches);
