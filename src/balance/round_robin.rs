//! Smooth weighted round robin, precomputed.
//!
//! The sequence nginx's smooth weighted round robin produces is computed
//! once per endpoint set; a pick is one atomic increment and one load.
//! Weights whose sum exceeds the sequence cap are scaled down first (each
//! endpoint keeping at least one slot).

use super::PickerEndpoint;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const MAX_SEQUENCE: u64 = 1 << 20;

#[derive(Debug)]
pub(super) struct RoundRobin {
    sequence: Vec<u32>,
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
        let sequence = if weights.iter().all(|&w| w == weights[0]) {
            (0..endpoints.len() as u32).collect()
        } else {
            let mut current = vec![0i64; weights.len()];
            (0..total)
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
                .collect()
        };
        Self {
            sequence,
            // Clients start at different places, so that they do not all
            // hit the first endpoint together.
            next: AtomicUsize::new(fastrand::usize(..)),
        }
    }

    #[inline]
    pub(super) fn pick(&self) -> usize {
        let n = self.next.fetch_add(1, Relaxed);
        self.sequence[n % self.sequence.len()] as usize
    }
}
