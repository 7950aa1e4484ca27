//! Retries with budgets, backoff, body replay, idempotency rules and
//! hedging.
//!
//! [`RetryLayer`] sends a request again when an attempt fails in a way its
//! [`Classify`](crate::classify::Classify) implementation calls retryable,
//! within these bounds:
//!
//! - **Attempts**: at most [`RetryConfig::max_attempts`] in all.
//! - **Budget**: retries may add at most [`BudgetConfig::ratio`] of the
//!   request volume, plus [`BudgetConfig::min_per_second`], over a sliding
//!   window (Finagle's and Linkerd's retry budget, kept lock-free).
//!   A budget keeps retries from multiplying load on a struggling service.
//! - **Backoff**: exponential with jitter between attempts (tower's
//!   `ExponentialBackoff`).
//! - **Time**: no attempt starts with less than
//!   [`RetryConfig::min_attempt_time`] left before the request's
//!   [`Deadline`](crate::deadline::Deadline).
//! - **Body**: request bodies up to [`RetryConfig::max_replay_bytes`] are
//!   kept as they stream out so they can be sent again; a larger body is
//!   sent once and never retried ([`ReplayBody`]).
//! - **Idempotency**: a failure that may have reached the server is retried
//!   only when the request is idempotent (by method, by
//!   [`RetryConfig::assume_idempotent`] for the route, or by an
//!   [`Idempotency`] request extension). A failure that proves the request
//!   was never processed (connect error, refused stream, GOAWAY beyond the
//!   last stream id) is retried whatever the method.
//!
//! With a [`HedgeConfig`], idempotent requests are *hedged* instead: a
//! second attempt starts if the first has not answered after a delay; the
//! first good answer wins and the others are cancelled. Hedges draw from the
//! same budget.
//!
//! [`RetryConfig::retry_on`] narrows or widens which failures are retried
//! for a route ([`RetryOn`]: HTTP statuses, gRPC codes, errors), and
//! [`RetryConfig::per_try_timeout`] cuts an attempt that waits too long for
//! its answer so that the next one can start.
//!
//! The layer counts its retries, hedges and budget refusals through the
//! `metrics` facade (`sinew_retries_total`, `sinew_hedges_total`,
//! `sinew_retry_budget_exhausted_total`, under the labels given to
//! [`RetryLayer::with_metric_labels`]; see docs/metrics.md), and in
//! [`RetryStats`].
//!
//! For gRPC, an attempt is retried only on a trailers-only response (the
//! status is in the headers), as gRFC A6 specifies: once a response streams,
//! it is committed.
//!
//! ```
//! use std::time::Duration;
//! use sinew::retry::{RetryConfig, RetryLayer};
//!
//! let layer = RetryLayer::new(RetryConfig {
//!     max_attempts: 4,
//!     min_attempt_time: Duration::from_millis(20),
//!     ..RetryConfig::default()
//! })
//! .unwrap();
//! # let _ = layer;
//! ```

mod body;
mod budget;
mod config;
mod future;
mod hedge;
mod idempotency;
mod layer;
mod metrics;
mod per_try;
mod retry_on;
mod run;
mod stats;

pub use body::ReplayBody;
pub use config::{BackoffConfig, BudgetConfig, HedgeConfig, RetryConfig};
pub use future::ResponseFuture;
pub use idempotency::Idempotency;
pub use layer::{Retry, RetryLayer};
pub use per_try::AttemptTimedOut;
pub use retry_on::RetryOn;
pub use stats::{Attempt, Attempts, RetryStats};

#[cfg(test)]
mod tests;
