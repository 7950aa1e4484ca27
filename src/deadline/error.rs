use std::fmt;

/// The request's deadline passed before it could complete, or before it
/// was sent.
///
/// Returned by [`PropagateDeadline`](super::PropagateDeadline) when the
/// budget is already spent, and by
/// [`Timeout`](crate::timeout::Timeout) when an inherited deadline (from
/// an inbound request or an enclosing scope) fires before its own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeadlineExceeded {
    unsent: bool,
}

impl DeadlineExceeded {
    pub(crate) fn new() -> Self {
        Self { unsent: false }
    }

    /// The refusal of a request whose budget was spent before it was sent.
    pub(crate) fn unsent() -> Self {
        Self { unsent: true }
    }

    /// True when the request was never sent (refused by
    /// [`PropagateDeadline`](super::PropagateDeadline)): no server saw it.
    pub fn is_unsent(&self) -> bool {
        self.unsent
    }
}

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}
