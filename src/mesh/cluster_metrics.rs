//! A cluster's series, through the `metrics` facade:
//!
//! - `sinew_endpoints{cluster, state}`: the cluster's endpoints by state
//!   (`healthy`, `ejected`, `draining`, `unhealthy`), set when the
//!   endpoints or their states change (a new configuration, a change of
//!   endpoints, an ejection or its end), never per request;
//! - `sinew_outlier_ejections_total{cluster, reason}`: ejections by
//!   outlier detection, by the check that ejected.
//!
//! The handles are registered when the cluster's runtime is built, so a
//! change sets a few gauges and formats nothing.

use crate::config::Health;
use metrics::{Counter, Gauge};

/// The endpoints of each cluster, by state.
pub(crate) const ENDPOINTS: &str = "sinew_endpoints";
/// Outlier ejections, by reason.
pub(crate) const EJECTIONS: &str = "sinew_outlier_ejections_total";

/// The state of an endpoint as the gauge counts it: its configured health,
/// then whether outlier detection ejected it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EndpointState {
    Healthy,
    Ejected,
    Draining,
    Unhealthy,
}

impl EndpointState {
    const ALL: [Self; 4] = [
        Self::Healthy,
        Self::Ejected,
        Self::Draining,
        Self::Unhealthy,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Ejected => "ejected",
            Self::Draining => "draining",
            Self::Unhealthy => "unhealthy",
        }
    }

    /// Counts of endpoints by state, to [`EndpointGauges::show`].
    pub(super) fn counter() -> StateCounts {
        StateCounts([0; 4])
    }

    pub(super) fn of(health: Health, ejected: bool) -> Self {
        match health {
            Health::Draining => Self::Draining,
            Health::Unhealthy => Self::Unhealthy,
            Health::Healthy if ejected => Self::Ejected,
            Health::Healthy => Self::Healthy,
        }
    }
}

/// Endpoints by state, in the order of [`EndpointState::ALL`].
#[derive(Debug)]
pub(super) struct StateCounts([u64; 4]);

impl StateCounts {
    pub(super) fn add(&mut self, state: EndpointState) {
        self.0[state as usize] += 1;
    }
}

/// Which outlier check ejected an endpoint (Envoy's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EjectionReason {
    Consecutive5xx,
    ConsecutiveGatewayFailure,
    ConsecutiveLocalOriginFailure,
    SuccessRate,
    FailurePercentage,
}

impl EjectionReason {
    const ALL: [Self; 5] = [
        Self::Consecutive5xx,
        Self::ConsecutiveGatewayFailure,
        Self::ConsecutiveLocalOriginFailure,
        Self::SuccessRate,
        Self::FailurePercentage,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Consecutive5xx => "consecutive_5xx",
            Self::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            Self::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            Self::SuccessRate => "success_rate",
            Self::FailurePercentage => "failure_percentage",
        }
    }
}

/// A cluster's outlier ejection counters.
#[derive(Clone, Debug)]
pub(super) struct EjectionCounters([Counter; 5]);

impl EjectionCounters {
    pub(super) fn new(cluster: &str) -> Self {
        metrics::describe_counter!(
            EJECTIONS,
            "Endpoints ejected by outlier detection, by cluster and the check that ejected"
        );
        Self(EjectionReason::ALL.map(|r| {
            metrics::counter!(EJECTIONS, "cluster" => cluster.to_owned(), "reason" => r.as_str())
        }))
    }

    pub(super) fn ejected(&self, reason: EjectionReason) {
        // `ALL` lists the reasons in declaration order.
        self.0[reason as usize].increment(1);
    }
}

/// A cluster's endpoint gauges.
#[derive(Debug)]
pub(super) struct EndpointGauges([Gauge; 4]);

impl EndpointGauges {
    pub(super) fn new(cluster: &str) -> Self {
        metrics::describe_gauge!(
            ENDPOINTS,
            "Endpoints of each cluster by state (healthy, ejected, draining, unhealthy)"
        );
        Self(EndpointState::ALL.map(
            |s| metrics::gauge!(ENDPOINTS, "cluster" => cluster.to_owned(), "state" => s.as_str()),
        ))
    }

    /// Sets the gauges to `counts`.
    pub(super) fn show(&self, counts: &StateCounts) {
        for (gauge, n) in self.0.iter().zip(counts.0) {
            gauge.set(n as f64);
        }
    }

    /// `n` endpoints, all healthy (without visiting them).
    pub(super) fn all_healthy(&self, n: usize) {
        self.show(&StateCounts([n as u64, 0, 0, 0]));
    }

    /// The cluster is gone: no endpoints.
    pub(super) fn clear(&self) {
        self.show(&StateCounts([0; 4]));
    }
}
