//! Per-request cost of each resilience layer over an inner service that
//! answers at once, and heap allocations per request.
//!
//! `cargo bench --bench layers` prints criterion's figures (group
//! `layers`) after a table of allocations per request, counted with a
//! counting global allocator. `scripts/instructions.sh` gives the same
//! comparison in instructions per request, which do not vary with the
//! machine's load.
//!
//! `telemetry_inbound` and `telemetry_outbound` are the
//! [`TelemetryLayer`] with its metrics recorded (into an in-process
//! recorder of atomic counters and histogram buckets, like a Prometheus
//! exporter's) and its spans below the enabled level (no subscriber).
//! Group `telemetry_spans` (`cargo bench --bench layers -- telemetry_spans`)
//! times the same with every span enabled, into a `tracing-subscriber`
//! registry, and, with `--features otlp`, into the OTLP exporter's
//! `tracing-opentelemetry` layer (batching to an endpoint that refuses).

// The counting allocator is the one place that needs `unsafe`.
#![allow(
    unsafe_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group};
use http::{Request, Response};
use http_body_util::Empty;
use sinew::breaker::{BreakerConfig, BreakerLayer};
use sinew::deadline::PropagateDeadlineLayer;
use sinew::limit::{
    ConcurrencyLimitConfig, ConcurrencyLimitLayer, RateLimitConfig, RateLimitLayer,
};
use sinew::retry::{RetryConfig, RetryLayer};
use sinew::timeout::{TimeoutConfig, TimeoutLayer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tower::{Layer, Service};

/// A `metrics` recorder that keeps values as a Prometheus exporter does:
/// atomic counters and histogram buckets, no export.
struct AtomicRecorder;

impl metrics::Recorder for AtomicRecorder {
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
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(std::sync::Arc::new(AtomicU64::new(0)))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(std::sync::Arc::new(AtomicU64::new(0)))
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(std::sync::Arc::new(metrics_util::storage::AtomicBucket::<
            f64,
        >::new()))
    }
}

fn telemetry_inbound() -> sinew::telemetry::TelemetryLayer {
    sinew::telemetry::TelemetryLayer::inbound("reviews").metrics(
        sinew::telemetry::RequestMetrics::new()
            .with_edges(sinew::telemetry::edges::Edges::default()),
    )
}

fn telemetry_outbound() -> sinew::telemetry::TelemetryLayer {
    sinew::telemetry::TelemetryLayer::outbound("web", "reviews").metrics(
        sinew::telemetry::RequestMetrics::new()
            .with_edges(sinew::telemetry::edges::Edges::default()),
    )
}

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The inner service: answers at once, whatever the request body.
#[derive(Clone, Copy)]
struct Immediate;

impl<B> Service<Request<B>> for Immediate {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

/// Sends one request and polls it to completion; every layer answers on
/// the first poll when the inner service does.
fn send<S>(svc: &mut S) -> bool
where
    S: Service<Request<Empty<Bytes>>>,
{
    let mut cx = Context::from_waker(Waker::noop());
    if svc.poll_ready(&mut cx).is_pending() {
        return false;
    }
    let mut future = pin!(svc.call(Request::new(Empty::new())));
    matches!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(_)))
}

fn timeout() -> TimeoutLayer {
    TimeoutLayer::new(TimeoutConfig::after(Duration::from_secs(10))).unwrap()
}

fn retry() -> RetryLayer {
    RetryLayer::new(RetryConfig::default()).unwrap()
}

fn breaker() -> BreakerLayer {
    BreakerLayer::new(BreakerConfig::default()).unwrap()
}

fn concurrency() -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::new(ConcurrencyLimitConfig::default()).unwrap()
}

fn rate() -> RateLimitLayer {
    RateLimitLayer::new(RateLimitConfig {
        per_second: 1e9,
        burst: u32::MAX,
    })
    .unwrap()
}

