//! Cost of one pick for each load-balancing policy, at 10, 1,000 and
//! 100,000 endpoints; of building a 100,000-endpoint snapshot; and of
//! applying a one-endpoint change to a 100,000-endpoint cluster through
//! `Mesh::update_endpoints`: `cargo bench --bench balance` (criterion group
//! `balance`, ids `<picker>/<endpoints>`, `build/100000`, `update/100000`,
//! and `update_rebuild/100000` for a change that makes the picker rebuild:
//! an endpoint turning unhealthy). It first prints the heap held per
//! endpoint by a snapshot and a picker, counted with a counting global
//! allocator.
//!
//! Group `balance_layer` (`cargo bench --bench balance -- balance_layer`):
//! the `BalanceLayer` used alone, over an inner service that answers at
//! once, against the pick it wraps, on one set of 10 endpoints per policy.
//! Ids: `pick/<policy>` (`Picker::pick` alone, on a picker built over the
//! set's endpoints and loads), `inner/<policy>` (a request through the
//! inner service alone: making it, calling, polling, dropping the
//! response), `layer/<policy>` (the same through the layer) and
//! `layer_served_by/<policy>` (with the `ServedBy` extension). The layer
//! costs `layer - inner`; the target is at most `pick + 50 ns`. The heap
//! allocations per request are printed first (`SINEW_BENCH_ALLOCATIONS=1`
//! prints them alone and exits, which any build of the bench can do).

// The counting allocator is the one place that needs `unsafe`.
#![allow(
    unsafe_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group};
use http::{Request, Response};
use http_body_util::Empty;
use sinew::balance::{BalanceLayer, EndpointLoad, EndpointSet, Picker, PickerEndpoint, hash_key};
use sinew::config::{
    ClusterConfig, EndpointChanges, EndpointConfig, Health, LbPolicy, MeshConfig, Snapshot,
};
use sinew::mesh::Mesh;
use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{Future, ready};
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use tower::{Layer, Service};

/// Counts bytes in use, and allocations.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A mesh with one cluster of `n` endpoints spread over three zones.
fn mesh_config(n: usize) -> MeshConfig {
    let endpoints = (0..n)
        .map(|i| {
            let mut e: EndpointConfig = serde_json::from_str(&format!(
                r#"{{"address": "10.{}.{}.{}:8080"}}"#,
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ))
            .unwrap();
            e.locality.region = "eu".into();
            e.locality.zone = format!("eu-{}", i % 3);
            e
        })
        .collect();
    let mut config = MeshConfig::default();
    config.clusters.insert(
        "big".into(),
        ClusterConfig {
            endpoints,
            ..ClusterConfig::default()
        },
    );
    config
}

/// Heap bytes per endpoint held by a built snapshot and a P2C picker over
/// it (the configuration as given included; connections are not).
fn heap_per_endpoint(n: usize) {
    let before = IN_USE.load(Ordering::Relaxed);
    let snapshot = Snapshot::build(mesh_config(n), 1).unwrap();
    let set: Vec<PickerEndpoint> = snapshot
        .cluster("big")
        .unwrap()
        .endpoints()
        .iter()
        .map(|e| PickerEndpoint {
            address: e.address,
            weight: e.weight,
            load: Arc::new(EndpointLoad::default()),
        })
        .collect();
    let picker = Picker::build(&LbPolicy::P2cEwma, &set);
    let held = IN_USE.load(Ordering::Relaxed) - before;
    println!(
        "heap per endpoint at {n} endpoints (snapshot + loads + P2C picker): {} bytes",
        held / n as isize
    );
    drop((picker, set, snapshot));
}

fn endpoints(n: usize) -> Vec<PickerEndpoint> {
    (0..n)
        .map(|i| PickerEndpoint {
            address: SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080)),
            weight: 1,
            load: Arc::new(EndpointLoad::default()),
        })
        .collect()
}

fn balance(c: &mut Criterion) {
    let policies = [
        ("p2c_ewma", LbPolicy::P2cEwma),
        ("round_robin", LbPolicy::RoundRobin),
        ("least_request", LbPolicy::LeastRequest),
        (
            "ring_hash",
            LbPolicy::RingHash {
                header: None,
                min_ring_size: 1024,
            },
        ),
        ("maglev", LbPolicy::Maglev { header: None }),
    ];
    // Keys vary from pick to pick, as requests' keys do.
    let keys: Vec<u64> = (0..4096u32).map(|k| hash_key(&k.to_le_bytes())).collect();
    heap_per_endpoint(100_000);
    let mut group = c.benchmark_group("balance");
    group.bench_function("build/100000", |b| {
        b.iter_batched(
            || mesh_config(100_000),
            |config| black_box(Snapshot::build(config, 1).unwrap()),
            criterion::BatchSize::LargeInput,
        )
    });
    update(&mut group);
    for n in [10, 1_000, 100_000] {
        let set = endpoints(n);
        for (name, policy) in &policies {
            let picker = Picker::build(policy, &set);
            let mut k = 0;
            group.bench_with_input(BenchmarkId::new(*name, n), &picker, |b, picker| {
                b.iter(|| {
                    k = (k + 1) & 4095;
                    black_box(picker.pick(Some(keys[k])))
                })
            });
        }
    }
    group.finish();
}

