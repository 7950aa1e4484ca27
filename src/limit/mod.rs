//! Limits that protect a service from more work than it can do.
//!
//! | layer | refuses when | error |
//! |---|---|---|
//! | [`ConcurrencyLimitLayer`] | the fixed limit and its bounded queue are full | [`Overloaded`] |
//! | [`RateLimitLayer`] | the token bucket is empty | [`RateLimited`] (with a retry-after) |
//! | [`AdaptiveLimitLayer`] | in-flight requests reach a limit learned from latency | [`Overloaded`] |
//! | [`LoadShedLayer`] | the inner service is not ready (tower's load shedding) | [`tower::load_shed::error::Overloaded`] |
//!
//! Every refusal is immediate: a refused request was never sent, so the
//! [retry layer](crate::retry) may retry it whatever its method. On a server,
//! put [`ErrorResponseLayer`](crate::respond::ErrorResponseLayer) above these
//! layers to answer refusals with 503/429 (or gRPC `UNAVAILABLE` /
//! `RESOURCE_EXHAUSTED`) instead of an error.

mod adaptive;
mod concurrency;
mod error;
mod gradient;
mod rate;

pub use adaptive::{AdaptiveLimit, AdaptiveLimitConfig, AdaptiveLimitLayer};
pub use concurrency::{ConcurrencyLimit, ConcurrencyLimitConfig, ConcurrencyLimitLayer};
pub use error::{Overloaded, RateLimited};
pub use rate::{RateLimit, RateLimitConfig, RateLimitLayer};
pub use tower::load_shed::{LoadShed, LoadShedLayer};

/// Futures of the limit services.
pub mod future {
    pub use super::adaptive::ResponseFuture as AdaptiveFuture;
    pub use super::concurrency::ResponseFuture as ConcurrencyFuture;
    pub use super::rate::ResponseFuture as RateFuture;
}
