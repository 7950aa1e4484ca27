//! The retry budget: a lock-free take on Finagle's (and tower's
//! `TpsBudget`).
//!
//! Every request deposits one unit; a retry withdraws `1 / ratio` units,
//! and `min_per_second × window` retries are allowed on top. Deposits and
//! withdrawals expire after the window, kept in the crate's lock-free
//! sliding window.
//!
//! A deposit is one relaxed atomic increment and no clock reading: deposits
//! gather in a pending counter that is folded into the window (dated by
//! the fold) before every withdrawal and at every 64th deposit. So at most
//! 63 deposits are ever dated later than they happened, which bounds how
//! far a quiet period can inflate the budget. tower's `TpsBudget`
//! takes a mutex on every deposit; this one takes none, which is most of
//! the retry layer's cost on the success path (see docs/adr/0002).

use crate::window::SlidingWindow;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

const DEPOSITS: usize = 0;
const WITHDRAWALS: usize = 1;

/// Deposits between two folds, at most.
const FOLD_EVERY: i64 = 64;

#[derive(Debug)]
pub(super) struct RetryBudget {
    window: SlidingWindow,
    pending: AtomicI64,
    /// Units one retry costs, in thousandths of a deposit.
    cost: i64,
    /// Retries always allowed per window, in thousandths of a deposit.
    reserve: i64,
}

impl RetryBudget {
    /// `ratio` in [0, 1]; `window` from 1 to 60 s (checked by the config).
    pub(super) fn new(ratio: f64, min_per_second: u32, window: Duration) -> Self {
        let cost = if ratio > 0.0 {
            (1000.0 / ratio).min(i64::MAX as f64 / 4.0) as i64
        } else {
            i64::MAX / 4
        };
        let reserve = i64::from(min_per_second)
            .saturating_mul(window.as_secs() as i64)
            .saturating_mul(cost);
        Self {
            window: SlidingWindow::new(window),
            pending: AtomicI64::new(0),
            cost,
            reserve,
        }
    }

    /// Records one request.
    #[inline]
    pub(super) fn deposit(&self) {
        if self.pending.fetch_add(1, Relaxed) % FOLD_EVERY == FOLD_EVERY - 1 {
            self.fold();
        }
    }

    fn fold(&self) {
        let pending = self.pending.swap(0, Relaxed);
        if pending > 0 {
            self.window.add_n(DEPOSITS, pending);
        }
    }

    /// Takes one retry, if the budget has it. Concurrent withdrawals can
    /// overdraw by the number of racing callers; the next ones see it.
    pub(super) fn withdraw(&self) -> bool {
        self.fold();
        let [deposits, withdrawals] = self.window.totals();
        let balance = self
            .reserve
            .saturating_add(deposits.saturating_mul(1000))
            .saturating_sub(withdrawals.saturating_mul(self.cost));
        if balance < self.cost {
            return false;
        }
        self.window.add(WITHDRAWALS);
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

        // Deposits folded by count, without a withdrawal, age with the window.
        let folded = RetryBudget::new(1.0, 0, Duration::from_secs(10));
        for _ in 0..FOLD_EVERY {
            folded.deposit();
        }
        assert_eq!(folded.pending.load(Relaxed), 0);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!folded.withdraw(), "the folded deposits expired");

        let reserve = RetryBudget::new(0.2, 1, Duration::from_secs(10));
        let allowed = (0..20).filter(|_| reserve.withdraw()).count();
        assert_eq!(allowed, 10, "one per second over a 10 s window");
    }
}
