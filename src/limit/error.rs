use std::fmt;
use std::time::Duration;

/// A limit refused the request: too many requests were in flight (and
/// queued). The request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    limit: &'static str,
}

impl Overloaded {
    pub(crate) fn new(limit: &'static str) -> Self {
        Self { limit }
    }

    /// Which limit refused: `"concurrency"` or `"adaptive"`.
    pub fn limit(&self) -> &'static str {
        self.limit
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overloaded: {} limit reached", self.limit)
    }
}

impl std::error::Error for Overloaded {}

/// The rate limit refused the request. The request was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    pub(crate) fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// How long until a request would be admitted.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited: retry after {:?}", self.retry_after)
    }
}

impl std::error::Error for RateLimited {}
