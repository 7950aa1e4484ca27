use std::fmt;
use std::time::Duration;

/// The request took longer than the timeout of a
/// [`Timeout`](super::Timeout) layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    timeout: Duration,
}

impl Elapsed {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The timeout that elapsed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request timed out after {:?}", self.timeout)
    }
}

impl std::error::Error for Elapsed {}
