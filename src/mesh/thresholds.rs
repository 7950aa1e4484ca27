//! A cluster's thresholds: `max_requests` in flight, `max_pending` waiting
//! in line for one of those places, `max_retries` in flight. Past them a
//! request fails at once with [`ClusterOverloaded`](super::ClusterOverloaded).
//!
//! The state outlives configuration updates that keep the thresholds, so
//! that an update in the middle of a burst does not let a second burst in.

use crate::config::ThresholdsConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(super) struct Limits {
    thresholds: ThresholdsConfig,
    /// One permit per request in flight; waiters queue in arrival order.
    requests: Arc<Semaphore>,
    pending: Arc<AtomicU32>,
    retries: Arc<AtomicU32>,
}

/// A request counted against its cluster's thresholds, until dropped (when
/// its response body ends).
#[derive(Debug)]
pub(crate) struct ClusterPermit {
    _request: OwnedSemaphorePermit,
    _retry: Option<Slot>,
}

/// One unit of a counted threshold, given back when dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicU32>);

impl Slot {
    /// Takes a unit of `counter` if it is under `limit`.
    fn take(counter: &Arc<AtomicU32>, limit: u32) -> Option<Self> {
        let before = counter.fetch_add(1, Ordering::Relaxed);
        let slot = Self(counter.clone());
        (before < limit).then_some(slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Limits {
    pub(super) fn new(thresholds: ThresholdsConfig) -> Self {
        Self {
            thresholds,
            requests: Arc::new(Semaphore::new(thresholds.max_requests as usize)),
            pending: Arc::default(),
            retries: Arc::default(),
        }
    }

    pub(super) fn thresholds(&self) -> ThresholdsConfig {
        self.thresholds
    }

    /// A permit, at once or after waiting in line; or the threshold that
    /// refused it, with its value.
    pub(super) async fn admit(&self, retry: bool) -> Result<ClusterPermit, (&'static str, u32)> {
        let t = self.thresholds;
        let retry = match retry {
            true => Some(
                Slot::take(&self.retries, t.max_retries).ok_or(("max_retries", t.max_retries))?,
            ),
            false => None,
        };
        let request = match self.requests.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = Slot::take(&self.pending, t.max_pending)
                    .ok_or(("max_pending", t.max_pending))?;
                // The semaphore is never closed.
                self.requests
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ("max_requests", t.max_requests))?
            }
        };
        Ok(ClusterPermit {
            _request: request,
            _retry: retry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn limits(max_requests: u32, max_pending: u32, max_retries: u32) -> Limits {
        Limits::new(ThresholdsConfig {
            max_requests,
            max_pending,
            max_retries,
        })
    }

    fn now<F: Future>(f: F) -> Poll<F::Output> {
        pin!(f)
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn requests_past_max_requests_wait_in_line_and_past_max_pending_fail() {
        let limits = limits(1, 1, 1);
        let Poll::Ready(Ok(first)) = now(limits.admit(false)) else {
            unreachable!("the first request goes at once")
        };
        let mut second = Box::pin(limits.admit(false));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(
            second.as_mut().poll(&mut cx).is_pending(),
            "it waits in line"
        );
        assert!(matches!(
            now(limits.admit(false)),
            Poll::Ready(Err(("max_pending", 1)))
        ));
        drop(first);
        let Poll::Ready(Ok(second)) = second.as_mut().poll(&mut cx) else {
            unreachable!("the place freed goes to the one waiting")
        };
        assert!(
            matches!(now(limits.admit(true)), Poll::Pending),
            "a retry may wait too"
        );
        drop(second);
    }

    #[test]
    fn retries_past_max_retries_fail_at_once() {
        let limits = limits(10, 10, 1);
        let Poll::Ready(Ok(retry)) = now(limits.admit(true)) else {
            unreachable!()
        };
        assert!(matches!(
            now(limits.admit(true)),
            Poll::Ready(Err(("max_retries", 1)))
        ));
        assert!(matches!(now(limits.admit(false)), Poll::Ready(Ok(_))));
        drop(retry);
        assert!(matches!(now(limits.admit(true)), Poll::Ready(Ok(_))));
    }
}