/// One-endpoint changes to a 100,000-endpoint cluster, alternately adding
/// an endpoint and removing it again.
fn update(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mesh = runtime
        .block_on(Mesh::builder().config(mesh_config(100_000)).build())
        .unwrap();
    let joining = EndpointConfig::new("10.255.0.1:8080");
    let mut unhealthy = joining.clone();
    unhealthy.health = Health::Unhealthy;
    for (id, upsert) in [("update", joining), ("update_rebuild", unhealthy)] {
        let add = EndpointChanges {
            upsert: vec![upsert],
            remove: vec![],
        };
        let remove = EndpointChanges {
            upsert: vec![],
            remove: vec!["10.255.0.1:8080".into()],
        };
        let mut adding = true;
        group.bench_function(BenchmarkId::new(id, 100_000), |b| {
            b.iter(|| {
                let change = if adding { &add } else { &remove };
                adding = !adding;
                black_box(mesh.update_endpoints("big", change).unwrap())
            })
        });
    }
}

/// Sends one request and polls it to completion, dropping the response
/// (which ends its body); the inner service answers on the first poll.
fn send<S>(svc: &mut S) -> bool
where
    S: Service<Request<()>>,
{
    let mut cx = Context::from_waker(Waker::noop());
    if svc.poll_ready(&mut cx).is_pending() {
        return false;
    }
    let mut future = pin!(svc.call(Request::new(())));
    matches!(future.as_mut().poll(&mut cx), Poll::Ready(Ok(_)))
}

/// For each policy: the set of 10 endpoints, a picker built over the same
/// endpoints and loads, and the inner service.
fn layer_cases() -> Vec<(&'static str, EndpointSet, Picker)> {
    [
        ("p2c_ewma", LbPolicy::P2cEwma),
        ("least_request", LbPolicy::LeastRequest),
        ("round_robin", LbPolicy::RoundRobin),
    ]
    .into_iter()
    .map(|(name, policy)| {
        let set = EndpointSet::new(policy.clone()).unwrap();
        set.replace(endpoints(10).iter().map(|e| (e.address, 1)));
        let same: Vec<PickerEndpoint> = set
            .endpoints()
            .into_iter()
            .map(|address| PickerEndpoint {
                address,
                weight: 1,
                load: set.load(address).unwrap(),
            })
            .collect();
        let picker = Picker::build(&policy, &same);
        (name, set, picker)
    })
    .collect()
}

/// An inner service that answers at once with an empty body.
fn immediate() -> impl Service<
    Request<()>,
    Response = Response<Empty<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Empty<Bytes>>, Infallible>>,
> + Clone {
    tower::service_fn(|_: Request<()>| ready(Ok::<_, Infallible>(Response::new(Empty::new()))))
}

fn layer_allocations() {
    const N: u64 = 10_000;
    println!("heap allocations per request (balance_layer group):");
    for (name, set, _) in layer_cases() {
        let cases: [(&str, &mut dyn FnMut() -> bool); 3] = [
            ("inner", &mut {
                let mut svc = immediate();
                move || send(&mut svc)
            }),
            ("layer", &mut {
                let mut svc = BalanceLayer::new(set.clone()).layer(immediate());
                move || send(&mut svc)
            }),
            ("layer_served_by", &mut {
                let mut svc = BalanceLayer::new(set.clone())
                    .served_by(true)
                    .layer(immediate());
                move || send(&mut svc)
            }),
        ];
        for (id, run) in cases {
            assert!(run());
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            for _ in 0..N {
                assert!(run());
            }
            let per = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64;
            println!("  {:<32} {per:.2}", format!("{id}/{name}"));
        }
    }
}

fn balance_layer(c: &mut Criterion) {
    layer_allocations();
    let mut group = c.benchmark_group("balance_layer");
    for (name, set, picker) in layer_cases() {
        group.bench_function(BenchmarkId::new("pick", name), |b| {
            b.iter(|| black_box(picker.pick(None)))
        });
        let mut inner = immediate();
        group.bench_function(BenchmarkId::new("inner", name), |b| {
            b.iter(|| black_box(send(&mut inner)))
        });
        let mut layer = BalanceLayer::new(set.clone()).layer(immediate());
        group.bench_function(BenchmarkId::new("layer", name), |b| {
            b.iter(|| black_box(send(&mut layer)))
        });
        let mut marked = BalanceLayer::new(set.clone())
            .served_by(true)
            .layer(immediate());
        group.bench_function(BenchmarkId::new("layer_served_by", name), |b| {
            b.iter(|| black_box(send(&mut marked)))
        });
    }
    group.finish();
}

criterion_group!(benches, balance, balance_layer);

fn main() {
    if std::env::var_os("SINEW_BENCH_ALLOCATIONS").is_some() {
        layer_allocations();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
