use crate::deadline::Deadline;
use crate::error::BoxError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// One attempt took longer than the route's `per_try_timeout` to answer,
/// and was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTimedOut(pub Duration);

impl std::fmt::Display for AttemptTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attempt timed out after {:?}", self.0)
    }
}

impl std::error::Error for AttemptTimedOut {}

pin_project! {
    /// An attempt, cut off after the per-try timeout when there is one.
    /// The attempt runs with the earlier of that and the enclosing deadline
    /// as its [`Deadline::current`], so that what it calls (the mesh's
    /// outlier accounting, a propagated budget) sees the attempt's own.
    pub(super) struct PerTry<F> {
        #[pin]
        future: F,
        #[pin]
        timer: Option<Sleep>,
        limit: Duration,
        deadline: Option<Deadline>,
    }
}

impl<F> PerTry<F> {
    #[inline]
    pub(super) fn new(future: F, limit: Option<Duration>) -> Self {
        let deadline = limit.map(|limit| {
            let own = Deadline::after(limit);
            Deadline::current().map_or(own, |outer| outer.min(own))
        });
        Self {
            future,
            timer: limit.map(tokio::time::sleep),
            limit: limit.unwrap_or_default(),
            deadline,
        }
    }
}

impl<F, T, E> Future for PerTry<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.deadline.map(crate::deadline::scope::enter);
        let polled = this.future.poll(cx);
        drop(entered);
        if let Poll::Ready(result) = polled {
            return Poll::Ready(result.map_err(Into::into));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Err(AttemptTimedOut(*this.limit).into())),
            _ => Poll::Pending,
        }
    }
}
