//! The adaptive limit's control law, kept apart from the service so that
//! it can be reasoned about (and tested) as plain arithmetic.
//!
//! It follows Envoy's adaptive concurrency filter: a request takes about
//! the *minimum* round-trip time when the server is not queueing, and
//! longer when it is. Each sample window compares the window's average
//! latency with the measured minimum:
//!
//! ```text
//! gradient  = clamp(min_rtt * (1 + buffer) / sample_rtt, 0.5, 2.0)
//! new limit = gradient * limit + sqrt(gradient * limit)
//! ```
//!
//! Latency above the minimum shrinks the limit; latency at the minimum
//! grows it, by a headroom of about its square root, so that the limit
//! settles just above the concurrency the server can serve without
//! queueing. The minimum is measured at start and then periodically,
//! by pinning the limit to `min_limit` for a number of samples, since
//! the minimum cannot be observed while the server queues.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Params {
    pub(super) min_limit: usize,
    pub(super) max_limit: usize,
    pub(super) buffer: f64,
    pub(super) min_rtt_interval: Duration,
    pub(super) min_rtt_samples: u64,
}

#[derive(Debug)]
pub(super) enum Phase {
    /// Measuring the minimum latency at `min_limit`; the limit to go back
    /// to, and the samples so far.
    Measuring {
        resume: usize,
        sum: Duration,
        count: u64,
    },
    /// Adjusting the limit by the gradient, until `remeasure_at`.
    Adjusting {
        min_rtt: Duration,
        remeasure_at: Instant,
    },
}

#[derive(Debug)]
pub(super) struct Gradient {
    pub(super) params: Params,
    pub(super) phase: Phase,
}

impl Gradient {
    pub(super) fn new(params: Params, initial_limit: usize) -> Self {
        Self {
            params,
            phase: Phase::Measuring {
                resume: initial_limit,
                sum: Duration::ZERO,
                count: 0,
            },
        }
    }

    /// The limit to apply while starting.
    pub(super) fn initial(&self) -> usize {
        self.params.min_limit
    }

    /// Folds one window of samples (their total latency, their count and
    /// the most requests in flight) into a new limit.
    pub(super) fn update(
        &mut self,
        now: Instant,
        limit: usize,
        sum: Duration,
        count: u64,
        peak_inflight: usize,
    ) -> usize {
        if count == 0 {
            return limit;
        }
        let p = self.params;
        match &mut self.phase {
            Phase::Measuring {
                resume,
                sum: total,
                count: seen,
            } => {
                *total += sum;
                *seen += count;
                if *seen < p.min_rtt_samples {
                    return p.min_limit;
                }
                let min_rtt = *total / (*seen).max(1) as u32;
                let resume = *resume;
                self.phase = Phase::Adjusting {
                    min_rtt,
                    remeasure_at: now + jittered(p.min_rtt_interval),
                };
                resume
            }
            Phase::Adjusting {
                min_rtt,
                remeasure_at,
            } => {
                if now >= *remeasure_at {
                    self.phase = Phase::Measuring {
                        resume: limit,
                        sum: Duration::ZERO,
                        count: 0,
                    };
                    return p.min_limit;
                }
                let sample = sum.as_secs_f64() / count as f64;
                let target = min_rtt.as_secs_f64() * (1.0 + p.buffer);
                let gradient = if sample > 0.0 {
                    (target / sample).clamp(0.5, 2.0)
                } else {
                    2.0
                };
                let scaled = gradient * limit as f64;
                let mut next = (scaled + scaled.sqrt()) as usize;
                // Don't grow a limit the traffic never reached: it says
                // nothing about the server's capacity.
                if next > limit && peak_inflight < limit / 2 {
                    next = limit;
                }
                next.clamp(p.min_limit, p.max_limit)
            }
        }
    }
}

/// Spreads re-measurements of many clients apart (±15%).
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.85 + 0.3 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            min_limit: 2,
            max_limit: 1000,
            buffer: 0.1,
            min_rtt_interval: Duration::from_secs(60),
            min_rtt_samples: 10,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn measures_then_follows_the_gradient() {
        let mut g = Gradient::new(params(), 20);
        let now = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(g.initial(), 2);
        assert_eq!(g.update(now, 2, ms(50), 5, 2), 2, "still measuring");
        assert_eq!(
            g.update(now, 2, ms(50), 5, 2),
            20,
            "measured 10 ms, back to 20"
        );
        // At the minimum latency, the limit grows.
        assert_eq!(g.update(now, 20, ms(100), 10, 20), 26);
        // At twice the minimum, it shrinks.
        assert_eq!(g.update(now, 26, ms(200), 10, 26), 18);
        // Unused headroom does not grow.
        assert_eq!(g.update(now, 40, ms(100), 10, 5), 40);
        // Time to re-measure.
        let later = now + Duration::from_secs(70);
        assert_eq!(g.update(later, 40, ms(100), 10, 40), 2);
    }
}
