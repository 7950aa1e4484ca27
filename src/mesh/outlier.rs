//! Outlier detection, with Envoy's semantics: endpoints that fail are
//! ejected from load balancing for a time that grows with each ejection,
//! and never more than `max_ejection_percent` of a cluster at once.
//!
//! Results are counted per endpoint with atomics. Consecutive-failure
//! triggers act at once; success-rate and failure-percentage triggers are
//! evaluated once per `interval`, by whichever completing request first
//! finds the interval over (the others never wait).

use super::cluster_metrics::{EjectionCounters, EjectionReason};
use crate::config::OutlierDetectionConfig;
use crate::cow_list::CowList;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// What one response said about its endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Result_ {
    Success,
    /// An HTTP 5xx; `gateway` for 502, 503 and 504.
    ServerError {
        gateway: bool,
    },
    /// A failure that originated here: connect error, reset, timeout.
    /// Unless the cluster counts them apart, it counts as a gateway error.
    LocalFailure,
}

/// Per-endpoint counters; they outlive snapshots with the endpoint.
#[derive(Debug, Default)]
pub(super) struct EndpointOutlier {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// Milliseconds since the detector's base until which the endpoint is
    /// ejected; 0 when it is not.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    interval_successes: AtomicU64,
    interval_failures: AtomicU64,
}

impl EndpointOutlier {
    pub(super) fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Relaxed) > now_ms
    }

    /// When the ejection ends, if ejected.
    pub(super) fn ejected_until(&self) -> Option<u64> {
        Some(self.ejected_until.load(Relaxed)).filter(|&t| t != 0)
    }
}

/// A cluster's endpoints' outlier state, in endpoint order.
pub(super) type Outliers = CowList<Arc<EndpointOutlier>>;

/// A cluster's detector.
#[derive(Debug)]
pub(super) struct Detector {
    config: OutlierDetectionConfig,
    base: Instant,
    ejected: AtomicUsize,
    /// Counts ejections, releases and forgotten ejections: a picker built
    /// at one count is stale at another.
    epoch: AtomicU64,
    next_evaluation: AtomicU64,
    evaluating: Mutex<()>,
    /// `sinew_outlier_ejections_total` of the cluster.
    ejections: EjectionCounters,
}

impl Detector {
    #[cfg(test)]
    pub(super) fn new(config: OutlierDetectionConfig) -> Self {
        Self::following(config, None, &Outliers::default(), "test")
    }

    /// A detector for endpoints whose state may come from an earlier
    /// detector's: it keeps that detector's clock (ejection times are kept
    /// on it) and counts the ejections it finds.
    pub(super) fn following(
        config: OutlierDetectionConfig,
        previous: Option<&Detector>,
        all: &Outliers,
        cluster: &str,
    ) -> Self {
        let interval = crate::bounds::millis(config.interval);
        let base = previous.map_or_else(Instant::now, |p| p.base);
        let ejected = all.iter().filter(|o| o.ejected_until().is_some()).count();
        Self {
            config,
            base,
            ejected: AtomicUsize::new(ejected),
            epoch: AtomicU64::new(0),
            next_evaluation: AtomicU64::new(interval),
            evaluating: Mutex::new(()),
            // Registered once per cluster, kept by the detectors after.
            ejections: previous
                .map_or_else(|| EjectionCounters::new(cluster), |p| p.ejections.clone()),
        }
    }

