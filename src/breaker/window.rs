//! A lock-free sliding window of success and failure counts.
//!
//! The window is split into buckets of equal length; a bucket whose epoch
//! is stale is reset by the first writer that notices. A count written by
//! another thread between that reset's two steps can be lost: the rate is
//! an estimate, which is all a breaker needs, and no lock is taken.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const BUCKETS: u64 = 10;

#[derive(Debug, Default)]
struct Bucket {
    epoch: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Window {
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS as usize],
}

impl Window {
    pub(super) fn new(window_ms: u64) -> Self {
        Self {
            bucket_ms: (window_ms / BUCKETS).max(1),
            buckets: Default::default(),
        }
    }

    /// Records one result at `now_ms` (milliseconds since the breaker was
    /// made). Epochs are stored plus one, so that a fresh bucket (epoch 0)
    /// is never mistaken for a current one.
    pub(super) fn record(&self, now_ms: u64, failure: bool) {
        let epoch = now_ms / self.bucket_ms + 1;
        let bucket = &self.buckets[(epoch % BUCKETS) as usize];
        let seen = bucket.epoch.load(Relaxed);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.successes.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
        }
        let counter = if failure {
            &bucket.failures
        } else {
            &bucket.successes
        };
        counter.fetch_add(1, Relaxed);
    }

    /// `(requests, failures)` over the window ending at `now_ms`.
    pub(super) fn totals(&self, now_ms: u64) -> (u64, u64) {
        let current = now_ms / self.bucket_ms + 1;
        let oldest = current.saturating_sub(BUCKETS - 1).max(1);
        self.buckets
            .iter()
            .filter(|b| (oldest..=current).contains(&b.epoch.load(Relaxed)))
            .fold((0, 0), |(total, failed), b| {
                let f = b.failures.load(Relaxed);
                (total + f + b.successes.load(Relaxed), failed + f)
            })
    }

    pub(super) fn reset(&self) {
        for bucket in &self.buckets {
            bucket.epoch.store(0, Relaxed);
            bucket.successes.store(0, Relaxed);
            bucket.failures.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_the_window() {
        let w = Window::new(1000);
        for t in 0..10 {
            w.record(t * 100, t % 2 == 0);
        }
        assert_eq!(w.totals(999), (10, 5));
        // Half a window later the oldest half has slid out.
        assert_eq!(w.totals(1499), (5, 2));
        assert_eq!(w.totals(5000), (0, 0));
        w.record(5000, true);
        assert_eq!(w.totals(5000), (1, 1));
        w.reset();
        assert_eq!(w.totals(5000), (0, 0));
    }
}
