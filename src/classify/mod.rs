//! Deciding what the result of one request means.
//!
//! Retries, circuit breaking and (later) outlier detection all need the same
//! answer to one question: did this attempt succeed, and if not, may it be
//! tried again? A [`Classify`] implementation answers it from the response
//! head, the gRPC trailers, or the error. [`StatusClassifier`] is the
//! default; applications plug in their own by implementing the trait.
//!
//! gRPC is classified by `grpc-status`, not by the HTTP status: a response
//! with `grpc-status` in its headers (a trailers-only response) is
//! classified at once, any other gRPC response when its trailers arrive.
//!
//! A mesh's configuration selects classifiers by name: the application
//! registers them in a [`Classifiers`] registry (through
//! [`MeshBuilder::classifier`](crate::mesh::MeshBuilder::classifier) for a
//! mesh), and a route's or a cluster's `classifier` field names one.

mod errors;
mod registry;
mod status;

pub use errors::{never_processed, refused_before_sending};
#[cfg(feature = "config")]
pub(crate) use registry::check_name;
pub use registry::{Classifiers, DEFAULT_CLASSIFIER, MAX_NAME_LEN};
pub use status::StatusClassifier;

use http::{HeaderMap, StatusCode};

/// What one attempt's result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request succeeded.
    Success,
    /// The request failed, and may have been processed by the server.
    /// It is retried only when `retryable` is set *and* the request is
    /// idempotent.
    Failure {
        /// Whether the failure is of a kind worth another attempt.
        retryable: bool,
    },
    /// The request failed before any server application could have seen it:
    /// a connect error, a refused stream, a GOAWAY beyond the last stream
    /// id, or a local rejection. It is safe to retry whatever its method.
    NotProcessed,
}

impl Outcome {
    /// True for [`Outcome::Success`].
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }
}

/// Classifies results. Implement it to change what counts as a failure and
/// what may be retried.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use sinew::classify::{Classify, Outcome, StatusClassifier};
///
/// /// Treats 429 as a retryable failure, and defers to the default otherwise.
/// #[derive(Clone)]
/// struct TooManyRequestsRetryable(StatusClassifier);
///
/// impl Classify for TooManyRequestsRetryable {
///     fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
///         if status == StatusCode::TOO_MANY_REQUESTS {
///             return Some(Outcome::Failure { retryable: true });
///         }
///         self.0.classify_response(status, headers)
///     }
///     fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Outcome {
///         self.0.classify_trailers(trailers)
///     }
///     fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Outcome {
///         self.0.classify_error(error)
///     }
/// }
/// ```
pub trait Classify: Send + Sync + 'static {
    /// Classifies a response from its head. Returns `None` when the outcome
    /// is only known from the trailers (a gRPC response without
    /// `grpc-status` in its headers).
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome>;

    /// Classifies a response whose outcome was deferred to its trailers.
    /// `None` means the body ended without trailers.
    fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Outcome;

    /// Classifies an error returned instead of a response (or while
    /// streaming its body).
    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Outcome;
}

/// A classifier shared by the layers that use it, chosen at run time (by
/// the name a configuration gives, say).
pub type SharedClassifier = std::sync::Arc<dyn Classify>;

impl std::fmt::Debug for dyn Classify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Classify")
    }
}

#[cfg(all(test, feature = "config", feature = "retry", feature = "breaker"))]
mod registry_tests;
