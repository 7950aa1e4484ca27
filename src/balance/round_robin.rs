//! Smooth weighted round robin, precomputed.
//!
//! The sequence is computed once per endpoint set, each endpoint
//! `weight` times, in the order of [`Turns`] (which spreads each
//! endpoint's turns evenly, as nginx's smooth round robin does); a pick is one atomic increment and one load. Weights whose sum
//! exceeds [`MAX_SEQUENCE`] are scaled down first, each endpoint keeping at
//! least one turn, so the sequence holds at most `MAX_SEQUENCE` turns plus
//! one per endpoint and builds in O(turns × log endpoints) whatever the
//! weights.

use super::edf::Turns;
use super::{PickerChange, PickerEndpoint};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The most turns a sequence holds before one per endpoint is added.
const MAX_SEQUENCE: u64 = 1 << 16;

#[derive(Debug)]
pub(super) struct RoundRobin {
    /// `None` when every endpoint has the same weight: the sequence is
    /// then the endpoints in order, and a change needs no table.
    sequence: Option<Vec<u32>>,
    len: usize,
    /// The weight every endpoint has, when they all have the same.
    uniform: Option<u32>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub(super) fn new(endpoints: &[PickerEndpoint]) -> Self {
        let total: u64 = endpoints.iter().map(|e| u64::from(e.weight.max(1))).sum();
        let scale = total.div_ceil(MAX_SEQUENCE).max(1);
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        let sequence = (!uniform).then(|| {
            let weights: Vec<u64> = endpoints
                .iter()
                .map(|e| (u64::from(e.weight.max(1)) / scale).max(1))
                .collect();
            let total: u64 = weights.iter().sum();
            Turns::new(&weights).take(total as usize).collect()
        });
        Self {
            sequence,
            len: endpoints.len(),
            uniform: uniform.then(|| endpoints.first().map_or(1, |e| e.weight)),
            // Clients start at different places, so that they do not all
            // hit the first endpoint together.
            next: AtomicUsize::new(fastrand::usize(..)),
        }
    }

    /// This picker with one change, when its endpoints keep one weight;
    /// `None` when it must be rebuilt. The walk goes on where it was.
    pub(super) fn changed(&self, change: &PickerChange<'_>) -> Option<Self> {
        let weight = self.uniform?;
        let len = match change {
            PickerChange::Replaced(i, e) if e.weight == weight && *i < self.len => self.len,
            PickerChange::Added(e) if e.weight == weight => self.len + 1,
            PickerChange::Removed(i) if *i < self.len => self.len - 1,
            _ => return None,
        };
        (len > 0).then(|| Self {
            sequence: None,
            len,
            uniform: Some(weight),
            next: AtomicUsize::new(self.next.load(Relaxed)),
        })
    }

    /// The turns in one walk of the sequence.
    #[cfg(test)]
    pub(super) fn turns(&self) -> usize {
        self.sequence.as_ref().map_or(self.len, Vec::len)
    }

    #[inline]
    pub(super) fn pick(&self) -> usize {
        let n = self.next.fetch_add(1, Relaxed);
        match &self.sequence {
            None => n % self.len,
            Some(sequence) => sequence[n % sequence.len()] as usize,
        }
    }
}
