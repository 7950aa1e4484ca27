use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Faults injected into a share of a route's requests, to test how callers
/// cope (Envoy's fault filter, gRPC's gRFC A33). The delay comes first and
/// counts against the route's timeout; an aborted request is answered at
/// once, without reaching an endpoint, and is not retried.
///
/// ```
/// use sinew::config::{FaultAbort, FaultConfig, FaultDelay};
/// use std::time::Duration;
///
/// let fault = FaultConfig {
///     delay: Some(FaultDelay { fixed: Duration::from_millis(200), percent: 10.0 }),
///     abort: Some(FaultAbort { http_status: Some(503), grpc_status: None, percent: 1.0 }),
///     max_active: Some(100),
/// };
/// # let _ = fault;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Delay a share of requests before they are sent. Default: none.
    pub delay: Option<FaultDelay>,
    /// Answer a share of requests with an error instead of sending them.
    /// Default: none.
    pub abort: Option<FaultAbort>,
    /// Requests with a fault in progress at once (through this route, in
    /// this process); beyond it, requests pass unharmed. Default: no limit.
    pub max_active: Option<u32>,
}

/// A fixed delay for a share of requests.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    /// How long.
    #[serde(with = "humantime_serde")]
    pub fixed: Duration,
    /// Percentage of requests delayed, from 0 to 100.
    pub percent: f64,
}

/// An error answer for a share of requests. Set exactly one of
/// `http_status` and `grpc_status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// The HTTP status answered, from 200 to 599. A gRPC request gets the
    /// gRPC code gRPC maps that status to.
    #[serde(default)]
    pub http_status: Option<u16>,
    /// The gRPC status code answered, by name (e.g. `UNAVAILABLE`).
    #[serde(default)]
    pub grpc_status: Option<String>,
    /// Percentage of requests aborted, from 0 to 100.
    pub percent: f64,
}
