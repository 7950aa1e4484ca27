//! The refusal of an unauthorized request.

use std::fmt;

/// A request the service's authorization policies refuse.
///
/// It says nothing of the policy that refused, so that nothing about the
/// policies reaches the caller; the server stack answers it with 403 (gRPC
/// `PERMISSION_DENIED`), and the decision, with the policy's name, goes to
/// the log (target `sinew::authz`) and the metrics.
///
/// ```
/// let denied = sinew::authz::Denied::new();
/// assert_eq!(denied.to_string(), "permission denied");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Denied(());

impl Denied {
    /// The refusal.
    pub fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permission denied")
    }
}

impl std::error::Error for Denied {}
