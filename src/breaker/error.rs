use std::fmt;

/// The circuit breaker is open (or half-open with every probe taken): the
/// request was refused without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOpen(());

impl BreakerOpen {
    pub(crate) fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit breaker is open")
    }
}

impl std::error::Error for BreakerOpen {}
