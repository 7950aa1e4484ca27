//! Maglev consistent hashing (Eisenbud et al., NSDI 2016).
//!
//! Each endpoint has a permutation of the table's slots, from two hashes of
//! its address; endpoints take turns claiming their next free slot, the
//! number of turns in proportion to their weight. A lookup is one index.

use super::PickerEndpoint;
use super::edf::Turns;
use super::hash::hash_endpoint;

/// Envoy's default table size; larger tables are used for more endpoints,
/// so that each gets many slots.
const MIN_TABLE: u64 = 65_537;

#[derive(Debug)]
pub(super) struct Maglev {
    table: Vec<u32>,
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn table_size(endpoints: usize) -> u64 {
    let mut size = MIN_TABLE.max(endpoints as u64 * 13);
    while !is_prime(size) {
        size += 1;
    }
    size
}

impl Maglev {
    pub(super) fn new(endpoints: &[PickerEndpoint]) -> Self {
        let m = table_size(endpoints.len());
        let perms: Vec<(u64, u64)> = endpoints
            .iter()
            .map(|e| {
                let offset = hash_endpoint(&e.address, 0) % m;
                let skip = hash_endpoint(&e.address, 1) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let weights: Vec<u64> = endpoints.iter().map(|e| u64::from(e.weight)).collect();
        let mut next = vec![0u64; endpoints.len()];
        let mut table = vec![u32::MAX; m as usize];
        // Weighted turns, each claiming the endpoint's next free slot in its
        // permutation: m turns in O(m log N), whatever the weights (a
        // round of every endpoint per turn of the heaviest one cost
        // O(m × N) with skewed weights).
        for i in Turns::new(&weights).take(m as usize) {
            let i = i as usize;
            let (offset, skip) = perms[i];
            loop {
                let slot = ((offset + next[i] * skip) % m) as usize;
                next[i] += 1;
                if table[slot] == u32::MAX {
                    table[slot] = i as u32;
                    break;
                }
            }
        }
        Self { table }
    }

    #[inline]
    pub(super) fn pick(&self, hash: u64) -> usize {
        self.table[(hash % self.table.len() as u64) as usize] as usize
    }
}
