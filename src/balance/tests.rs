use super::*;
use crate::config::LbPolicy;
use std::collections::HashMap;

fn endpoints(weights: &[u32]) -> Vec<PickerEndpoint> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| PickerEndpoint {
            address: SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 8080)),
            weight,
            load: Arc::new(EndpointLoad::default()),
        })
        .collect()
}

fn counts(picker: &Picker, n: usize, key: impl Fn(usize) -> Option<u64>) -> Vec<usize> {
    let mut counts = HashMap::new();
    for i in 0..n {
        if let Some(chosen) = picker.pick(key(i)) {
            *counts.entry(chosen).or_insert(0) += 1;
        }
    }
    let max = counts.keys().copied().max().unwrap_or(0);
    (0..=max)
        .map(|i| counts.get(&i).copied().unwrap_or(0))
        .collect()
}

fn shares_within(counts: &[usize], weights: &[u32], tolerance: f64) {
    let total: usize = counts.iter().sum();
    let weight_total: u32 = weights.iter().sum();
    for (i, (&c, &w)) in counts.iter().zip(weights).enumerate() {
        let expected = f64::from(w) / f64::from(weight_total);
        let actual = c as f64 / total as f64;
        assert!(
            (actual - expected).abs() <= tolerance * expected,
            "endpoint {i}: {actual:.4} of picks, expected {expected:.4} ({counts:?})"
        );
    }
}

#[test]
fn no_endpoints_no_pick() {
    for policy in [
        LbPolicy::P2cEwma,
        LbPolicy::RoundRobin,
        LbPolicy::Maglev { header: None },
    ] {
        assert_eq!(Picker::build(&policy, &[]).pick(Some(1)), None);
    }
}

#[test]
fn random_and_round_robin_follow_weights() {
    let weights = [1, 2, 3, 4];
    let random = Picker::build(&LbPolicy::Random, &endpoints(&weights));
    shares_within(&counts(&random, 200_000, |_| None), &weights, 0.03);

    let rr = Picker::build(&LbPolicy::RoundRobin, &endpoints(&weights));
    // Exact over whole cycles, and smooth: never the same endpoint 3 times
    // in a row.
    assert_eq!(counts(&rr, 1000, |_| None), vec![100, 200, 300, 400]);
    let run: Vec<_> = (0..30).filter_map(|_| rr.pick(None)).collect();
    assert!(
        run.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])),
        "{run:?}"
    );
}

#[test]
fn p2c_avoids_a_slow_endpoint_and_least_request_a_busy_one() {
    let set = endpoints(&[1; 10]);
    let guard = set[0].load.start();
    std::thread::sleep(std::time::Duration::from_millis(20));
    guard.finish();
    let p2c = Picker::build(&LbPolicy::P2cEwma, &set);
    let picks = counts(&p2c, 20_000, |_| None);
    assert!(
        picks[0] < 200,
        "the slow endpoint got {} of 20000",
        picks[0]
    );
    assert!(picks[1..].iter().all(|&c| c > 1_600), "{picks:?}");

    let set = endpoints(&[1; 10]);
    let busy: Vec<_> = (0..5).map(|_| set[3].load.start()).collect();
    let lr = Picker::build(&LbPolicy::LeastRequest, &set);
    let picks = counts(&lr, 20_000, |_| None);
    assert!(
        picks[3] < 200,
        "the busy endpoint got {} of 20000",
        picks[3]
    );
    drop(busy);
    assert_eq!(set[3].load.inflight(), 0);
}

/// Keys that map to a different endpoint once an eleventh joins ten.
fn moved_keys(policy: &LbPolicy) -> (f64, usize) {
    let before = endpoints(&[1; 10]);
    let after = endpoints(&[1; 11]);
    let (a, b) = (
        Picker::build(policy, &before),
        Picker::build(policy, &after),
    );
    let keys = 20_000;
    let mut moved = 0;
    let mut moved_elsewhere = 0;
    for k in 0..keys {
        let hash = hash_key(format!("user-{k}").as_bytes());
        let (x, y) = (a.pick(Some(hash)), b.pick(Some(hash)));
        assert_eq!(a.pick(Some(hash)), x, "sticky");
        if x != y {
            moved += 1;
            if y != Some(10) {
                moved_elsewhere += 1;
            }
        }
    }
    (moved as f64 / keys as f64, moved_elsewhere)
}

