//! Ring hash (ketama-style consistent hashing).

use super::PickerEndpoint;
use super::hash::hash_endpoint;

const MAX_RING: usize = 8 << 20;

#[derive(Debug)]
pub(super) struct Ring {
    /// Points sorted by hash, with the endpoint each belongs to.
    hashes: Vec<u64>,
    owners: Vec<u32>,
}

impl Ring {
    /// Each endpoint gets `weight × R` points, where `R` is the power of
    /// two that makes the ring at least `min_size` points (at most 8 Mi in
    /// all). Rounding `R` to a power of two keeps it, and so every existing
    /// point, unchanged when an endpoint joins or leaves, which is what
    /// limits the keys that move to those of the endpoint that changed.
    pub(super) fn new(endpoints: &[PickerEndpoint], min_size: usize) -> Self {
        let total: u64 = endpoints
            .iter()
            .map(|e| u64::from(e.weight.max(1)))
            .sum::<u64>()
            .max(1);
        let wanted = (min_size as u64).div_ceil(total).next_power_of_two();
        let cap = (MAX_RING as u64 / total).max(1);
        let per_weight = wanted.min(cap);
        let mut points: Vec<(u64, u32)> =
            Vec::with_capacity((total * per_weight).min(MAX_RING as u64) as usize);
        for (i, e) in endpoints.iter().enumerate() {
            let replicas = u64::from(e.weight.max(1)) * per_weight;
            points.extend((0..replicas).map(|r| (hash_endpoint(&e.address, r), i as u32)));
        }
        points.sort_unstable();
        let (hashes, owners) = points.into_iter().unzip();
        Self { hashes, owners }
    }

    #[inline]
    pub(super) fn pick(&self, hash: u64) -> usize {
        let i = self.hashes.partition_point(|&h| h < hash);
        let i = if i == self.hashes.len() { 0 } else { i };
        self.owners[i] as usize
    }
}
