//! Weighted random sampling in O(1), by Vose's alias method.

use super::PickerEndpoint;

#[derive(Debug)]
pub(super) struct Alias {
    /// Per slot: the probability (scaled to u32) of keeping the slot, and
    /// the alias taken otherwise.
    slots: Vec<(u32, u32)>,
}

impl Alias {
    pub(super) fn new(endpoints: &[PickerEndpoint]) -> Self {
        Self::from_weights(endpoints.iter().map(|e| e.weight.max(1)))
    }

    pub(super) fn from_weights(weights: impl ExactSizeIterator<Item = u32>) -> Self {
        let n = weights.len();
        let weights: Vec<u64> = weights.map(u64::from).collect();
        let total: u64 = weights.iter().sum::<u64>().max(1);
        // Scaled so that the mean is exactly `n * SCALE / n`.
        let mut scaled: Vec<u128> = weights
            .iter()
            .map(|&w| u128::from(w) * n as u128 * u128::from(u32::MAX) / u128::from(total))
            .collect();
        let full = u128::from(u32::MAX);
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < full);
        let mut slots = vec![(u32::MAX, 0u32); n];
        for (i, slot) in slots.iter_mut().enumerate() {
            slot.1 = i as u32;
        }
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            slots[s] = (scaled[s] as u32, l as u32);
            scaled[l] = (scaled[l] + scaled[s]).saturating_sub(full);
            if scaled[l] < full {
                large.pop();
                small.push(l);
            }
        }
        Self { slots }
    }

    #[inline]
    pub(super) fn sample(&self) -> usize {
        let n = self.slots.len();
        let i = fastrand::usize(..n);
        let (keep, alias) = self.slots[i];
        if fastrand::u32(..) <= keep {
            i
        } else {
            alias as usize
        }
    }
}