macro_rules! services {
    ($each:ident) => {{
        $each!("bare", Immediate);
        $each!("timeout", timeout().layer(Immediate));
        $each!("retry", retry().layer(Immediate));
        $each!("breaker", breaker().layer(Immediate));
        $each!("concurrency_limit", concurrency().layer(Immediate));
        $each!("rate_limit", rate().layer(Immediate));
        $each!(
            "propagate_deadline",
            PropagateDeadlineLayer::new().layer(Immediate)
        );
        $each!("telemetry_inbound", telemetry_inbound().layer(Immediate));
        $each!("telemetry_outbound", telemetry_outbound().layer(Immediate));
        // Trace context and (disabled) spans alone: what metrics cost is
        // the difference with `telemetry_inbound`.
        $each!(
            "telemetry_no_metrics",
            telemetry_inbound().without_metrics().layer(Immediate)
        );
        // The five layers together, one of each, in the order a client
        // stacks them.
        $each!(
            "stack",
            timeout().layer(
                retry().layer(breaker().layer(concurrency().layer(rate().layer(Immediate))))
            )
        );
    }};
}

fn allocations() {
    const N: u64 = 10_000;
    println!("heap allocations per request (layers group):");
    macro_rules! count {
        ($name:expr, $svc:expr) => {{
            let mut svc = $svc;
            assert!(send(&mut svc));
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..N {
                assert!(send(&mut svc));
            }
            let per = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64;
            println!("  {:<20} {per:.2}", $name);
        }};
    }
    services!(count);
}

fn layers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _context = runtime.enter();
    allocations();
    let mut group = c.benchmark_group("layers");
    macro_rules! bench {
        ($name:expr, $svc:expr) => {{
            let mut svc = $svc;
            group.bench_function($name, |b| b.iter(|| black_box(send(&mut svc))));
        }};
    }
    services!(bench);
    group.finish();
    telemetry_spans(c);
}

/// The telemetry layers with their spans enabled.
fn telemetry_spans(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let mut group = c.benchmark_group("telemetry_spans");
    {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let mut inbound = telemetry_inbound().layer(Immediate);
        group.bench_function("inbound_registry", |b| {
            b.iter(|| black_box(send(&mut inbound)))
        });
        let mut outbound = telemetry_outbound().layer(Immediate);
        group.bench_function("outbound_registry", |b| {
            b.iter(|| black_box(send(&mut outbound)))
        });
    }
    #[cfg(feature = "otlp")]
    {
        use tracing_subscriber::layer::SubscriberExt;
        let export =
            sinew::telemetry::otlp::OtlpExport::new("http://127.0.0.1:1", "bench").unwrap();
        let subscriber = tracing_subscriber::registry().with(export.layer());
        let _subscriber = tracing::subscriber::set_default(subscriber);
        let mut inbound = telemetry_inbound().layer(Immediate);
        group.bench_function("inbound_otlp", |b| b.iter(|| black_box(send(&mut inbound))));
        let mut outbound = telemetry_outbound().layer(Immediate);
        group.bench_function("outbound_otlp", |b| {
            b.iter(|| black_box(send(&mut outbound)))
        });
    }
    group.finish();
}

/// `SINEW_BENCH_LOOP=<id>:<n>` sends `n` requests through one service and
/// exits, for instruction counts that do not depend on the machine's
/// noise: `valgrind --tool=callgrind` at two values of `n`, subtracted.
fn run_loop(spec: &str) {
    let (which, n) = spec.split_once(':').expect("SINEW_BENCH_LOOP=<id>:<n>");
    let n: u64 = n.parse().expect("a request count");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _context = runtime.enter();
    macro_rules! run {
        ($name:expr, $svc:expr) => {{
            if which == $name {
                let mut svc = $svc;
                for _ in 0..n {
                    assert!(black_box(send(&mut svc)));
                }
            }
        }};
    }
    services!(run);
}

criterion_group!(benches, layers);

fn main() {
    metrics::set_global_recorder(AtomicRecorder).unwrap();
    if let Ok(spec) = std::env::var("SINEW_BENCH_LOOP") {
        run_loop(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
