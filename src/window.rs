//! A lock-free sliding window of two counters, shared by the breaker
//! (successes, failures) and the retry budget (deposits, withdrawals).
//!
//! The window is split into ten buckets of equal length; a bucket whose
//! epoch is stale is reset by the first writer that notices. A count
//! written by another thread between that reset's two steps can be lost:
//! the totals are estimates, which is all a breaker or a budget needs, and
//! no lock is ever taken.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

const BUCKETS: u64 = 10;

#[derive(Debug, Default)]
struct Bucket {
    epoch: AtomicU64,
    counts: [AtomicI64; 2],
}

#[derive(Debug)]
pub(crate) struct SlidingWindow {
    base: Instant,
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS as usize],
}

impl SlidingWindow {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            base: crate::clock::now(),
            bucket_ms: (window.as_millis() as u64 / BUCKETS).max(1),
            buckets: Default::default(),
        }
    }

    /// The current bucket's epoch. Epochs start at one, so that a fresh or
    /// reset bucket (epoch 0) is never mistaken for a current one.
    fn epoch(&self) -> u64 {
        crate::clock::millis_since(self.base) / self.bucket_ms + 1
    }

    /// Adds one to counter `which` (0 or 1) in the current bucket.
    pub(crate) fn add(&self, which: usize) {
        self.add_n(which, 1);
    }

    /// Adds `n` to counter `which` (0 or 1) in the current bucket.
    pub(crate) fn add_n(&self, which: usize, n: i64) {
        let epoch = self.epoch();
        let bucket = &self.buckets[(epoch % BUCKETS) as usize];
        let seen = bucket.epoch.load(Relaxed);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.counts[0].store(0, Relaxed);
            bucket.counts[1].store(0, Relaxed);
        }
        bucket.counts[which & 1].fetch_add(n, Relaxed);
    }

    /// Both counters summed over the window.
    pub(crate) fn totals(&self) -> [i64; 2] {
        let current = self.epoch();
        let oldest = current.saturating_sub(BUCKETS - 1).max(1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=current).contains(&b.epoch.load(Relaxed)))
            .fold([0, 0], |[a, b], bucket| {
                [
                    a + bucket.counts[0].load(Relaxed),
                    b + bucket.counts[1].load(Relaxed),
                ]
            })
    }

    /// Forgets everything counted so far.
    #[cfg_attr(not(feature = "breaker"), allow(dead_code))]
    pub(crate) fn reset(&self) {
        for bucket in &self.buckets {
            bucket.epoch.store(0, Relaxed);
            bucket.counts[0].store(0, Relaxed);
            bucket.counts[1].store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_only_the_window() {
        let w = SlidingWindow::new(Duration::from_secs(1));
        for t in 0..10 {
            if t > 0 {
                tokio::time::advance(Duration::from_millis(100)).await;
            }
            w.add(t % 2);
        }
        assert_eq!(w.totals(), [5, 5]);
        // Half a window later the oldest half has slid out.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(w.totals(), [2, 3]);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(w.totals(), [0, 0]);
        w.add(1);
        assert_eq!(w.totals(), [0, 1]);
        w.reset();
        assert_eq!(w.totals(), [0, 0]);
    }
}
