//! Deadlines: how much time a request has left, carried across layers,
//! tasks' awaits and network hops.
//!
//! A [`Deadline`] is an instant by which the caller no longer wants the
//! answer. Inside a process it travels in a task-local scope (like Go's
//! `context`): [`TimeoutLayer`](crate::timeout::TimeoutLayer) and
//! [`EnforceDeadlineLayer`] set it, and anything awaited inside the request
//! future sees it through [`Deadline::current`]. A [`Deadline`] placed in a
//! request's extensions is honoured too, for callers that build requests
//! away from the task that sends them.
//!
//! Between processes it travels as the *remaining time*, never as a wall
//! clock instant, so clock skew between hosts does not matter:
//!
//! | traffic | header | format |
//! |---|---|---|
//! | gRPC | `grpc-timeout` | gRPC's own: up to 8 digits and a unit (`H M S m u n`) |
//! | plain HTTP | `sinew-timeout-ms` | whole milliseconds, rounded down |
//!
//! [`PropagateDeadlineLayer`] writes the header on outbound requests;
//! [`EnforceDeadlineLayer`] reads it on inbound ones, answers at once when
//! the budget is already spent, and cancels the handler when it runs out.
//!
//! ```
//! use std::time::Duration;
//! use sinew::deadline::Deadline;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let deadline = Deadline::after(Duration::from_secs(2));
//! let seen = deadline.scope(async { Deadline::current() }).await;
//! assert_eq!(seen, Some(deadline));
//! assert_eq!(Deadline::current(), None);
//! # }
//! ```

mod enforce;
mod error;
mod header;
mod propagate;
pub(crate) mod scope;

pub use enforce::{EnforceDeadline, EnforceDeadlineConfig, EnforceDeadlineLayer};
pub use error::DeadlineExceeded;
pub use header::{GRPC_TIMEOUT, SINEW_TIMEOUT_MS, encode_grpc_timeout, parse_grpc_timeout};
pub use propagate::{PropagateDeadline, PropagateDeadlineLayer};

pub use scope::Scoped;

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// An instant after which a request's result is no longer wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// A deadline `budget` from now (a budget over
    /// [`MAX_DURATION`](crate::bounds::MAX_DURATION) counts as that).
    pub fn after(budget: Duration) -> Self {
        Self(crate::bounds::later(Instant::now(), budget))
    }

    /// The instant of the deadline.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left until the deadline; zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// True once the deadline has passed.
    pub fn is_expired(self) -> bool {
        Instant::now() >= self.0
    }

    /// The deadline of the enclosing scope, if any.
    ///
    /// Like a task-local, it is set only while a scoped future is polled:
    /// a task spawned from inside the scope does not inherit it.
    pub fn current() -> Option<Deadline> {
        scope::current()
    }

    /// The deadline that binds `request`: the earlier of a [`Deadline`] in
    /// its extensions and the enclosing scope's.
    pub fn for_request<B>(request: &http::Request<B>) -> Option<Deadline> {
        earliest(
            request.extensions().get::<Deadline>().copied(),
            Self::current(),
        )
    }

    /// Runs `future` with this deadline as [`Deadline::current`].
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped::new(future, self)
    }

    /// Runs `f` with this deadline as [`Deadline::current`].
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        scope::sync_scope(self, f)
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_and_extensions() {
        let outer = Deadline::after(Duration::from_secs(10));
        let inner = Deadline::after(Duration::from_secs(1));
        outer
            .scope(async move {
                assert_eq!(Deadline::current(), Some(outer));
                inner
                    .scope(async move { assert_eq!(Deadline::current(), Some(inner)) })
                    .await;
                let mut request = http::Request::new(());
                assert_eq!(Deadline::for_request(&request), Some(outer));
                request.extensions_mut().insert(inner);
                assert_eq!(Deadline::for_request(&request), Some(inner));
            })
            .await;
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(inner.is_expired());
        assert_eq!(inner.remaining(), Duration::ZERO);
        assert_eq!(outer.remaining(), Duration::from_secs(8));
    }
}