    /// See the field.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    pub(super) fn now_ms(&self) -> u64 {
        crate::clock::millis_since(self.base)
    }

    /// Records a result; returns true when it ejected an endpoint (so that
    /// the picker is rebuilt).
    pub(super) fn record(
        &self,
        all: &Outliers,
        endpoint: &EndpointOutlier,
        result: Result_,
    ) -> bool {
        let c = &self.config;
        // The first check that trips names the ejection.
        let mut eject = None;
        let mut trip = |tripped: bool, reason: EjectionReason| {
            if tripped && eject.is_none() {
                eject = Some(reason);
            }
        };
        // Not split (Envoy's default): a local failure is a gateway error.
        let result = match (result, c.consecutive_local_origin_failure) {
            (Result_::LocalFailure, None) => Result_::ServerError { gateway: true },
            (result, _) => result,
        };
        match result {
            Result_::Success => {
                endpoint.interval_successes.fetch_add(1, Relaxed);
                for counter in [
                    &endpoint.consecutive_5xx,
                    &endpoint.consecutive_gateway,
                    &endpoint.consecutive_local,
                ] {
                    if counter.load(Relaxed) != 0 {
                        counter.store(0, Relaxed);
                    }
                }
            }
            Result_::ServerError { gateway } => {
                endpoint.interval_failures.fetch_add(1, Relaxed);
                let n = endpoint.consecutive_5xx.fetch_add(1, Relaxed) + 1;
                trip(
                    c.consecutive_5xx.is_some_and(|t| n >= t),
                    EjectionReason::Consecutive5xx,
                );
                if gateway {
                    let n = endpoint.consecutive_gateway.fetch_add(1, Relaxed) + 1;
                    trip(
                        c.consecutive_gateway_failure.is_some_and(|t| n >= t),
                        EjectionReason::ConsecutiveGatewayFailure,
                    );
                } else {
                    endpoint.consecutive_gateway.store(0, Relaxed);
                }
            }
            Result_::LocalFailure => {
                // Split: counted on its own, not in the server's rates.
                let n = endpoint.consecutive_local.fetch_add(1, Relaxed) + 1;
                trip(
                    c.consecutive_local_origin_failure.is_some_and(|t| n >= t),
                    EjectionReason::ConsecutiveLocalOriginFailure,
                );
            }
        }
        let now = self.now_ms();
        let mut changed = eject.is_some_and(|reason| self.eject(all.len(), endpoint, now, reason));
        if now >= self.next_evaluation.load(Relaxed) {
            changed |= self.evaluate(all, now);
        }
        changed
    }

    /// Ejects `endpoint` unless the cluster is at its ejection limit.
    fn eject(
        &self,
        total: usize,
        endpoint: &EndpointOutlier,
        now: u64,
        reason: EjectionReason,
    ) -> bool {
        if endpoint.is_ejected(now) {
            return false;
        }
        let ejected = self.ejected.load(Relaxed);
        // Envoy's rule: eject while the ejected share is under the limit.
        if ejected * 100 >= total * self.config.max_ejection_percent as usize {
            return false;
        }
        self.ejected.fetch_add(1, Relaxed);
        let n = endpoint.ejections.fetch_add(1, Relaxed) + 1;
        let base = crate::bounds::millis(self.config.base_ejection_time);
        let max = crate::bounds::millis(self.config.max_ejection_time).max(base);
        let time = base.saturating_mul(u64::from(n)).min(max);
        endpoint
            .ejected_until
            .store(now.saturating_add(time), Relaxed);
        self.epoch.fetch_add(1, Relaxed);
        for counter in [
            &endpoint.consecutive_5xx,
            &endpoint.consecutive_gateway,
            &endpoint.consecutive_local,
        ] {
            counter.store(0, Relaxed);
        }
        self.ejections.ejected(reason);
        tracing::info!(ejections = n, ms = time, ?reason, "outlier ejected");
        true
    }

    /// Forgets a removed endpoint, giving back its place under
    /// `max_ejection_percent` if it was ejected.
    pub(super) fn forget(&self, endpoint: &EndpointOutlier) {
        if endpoint.ejected_until.swap(0, Relaxed) != 0 {
            self.ejected.fetch_sub(1, Relaxed);
            self.epoch.fetch_add(1, Relaxed);
        }
    }

    /// Returns endpoints whose ejection time has passed; true if any did.
    pub(super) fn release(&self, all: &Outliers, now: u64) -> bool {
        let mut released = false;
        for endpoint in all.iter() {
            let until = endpoint.ejected_until.load(Relaxed);
            if until != 0
                && until <= now
                && endpoint
                    .ejected_until
                    .compare_exchange(until, 0, Relaxed, Relaxed)
                    .is_ok()
            {
                self.ejected.fetch_sub(1, Relaxed);
                self.epoch.fetch_add(1, Relaxed);
                released = true;
            }
        }
        released
    }

    /// The success-rate and failure-percentage checks of one interval.
    fn evaluate(&self, all: &Outliers, now: u64) -> bool {
        let Ok(_only_one) = self.evaluating.try_lock() else {
            return false;
        };
        let interval = crate::bounds::millis(self.config.interval);
        self.next_evaluation
            .store(now.saturating_add(interval), Relaxed);
        let stats: Vec<(u64, u64)> = all
            .iter()
            .map(|e| {
                (
                    e.interval_successes.swap(0, Relaxed),
                    e.interval_failures.swap(0, Relaxed),
                )
            })
            .collect();
        let mut changed = false;
        if let Some(sr) = &self.config.success_rate {
            let rates: Vec<(usize, f64)> = stats
                .iter()
                .enumerate()
                .filter(|(_, (s, f))| s + f >= u64::from(sr.request_volume))
                .map(|(i, (s, f))| (i, *s as f64 / (s + f) as f64))
                .collect();
            if rates.len() >= sr.minimum_hosts as usize {
                let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / rates.len() as f64;
                let variance =
                    rates.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / rates.len() as f64;
                let floor = mean - sr.stdev_factor * variance.sqrt();
                for (i, rate) in rates {
                    if rate < floor
                        && let Some(endpoint) = all.get(i)
                    {
                        changed |=
                            self.eject(all.len(), endpoint, now, EjectionReason::SuccessRate);
                    }
                }
            }
        }
        if let Some(fp) = &self.config.failure_percentage {
            let qualified: Vec<(usize, f64)> = stats
                .iter()
                .enumerate()
                .filter(|(_, (s, f))| s + f >= u64::from(fp.request_volume))
                .map(|(i, (s, f))| (i, *f as f64 * 100.0 / (s + f) as f64))
                .collect();
            if qualified.len() >= fp.minimum_hosts as usize {
                for (i, percent) in qualified {
                    if percent >= f64::from(fp.threshold)
                        && let Some(endpoint) = all.get(i)
                    {
                        changed |=
                            self.eject(all.len(), endpoint, now, EjectionReason::FailurePercentage);
                    }
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(all: &Outliers, i: usize) -> Arc<EndpointOutlier> {
        all.get(i).cloned().unwrap_or_default()
    }

    fn detector(max_percent: u32) -> Detector {
        Detector::new(OutlierDetectionConfig {
            consecutive_5xx: Some(3),
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: max_percent,
            ..OutlierDetectionConfig::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_errors_eject_for_a_growing_time() {
        let d = detector(50);
        let all: Outliers = (0..4).map(|_| Arc::default()).collect();
        let error = Result_::ServerError { gateway: false };
        assert!(!d.record(&all, &at(&all, 0), error));
        assert!(
            !d.record(&all, &at(&all, 0), Result_::Success),
            "a success resets the count"
        );
        assert!(!d.record(&all, &at(&all, 0), error));
        assert!(!d.record(&all, &at(&all, 0), error));
        assert!(d.record(&all, &at(&all, 0), error), "three in a row");
        assert!(at(&all, 0).is_ejected(d.now_ms()));

        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(d.release(&all, d.now_ms()));
        assert!(!at(&all, 0).is_ejected(d.now_ms()));
        for _ in 0..3 {
            d.record(&all, &at(&all, 0), error);
        }
        // The second ejection lasts twice as long, the third is capped.
        tokio::time::advance(Duration::from_secs(19)).await;
        assert!(at(&all, 0).is_ejected(d.now_ms()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(d.release(&all, d.now_ms()));
        for _ in 0..3 {
            d.record(&all, &at(&all, 0), error);
        }
        tokio::time::advance(Duration::from_secs(25)).await;
        assert!(d.release(&all, d.now_ms()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_removed_ejected_endpoint_gives_its_place_back() {
        let d = detector(25);
        let mut all: Outliers = (0..4).map(|_| Arc::default()).collect();
        let error = Result_::ServerError { gateway: false };
        for _ in 0..3 {
            d.record(&all, &at(&all, 0), error);
            d.record(&all, &at(&all, 1), error);
        }
        assert!(at(&all, 0).is_ejected(d.now_ms()));
        assert!(
            !at(&all, 1).is_ejected(d.now_ms()),
            "one in four is the limit"
        );
        let epoch = d.epoch();
        if let Some(gone) = all.swap_remove(0) {
            d.forget(&gone);
        }
        assert_ne!(d.epoch(), epoch, "pickers built before are stale");
        // A detector following this one (a new configuration) keeps its
        // clock and its count.
        let next = Detector::following(d.config.clone(), Some(&d), &all, "test");
        assert_eq!(next.base, d.base);
        assert_eq!(next.ejected.load(Relaxed), 0);
        for _ in 0..3 {
            next.record(&all, &at(&all, 1), error);
        }
        let ejected = all.iter().filter(|o| o.is_ejected(next.now_ms())).count();
        assert_eq!(ejected, 1, "the place the removed endpoint held is free");
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_ejection_limit() {
        let d = detector(50);
        let all: Outliers = (0..4).map(|_| Arc::default()).collect();
        for e in all.iter() {
            for _ in 0..3 {
                d.record(&all, e, Result_::LocalFailure);
                d.record(&all, e, Result_::ServerError { gateway: true });
            }
        }
        let ejected = all.iter().filter(|e| e.is_ejected(d.now_ms())).count();
        assert_eq!(ejected, 2, "50% of 4");
    }

    #[tokio::test(start_paused = true)]
    async fn failure_percentage_is_evaluated_per_interval() {
        let d = Detector::new(OutlierDetectionConfig {
            consecutive_5xx: None,
            consecutive_local_origin_failure: None,
            interval: Duration::from_secs(1),
            max_ejection_percent: 100,
            failure_percentage: Some(crate::config::FailurePercentageConfig {
                threshold: 50,
                minimum_hosts: 3,
                request_volume: 10,
            }),
            ..OutlierDetectionConfig::default()
        });
        let all: Outliers = (0..3).map(|_| Arc::default()).collect();
        for i in 0..20 {
            for (n, e) in all.iter().enumerate() {
                let fail = n == 2 && i % 3 != 0;
                let result = if fail {
                    Result_::ServerError { gateway: false }
                } else {
                    Result_::Success
                };
                assert!(
                    !d.record(&all, e, result),
                    "nothing before the interval ends"
                );
            }
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(d.record(&all, &at(&all, 0), Result_::Success));
        assert!(at(&all, 2).is_ejected(d.now_ms()));
        assert!(!at(&all, 0).is_ejected(d.now_ms()) && !at(&all, 1).is_ejected(d.now_ms()));
    }

    #[tokio::test(start_paused = true)]
    async fn local_failures_count_as_gateway_errors_unless_split() {
        // Envoy's default: connect errors and timeouts are 5xx. They used
        // to be counted only apart, so an unreachable endpoint of a
        // cluster configured from xDS without the split was never ejected.
        let d = detector(100);
        let all: Outliers = (0..2).map(|_| Arc::default()).collect();
        for _ in 0..2 {
            assert!(!d.record(&all, &at(&all, 0), Result_::LocalFailure));
        }
        assert!(d.record(&all, &at(&all, 0), Result_::LocalFailure));

        // Split: counted apart, by their own threshold, not as 5xx.
        let split = Detector::new(OutlierDetectionConfig {
            consecutive_5xx: Some(1),
            consecutive_local_origin_failure: Some(2),
            max_ejection_percent: 100,
            ..OutlierDetectionConfig::default()
        });
        assert!(!split.record(&all, &at(&all, 1), Result_::LocalFailure));
        assert!(split.record(&all, &at(&all, 1), Result_::LocalFailure));
    }

    #[tokio::test(start_paused = true)]
    async fn success_rate_ejects_below_mean_minus_stdev_factor_deviations() {
        let d = Detector::new(OutlierDetectionConfig {
            consecutive_5xx: None,
            interval: Duration::from_secs(1),
            max_ejection_percent: 100,
            success_rate: Some(crate::config::SuccessRateConfig {
                minimum_hosts: 5,
                request_volume: 10,
                stdev_factor: 1.0,
            }),
            ..OutlierDetectionConfig::default()
        });
        let all: Outliers = (0..6).map(|_| Arc::default()).collect();
        // Five endpoints at 100% and one at 50%: mean 91.7%, stdev 18.6%.
        for i in 0..20 {
            for (n, e) in all.iter().enumerate() {
                let result = if n == 5 && i % 2 == 0 {
                    Result_::ServerError { gateway: false }
                } else {
                    Result_::Success
                };
                d.record(&all, e, result);
            }
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(d.record(&all, &at(&all, 0), Result_::Success));
        let ejected: Vec<usize> = (0..6)
            .filter(|&i| at(&all, i).is_ejected(d.now_ms()))
            .collect();
        assert_eq!(ejected, [5]);
    }
}
