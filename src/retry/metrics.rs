//! The retry layer's series, through the `metrics` facade:
//!
//! - `sinew_retries_total{…, reason}`: retries sent, by why the attempt
//!   before failed (`status`, `error`, `not_processed`, `per_try_timeout`);
//! - `sinew_hedges_total{…, reason}`: hedged attempts sent, by what
//!   started them (`delay`: the hedge delay passed; `failure`: an attempt
//!   failed in a retryable way);
//! - `sinew_retry_budget_exhausted_total{…}`: retries and hedges the
//!   budget refused.
//!
//! `…` is the layer's own label set ([`RetryLayer::with_metric_labels`]);
//! the mesh gives each route's layer `service` and `route`. The handles
//! are resolved when the layer is built, so that counting costs an atomic
//! add and never formats a label.
//!
//! [`RetryLayer::with_metric_labels`]: super::RetryLayer::with_metric_labels

use super::per_try::AttemptTimedOut;
use crate::classify::Outcome;
use crate::error::BoxError;
use metrics::{Counter, Label};

/// Retries sent, by reason.
pub(crate) const RETRIES: &str = "sinew_retries_total";
/// Hedged attempts sent, by reason.
pub(crate) const HEDGES: &str = "sinew_hedges_total";
/// Retries and hedges the budget refused.
pub(crate) const BUDGET_EXHAUSTED: &str = "sinew_retry_budget_exhausted_total";

/// Why an attempt was retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RetryReason {
    /// A response whose status the classifier calls retryable.
    Status,
    /// An error that may have reached the server.
    Error,
    /// A failure that proves the request was never processed.
    NotProcessed,
    /// The attempt passed its per-try timeout.
    PerTryTimeout,
}

impl RetryReason {
    const ALL: [Self; 4] = [
        Self::Status,
        Self::Error,
        Self::NotProcessed,
        Self::PerTryTimeout,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Error => "error",
            Self::NotProcessed => "not_processed",
            Self::PerTryTimeout => "per_try_timeout",
        }
    }

    /// Why the attempt that gave `result` (judged `outcome`) is retried.
    pub(super) fn of<B>(result: &Result<http::Response<B>, BoxError>, outcome: Outcome) -> Self {
        match (result, outcome) {
            (Err(e), _) if e.is::<AttemptTimedOut>() => Self::PerTryTimeout,
            (_, Outcome::NotProcessed) => Self::NotProcessed,
            (Err(_), _) => Self::Error,
            (Ok(_), _) => Self::Status,
        }
    }
}

/// What started a hedged attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HedgeReason {
    /// The hedge delay passed without an answer.
    Delay,
    /// An attempt failed in a way that may be retried.
    Failure,
}

/// A layer's counters, registered once.
#[derive(Clone, Debug)]
pub(super) struct RetryMetrics {
    retries: [Counter; 4],
    hedges: [Counter; 2],
    budget_exhausted: Counter,
}

impl RetryMetrics {
    /// The counters under `labels` (which may be empty).
    pub(super) fn new(labels: &[Label]) -> Self {
        describe();
        let with = |reason: &'static str| {
            let mut all = labels.to_vec();
            all.push(Label::from_static_parts("reason", reason));
            all
        };
        Self {
            retries: RetryReason::ALL.map(|r| metrics::counter!(RETRIES, with(r.as_str()))),
            hedges: ["delay", "failure"].map(|r| metrics::counter!(HEDGES, with(r))),
            budget_exhausted: metrics::counter!(BUDGET_EXHAUSTED, labels.to_vec()),
        }
    }

    pub(super) fn retried(&self, reason: RetryReason) {
        // `ALL` lists the reasons in declaration order.
        self.retries[reason as usize].increment(1);
    }

    pub(super) fn hedged(&self, reason: HedgeReason) {
        self.hedges[reason as usize].increment(1);
    }

    pub(super) fn budget_exhausted(&self) {
        self.budget_exhausted.increment(1);
    }
}

/// Describes the series to the recorder (each layer built does it again,
/// which recorders take as the same description).
fn describe() {
    metrics::describe_counter!(
        RETRIES,
        "Retries sent, by why the attempt before failed (status, error, not_processed, per_try_timeout)"
    );
    metrics::describe_counter!(
        HEDGES,
        "Hedged attempts sent, by what started them (delay, failure)"
    );
    metrics::describe_counter!(
        BUDGET_EXHAUSTED,
        "Retries and hedges the retry budget refused"
    );
}
