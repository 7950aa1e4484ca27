//! Smooth weighted round robin, precomputed.
//!
//! The sequence nginx's smooth weighted round robin produces is computed
//! once per endpoint set; a pick is one atomic increment and one load.
//! Weights whose sum exceeds the sequence cap are scaled down first (each
//! endpoint keeping at least one slot).

use super::{PickerChange, PickerEndpoint};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const MAX_SEQUENCE: u64 = 1 << 20;

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
        let weights: Vec<i64> = endpoints
            .iter()
            .map(|e| (u64::from(e.weight.max(1)) / scale).max(1) as i64)
            .collect();
        let total: i64 = weights.iter().sum();
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        let sequence = if uniform {
            None
        } else {
            let mut current = vec![0i64; weights.len()];
            let sequence = (0..total)
                .map(|_| {
                    let mut best = 0;
                    for (i, w) in weights.iter().enumerate() {
                        current[i] += w;
                        if current[i] > current[best] {
                            best = i;
                        }
                    }
                    current[best] -= total;
                    best as u32
                })
                .collect();
            Some(sequence)
        };
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

    #[inline]
    pub(super) fn pick(&self) -> usize {
        let n = self.next.fetch_add(1, Relaxed);
        match &self.sequence {
            None => n % self.len,
            Some(sequence) => sequence[n % sequence.len()] as usize,
        }
    }
}
