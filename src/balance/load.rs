use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;
use tokio::time::Instant;

/// The load of one endpoint: requests in flight and a Peak-EWMA latency
/// estimate. It outlives pickers: an update that keeps the endpoint keeps
/// its load.
///
/// Peak-EWMA (Finagle, Linkerd): a latency above the estimate replaces it
/// at once; one below it pulls the estimate down with a time constant
/// (10 s), so a slow endpoint is avoided at once and trusted again slowly.
#[derive(Debug)]
pub struct EndpointLoad {
    inflight: AtomicU32,
    /// Estimate in nanoseconds.
    ewma_nanos: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `base`.
    stamp_nanos: AtomicU64,
    base: Instant,
}

/// The latency assumed for an endpoint with no samples yet: optimistic, so
/// that new endpoints get tried.
const INITIAL: Duration = Duration::from_millis(1);
/// How fast the estimate forgets a peak.
const DECAY: Duration = Duration::from_secs(10);

impl Default for EndpointLoad {
    fn default() -> Self {
        Self {
            inflight: AtomicU32::new(0),
            ewma_nanos: AtomicU64::new(INITIAL.as_nanos() as u64),
            stamp_nanos: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

impl EndpointLoad {
    /// Requests in flight.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(SeqCst)
    }

    /// The latency estimate: fed by the mesh's clients, and by a
    /// [`Balance`](super::Balance) service balancing by P2C Peak-EWMA (the
    /// one policy that reads it; under the others it saves the clock
    /// readings).
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.ewma_nanos.load(Relaxed))
    }

    /// Counts a request as in flight until the returned guard is finished
    /// (or dropped, for a request that ended without a latency sample).
    pub fn start(self: &std::sync::Arc<Self>) -> InFlight {
        // SeqCst: ordered before the pick's staleness check (see
        // `EndpointSet::is_stale`); a locked add either way on x86.
        self.inflight.fetch_add(1, SeqCst);
        InFlight {
            load: self.clone(),
            // The stack's shared reading when a layer above took one for
            // this call: nanoseconds apart, and one clock reading fewer.
            started: Some(crate::clock::now()),
        }
    }

    /// Counts a request as in flight, without timing it: for pickers that
    /// do not read latency.
    pub(crate) fn start_untimed(self: &std::sync::Arc<Self>) -> InFlight {
        // SeqCst: ordered before the pick's staleness check (see
        // `EndpointSet::is_stale`); a locked add either way on x86.
        self.inflight.fetch_add(1, SeqCst);
        InFlight {
            load: self.clone(),
            started: None,
        }
    }

    /// Peak-EWMA cost: latency × (in flight + 1), in nanoseconds.
    #[inline]
    pub(super) fn cost(&self) -> f64 {
        self.ewma_nanos.load(Relaxed) as f64 * f64::from(self.inflight.load(Relaxed) + 1)
    }

    /// Feeds one latency sample taken at `at`: one clock reading serves
    /// both the sample and its time stamp (a reading costs about as much as
    /// the rest of the update).
    fn observe(&self, rtt: Duration, at: Instant) {
        let now = at.saturating_duration_since(self.base).as_nanos() as u64;
        let rtt = rtt.as_nanos() as u64;
        // Not a swap: racing updates are tolerated (below), and a plain
        // load and store spare a locked instruction.
        let previous = self.stamp_nanos.load(Relaxed);
        self.stamp_nanos.store(now, Relaxed);
        let estimate = self.ewma_nanos.load(Relaxed);
        let next = if rtt > estimate {
            rtt
        } else {
            let elapsed = now.saturating_sub(previous) as f64;
            let w = (-elapsed / DECAY.as_nanos() as f64).exp();
            (estimate as f64 * w + rtt as f64 * (1.0 - w)) as u64
        };
        // Racing updates may overwrite each other; either value is a fair
        // estimate.
        self.ewma_nanos.store(next.max(1), Relaxed);
    }
}

/// A request in flight to an endpoint.
#[derive(Debug)]
pub struct InFlight {
    load: std::sync::Arc<EndpointLoad>,
    /// `None` when the request is not timed.
    started: Option<Instant>,
}

impl InFlight {
    /// Ends the request, feeding its latency to the estimate.
    pub fn finish(self) {
        self.observe();
    }

    /// Feeds the latency so far to the estimate (once the response has
    /// begun, say), keeping the request in flight until the guard is
    /// dropped (when the response's body ends).
    pub fn observe(&self) {
        let Some(started) = self.started else {
            return;
        };
        // Within a poll of a stack that read the clock, the same reading:
        // the response arrived before the poll began.
        let now = crate::clock::now();
        self.load
            .observe(now.saturating_duration_since(started), now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.load.inflight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn peaks_at_once_and_decays_slowly() {
        let load = Arc::new(EndpointLoad::default());
        let slow = load.start();
        assert_eq!(load.inflight(), 1);
        tokio::time::advance(Duration::from_millis(500)).await;
        slow.finish();
        assert_eq!(load.inflight(), 0);
        assert_eq!(
            load.latency(),
            Duration::from_millis(500),
            "a peak is taken at once"
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        let fast = load.start();
        tokio::time::advance(Duration::from_millis(10)).await;
        fast.finish();
        let after = load.latency();
        // One time constant later, the estimate moved about 63% of the way.
        assert!(
            after > Duration::from_millis(170) && after < Duration::from_millis(200),
            "{after:?}"
        );
    }
}