#[test]
fn ring_hash_is_sticky_and_moves_about_one_nth() {
    let (moved, elsewhere) = moved_keys(&LbPolicy::RingHash {
        header: None,
        min_ring_size: 1024,
    });
    assert!(moved <= 1.5 / 11.0, "{moved:.3} of keys moved");
    assert_eq!(elsewhere, 0, "a ring only moves keys to the new endpoint");
}

#[test]
fn maglev_is_sticky_and_moves_about_one_nth() {
    let (moved, elsewhere) = moved_keys(&LbPolicy::Maglev { header: None });
    assert!(moved <= 1.5 / 11.0, "{moved:.3} of keys moved");
    assert!(
        elsewhere < 20_000 / 100,
        "{elsewhere} keys moved between old endpoints"
    );
}

#[test]
fn consistent_hashing_follows_weights() {
    let weights = [1, 2, 1];
    for policy in [
        LbPolicy::RingHash {
            header: None,
            min_ring_size: 4096,
        },
        LbPolicy::Maglev { header: None },
    ] {
        let picker = Picker::build(&policy, &endpoints(&weights));
        let picks = counts(&picker, 100_000, |k| Some(hash_key(&k.to_le_bytes())));
        shares_within(&picks, &weights, 0.1);
    }
}

#[test]
fn a_ring_stays_under_twice_its_minimum_plus_one_point_per_endpoint() {
    // 100,000 endpoints whose weights were scaled by a thousand (as
    // weighted localities are) used to make a ring of 1e8 points.
    let many = endpoints(&vec![1000; 100_000]);
    let ring = ring::Ring::new(&many, 1024);
    assert!(ring.len() <= 2 * 1024 + many.len(), "{} points", ring.len());
    // The largest weights the model allows, and a few.
    let heavy = endpoints(&[1_000_000, 1_000_000, 1, 3]);
    let ring = ring::Ring::new(&heavy, 4096);
    assert!(
        (4096..2 * 4096 + 4).contains(&ring.len()),
        "{} points",
        ring.len()
    );
    // Small weights are scaled up to the minimum.
    let light = endpoints(&[1, 2, 1]);
    assert!(ring::Ring::new(&light, 4096).len() >= 4096);
}

#[test]
fn weighted_round_robin_stays_bounded_and_smooth_whatever_the_weights() {
    // 100,000 weighted endpoints used to cost 1e6 turns × 1e5 endpoints.
    let mut weights = vec![1000; 100_000];
    weights[0] = 1_000_000;
    let rr = round_robin::RoundRobin::new(&endpoints(&weights));
    assert!(
        rr.turns() <= (1 << 16) + weights.len(),
        "{} turns",
        rr.turns()
    );

    // Turns are spread: weights 1 and 3 never give the heavy endpoint
    // more than three turns in a row, nor the light one two.
    let rr = round_robin::RoundRobin::new(&endpoints(&[1, 3]));
    let walk: Vec<usize> = (0..400).map(|_| rr.pick()).collect();
    let mut longest = [0usize; 2];
    let mut run = 0;
    for (i, w) in walk.iter().enumerate() {
        run = if i > 0 && walk[i - 1] == *w {
            run + 1
        } else {
            1
        };
        longest[*w] = longest[*w].max(run);
    }
    assert_eq!(longest, [1, 3]);
    assert_eq!(walk.iter().filter(|&&w| w == 1).count(), 300);
}

#[test]
fn maglev_builds_skewed_weights_in_turns_not_rounds() {
    // One endpoint a million times heavier than 20,000 others: a round of
    // every endpoint per slot of the heavy one took billions of steps.
    let mut weights = vec![1; 20_000];
    weights[7] = 1_000_000;
    let picker = Picker::build(&LbPolicy::Maglev { header: None }, &endpoints(&weights));
    let picks = counts(&picker, 20_000, |k| Some(hash_key(&k.to_le_bytes())));
    let heavy = picks.get(7).copied().unwrap_or(0);
    assert!(
        heavy > 19_000,
        "the heavy endpoint got {heavy} of 20000 keys"
    );
}
