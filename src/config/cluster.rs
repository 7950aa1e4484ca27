use super::EndpointConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A cluster: endpoints that serve the same thing, and how to use them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The protocol spoken to the endpoints. Default: HTTP/1.1.
    pub protocol: Protocol,
    /// How an endpoint is picked. Default: P2C with Peak-EWMA latency.
    pub lb: LbPolicy,
    /// Locality-aware balancing.
    pub locality_lb: LocalityLbConfig,
    /// Limits that fail excess requests fast.
    pub thresholds: ThresholdsConfig,
    /// Ejection of misbehaving endpoints. Default: none.
    pub outlier_detection: Option<OutlierDetectionConfig>,
    /// The SPIFFE identities the endpoints may present (any one of them),
    /// e.g. `spiffe://example.org/ns/shop/sa/reviews`. Naming any makes
    /// the cluster mTLS-only ([`requires_mtls`](Self::requires_mtls)).
    /// Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    /// Whether the endpoints are spoken to over mutual TLS only, even when
    /// no [`identities`](Self::identities) are named (then any identity the
    /// trust bundle vouches for is accepted). Default: false, unless
    /// identities are named.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mtls: bool,
    /// A circuit breaker over the whole cluster: when it is open, requests
    /// to the cluster fail at once. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<crate::breaker::BreakerConfig>,
    /// The name of the outcome classifier (registered by the application,
    /// see [`Classifiers`](crate::classify::Classifiers)) that decides what
    /// counts as a failure for the cluster's breaker and outlier detection.
    /// Default: none (the classifier named `default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classifier: Option<String>,
    /// The endpoints.
    pub endpoints: Vec<EndpointConfig>,
}

impl ClusterConfig {
    /// Whether the endpoints may only be spoken to over mutual TLS: when
    /// [`mtls`](Self::mtls) says so or [`identities`](Self::identities) are
    /// named. Such a cluster is never spoken to in plaintext.
    ///
    /// ```
    /// let mut cluster = sinew::config::ClusterConfig::default();
    /// assert!(!cluster.requires_mtls());
    /// cluster.identities.push("spiffe://example.org/ns/shop/sa/reviews".into());
    /// assert!(cluster.requires_mtls());
    /// ```
    pub fn requires_mtls(&self) -> bool {
        self.mtls || !self.identities.is_empty()
    }
}

/// Protocol spoken to a cluster's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, with a pool of connections per endpoint.
    #[default]
    Http1,
    /// HTTP/2 (and gRPC), multiplexed over one connection per endpoint.
    Http2,
}

/// Load-balancing policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum LbPolicy {
    /// Power of two choices on Peak-EWMA latency.
    #[default]
    P2cEwma,
    /// Smooth weighted round robin.
    RoundRobin,
    /// Power of two choices on requests in flight.
    LeastRequest,
    /// Weighted random.
    Random,
    /// Consistent hashing on a ring.
    RingHash {
        /// The request header whose value is hashed; without one, a key
        /// the application attaches to the request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        /// Ring entries. Default: 1024.
        #[serde(default = "ring_size")]
        min_ring_size: u32,
    },
    /// Maglev consistent hashing.
    Maglev {
        /// The request header whose value is hashed; without one, a key
        /// the application attaches to the request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
    },
}

fn ring_size() -> u32 {
    1024
}

/// Locality-aware balancing, with Envoy's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalityLbConfig {
    /// Prefer endpoints in the caller's zone. Default: true.
    pub prefer_local_zone: bool,
    /// Below this percentage of healthy endpoints, a priority level spills
    /// traffic to the next. Default: 70 (Envoy's overprovisioning factor
    /// of 1.4).
    pub failover_threshold_percent: u32,
    /// Below this percentage of healthy endpoints, health is ignored and
    /// traffic spreads over all endpoints. Default: 50.
    pub panic_threshold_percent: u32,
}

impl Default for LocalityLbConfig {
    fn default() -> Self {
        Self {
            prefer_local_zone: true,
            failover_threshold_percent: 70,
            panic_threshold_percent: 50,
        }
    }
}

/// Cluster thresholds (Envoy's circuit-breaker thresholds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThresholdsConfig {
    /// Requests in flight to the cluster, from the moment they are sent
    /// until their response body ends. Default: 1024.
    pub max_requests: u32,
    /// Requests waiting, in arrival order, for a place under
    /// `max_requests`; one more fails at once. Default: 1024.
    pub max_pending: u32,
    /// Retries in flight to the cluster. Default: 3.
    pub max_retries: u32,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        Self {
            max_requests: 1024,
            max_pending: 1024,
            max_retries: 3,
        }
    }
}

/// Outlier detection, with Envoy's semantics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierDetectionConfig {
    /// Eject after this many 5xx in a row. Default: 5.
    pub consecutive_5xx: Option<u32>,
    /// Eject after this many gateway errors (502, 503, 504) in a row.
    /// Default: none.
    pub consecutive_gateway_failure: Option<u32>,
    /// Locally originated failures (connect errors, resets, timeouts) are
    /// counted apart from the server's answers when this is set, and this
    /// many in a row eject (Envoy's `split_external_local_origin_errors`
    /// with its `consecutive_local_origin_failure`). Unset, as by default,
    /// they count as gateway errors (502-504) toward `consecutive_5xx`,
    /// `consecutive_gateway_failure`, success rate and failure percentage,
    /// as Envoy counts them by default. Default: none.
    pub consecutive_local_origin_failure: Option<u32>,
    /// How often success rate and failure percentage are evaluated.
    /// Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// First ejection time; the n-th ejection lasts n times this.
    /// Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// Longest ejection. Default: 300 s.
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// Never eject more than this percentage of endpoints. Default: 10.
    pub max_ejection_percent: u32,
    /// Statistical success-rate ejection. Default: none.
    pub success_rate: Option<SuccessRateConfig>,
    /// Failure-percentage ejection. Default: none.
    pub failure_percentage: Option<FailurePercentageConfig>,
}

impl Default for OutlierDetectionConfig {
    fn default() -> Self {
        Self {
            consecutive_5xx: Some(5),
            consecutive_gateway_failure: None,
            consecutive_local_origin_failure: None,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            success_rate: None,
            failure_percentage: None,
        }
    }
}

/// Ejects endpoints whose success rate is below the mean by more than
/// `stdev_factor` standard deviations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuccessRateConfig {
    /// Endpoints with enough volume needed to evaluate. Default: 5.
    pub minimum_hosts: u32,
    /// Requests an endpoint needs in an interval to count. Default: 100.
    pub request_volume: u32,
    /// Default: 1.9.
    pub stdev_factor: f64,
}

impl Default for SuccessRateConfig {
    fn default() -> Self {
        Self {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1.9,
        }
    }
}

/// Ejects endpoints whose failure percentage reaches `threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailurePercentageConfig {
    /// Failure percentage that ejects. Default: 85.
    pub threshold: u32,
    /// Endpoints with enough volume needed to evaluate. Default: 5.
    pub minimum_hosts: u32,
    /// Requests an endpoint needs in an interval to count. Default: 50.
    pub request_volume: u32,
}

impl Default for FailurePercentageConfig {
    fn default() -> Self {
        Self {
            threshold: 85,
            minimum_hosts: 5,
            request_volume: 50,
        }
    }
}
