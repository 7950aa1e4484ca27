//! Ring hash (ketama-style consistent hashing).

use super::PickerEndpoint;
use super::hash::hash_endpoint;

#[derive(Debug)]
pub(super) struct Ring {
    /// Points sorted by hash, with the endpoint each belongs to.
    hashes: Vec<u64>,
    owners: Vec<u32>,
}

impl Ring {
    /// Each endpoint gets `weight × 2^s` points (at least one), where `s`
    /// (negative when the weights add up to more than `min_size`) is the
    /// smallest power of two that makes the weights add up to `min_size`
    /// or more. So the ring holds fewer than `2 × min_size` points plus one
    /// per endpoint, whatever the weights, and builds in O(points × log
    /// points). Scaling by a power of two keeps `s`, and so every existing
    /// point, unchanged when an endpoint joins or leaves (unless the total
    /// crosses a power of two), which is what limits the keys that move to
    /// those of the endpoint that changed.
    pub(super) fn new(endpoints: &[PickerEndpoint], min_size: usize) -> Self {
        let total: u64 = endpoints
            .iter()
            .map(|e| u64::from(e.weight.max(1)))
            .sum::<u64>()
            .max(1);
        let min_size = (min_size as u64).max(1);
        // One of the two is always 1 (resp. 0): scale up or down.
        let (up, down) = if total >= min_size {
            // The largest right shift that keeps the total at `min_size`.
            (1, (total / min_size).ilog2())
        } else {
            (min_size.div_ceil(total).next_power_of_two(), 0)
        };
        let replicas = |w: u32| ((u64::from(w.max(1)) * up) >> down).max(1);
        let size: u64 = endpoints.iter().map(|e| replicas(e.weight)).sum();
        let mut points: Vec<(u64, u32)> = Vec::with_capacity(size as usize);
        for (i, e) in endpoints.iter().enumerate() {
            points
                .extend((0..replicas(e.weight)).map(|r| (hash_endpoint(&e.address, r), i as u32)));
        }
        points.sort_unstable();
        let (hashes, owners) = points.into_iter().unzip();
        Self { hashes, owners }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.hashes.len()
    }

    #[inline]
    pub(super) fn pick(&self, hash: u64) -> usize {
        let i = self.hashes.partition_point(|&h| h < hash);
        let i = if i == self.hashes.len() { 0 } else { i };
        self.owners[i] as usize
    }
}
