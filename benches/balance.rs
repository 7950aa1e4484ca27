//! Cost of one pick for each load-balancing policy, at 10, 1,000 and
//! 100,000 endpoints: `cargo bench --bench balance` (criterion group
//! `balance`, ids `<picker>/<endpoints>`).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sinew::balance::{EndpointLoad, Picker, PickerEndpoint, hash_key};
use sinew::config::LbPolicy;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

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
    let mut group = c.benchmark_group("balance");
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

criterion_group!(benches, balance);
criterion_main!(benches);
