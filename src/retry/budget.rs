//! The retry budget: a lock-free take on Finagle's (and tower's
//! `TpsBudget`).
//!
//! Every request deposits one unit; a retry withdraws `1 / ratio` units,
//! and `min_per_second × window` retries are allowed on top. Deposits and
//! withdrawals expire after the window, kept in ten buckets whose stale
//! contents the first writer of a new period clears. tower's `TpsBudget`
//! takes a mutex on every deposit; this one takes none, which is most of
//! the retry layer's cost on the success path (see docs/adr/0002).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

const BUCKETS: u64 = 10;

#[derive(Debug, Default)]
struct Bucket {
    epoch: AtomicU64,
    deposits: AtomicI64,
    withdrawals: AtomicI64,
}

#[derive(Debug)]
pub(super) struct RetryBudget {
    base: Instant,
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS as usize],
    /// Units one retry costs, in thousandths of a deposit.
    cost: i64,
    /// Retries always allowed per window, in thousandths of a deposit.
    reserve: i64,
}

impl RetryBudget {
    /// `ratio` in [0, 1]; `window` from 1 to 60 s (checked by the config).
    pub(super) fn new(ratio: f64, min_per_second: u32, window: Duration) -> Self {
        let window_ms = window.as_millis().max(1) as u64;
        let cost = if ratio > 0.0 {
            (1000.0 / ratio).min(i64::MAX as f64 / 4.0) as i64
        } else {
            i64::MAX / 4
        };
        let reserve = i64::from(min_per_second)
            .saturating_mul(window.as_secs() as i64)
            .saturating_mul(cost);
        Self {
            base: Instant::now(),
            bucket_ms: (window_ms / BUCKETS).max(1),
            buckets: Default::default(),
            cost,
            reserve,
        }
    }

    fn epoch(&self) -> u64 {
        let elapsed = crate::clock::now().saturating_duration_since(self.base);
        (elapsed.as_secs() * 1000 + u64::from(elapsed.subsec_millis())) / self.bucket_ms + 1
    }

    fn current(&self, epoch: u64) -> &Bucket {
        let bucket = &self.buckets[(epoch % BUCKETS) as usize];
        let seen = bucket.epoch.load(Relaxed);
        if seen != epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.deposits.store(0, Relaxed);
            bucket.withdrawals.store(0, Relaxed);
        }
        bucket
    }

    /// Records one request.
    pub(super) fn deposit(&self) {
        self.current(self.epoch()).deposits.fetch_add(1, Relaxed);
    }

    /// Takes one retry, if the budget has it. Concurrent withdrawals can
    /// overdraw by the number of racing callers; the next ones see it.
    pub(super) fn withdraw(&self) -> bool {
        let epoch = self.epoch();
        let oldest = epoch.saturating_sub(BUCKETS - 1).max(1);
        let (deposits, withdrawals) = self
            .buckets
            .iter()
            .filter(|b| (oldest..=epoch).contains(&b.epoch.load(Relaxed)))
            .fold((0i64, 0i64), |(d, w), b| {
                (
                    d + b.deposits.load(Relaxed),
                    w + b.withdrawals.load(Relaxed),
                )
            });
        let balance = self.reserve + deposits * 1000 - withdrawals * self.cost;
        if balance < self.cost {
            return false;
        }
        self.current(epoch).withdrawals.fetch_add(1, Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ratio_and_reserve() {
        let budget = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        assert!(!budget.withdraw());
        for _ in 0..10 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw(), "20% of 10 requests");

        // Deposits expire with the window.
        tokio::time::advance(Duration::from_secs(11)).await;
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(!budget.withdraw());

        let reserve = RetryBudget::new(0.2, 1, Duration::from_secs(10));
        let allowed = (0..20).filter(|_| reserve.withdraw()).count();
        assert_eq!(allowed, 10, "one per second over a 10 s window");
    }
}
