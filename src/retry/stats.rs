use std::sync::atomic::{AtomicU64, Ordering};

/// How many attempts a response took. Present in the response's
/// extensions only when there was more than one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempts(pub u32);

/// Which attempt a request is: present in the request extensions of
/// retries and hedges (2 for the first retry), absent on first attempts.
/// Layers below the retry layer use it, e.g. to enforce a cluster's
/// `max_retries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt(pub u32);

/// Counters of one [`RetryLayer`](super::RetryLayer), shared by every
/// service it made. Only the retry path counts: a request that succeeds at
/// once touches no counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Retries sent (attempts after the first, hedges excluded).
    pub retries: u64,
    /// Hedged attempts sent.
    pub hedges: u64,
    /// Retries or hedges the budget refused.
    pub budget_exhausted: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) retries: AtomicU64,
    pub(super) hedges: AtomicU64,
    pub(super) budget_exhausted: AtomicU64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> RetryStats {
        RetryStats {
            retries: self.retries.load(Ordering::Relaxed),
            hedges: self.hedges.load(Ordering::Relaxed),
            budget_exhausted: self.budget_exhausted.load(Ordering::Relaxed),
        }
    }
}
