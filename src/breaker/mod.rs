//! Circuit breaking: stop sending to a service that keeps failing, and
//! let a few probes find out when it has healed.
//!
//! - **Closed**: requests flow. The breaker trips (opens) after
//!   [`BreakerConfig::consecutive_failures`] failures in a row, or when the
//!   failure rate over a sliding window reaches
//!   [`FailureRateConfig::threshold`] with at least
//!   [`FailureRateConfig::min_requests`] requests in the window.
//! - **Open**: every request fails at once with [`BreakerOpen`], for
//!   [`BreakerConfig::open_for`].
//! - **Half-open**: exactly [`BreakerConfig::half_open_probes`] requests
//!   go through, however many callers race. If they all succeed the breaker
//!   closes; one failure opens it again. A probe that is cancelled gives its
//!   place back.
//!
//! What counts as a failure is decided by a
//! [`Classify`](crate::classify::Classify) implementation (by default
//! [`StatusClassifier`](crate::classify::StatusClassifier): 5xx, failing
//! gRPC codes, transport errors). gRPC responses whose status arrives in
//! the trailers are classified when the body ends, which is why the
//! breaker wraps response bodies in [`BreakerBody`].
//!
//! [`BreakerLayer::with_metric_labels`] counts its transitions
//! (`sinew_breaker_transitions_total`) and shows its state
//! (`sinew_breaker_state`) through the `metrics` facade; the mesh labels
//! each cluster's breaker with the cluster.
//!
//! ```
//! use std::time::Duration;
//! use sinew::breaker::{BreakerConfig, BreakerLayer, State};
//!
//! let layer = BreakerLayer::new(BreakerConfig {
//!     consecutive_failures: Some(3),
//!     open_for: Duration::from_secs(1),
//!     ..BreakerConfig::default()
//! })
//! .unwrap()
//! .on_transition(|t| println!("breaker {:?} -> {:?}", t.from, t.to));
//! assert_eq!(layer.state(), State::Closed);
//! ```

mod body;
mod config;
mod error;
mod future;
mod layer;
mod metrics;
mod state;

pub use body::BreakerBody;
pub use config::{BreakerConfig, FailureRateConfig};
pub use error::BreakerOpen;
pub use future::ResponseFuture;
pub use layer::{Breaker, BreakerLayer};
pub use state::{State, Transition};

#[cfg(test)]
mod tests;
