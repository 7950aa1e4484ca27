//! The current deadline, visible while a request's future is polled.
//!
//! This is what `tokio::task_local!` offers, written against a `Cell` of a
//! `Copy` value: entering and leaving a scope is two plain thread-local
//! writes, with no `RefCell` borrow or lazy initialisation. Every timeout
//! layer enters a scope twice per request (in `call` and in each poll), so
//! the difference is most of the layer's cost (see docs/adr/0003).
//!
//! A scope is also a [cached clock region](crate::clock): the layers
//! inside share one clock reading per `call` and per poll.

use super::Deadline;
use pin_project_lite::pin_project;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
}

#[inline]
pub(super) fn current() -> Option<Deadline> {
    CURRENT.with(Cell::get)
}

/// A deadline scope (and cached clock region), left when dropped, even if
/// the code inside panics.
#[must_use]
pub(crate) struct Entered {
    previous: Option<Deadline>,
    _clock: crate::clock::Region,
}

/// Makes `deadline` current until the returned guard is dropped.
#[inline]
pub(crate) fn enter(deadline: Deadline) -> Entered {
    Entered {
        previous: CURRENT.with(|c| c.replace(Some(deadline))),
        _clock: crate::clock::enter(),
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

#[inline]
pub(super) fn sync_scope<R>(deadline: Deadline, f: impl FnOnce() -> R) -> R {
    let _entered = enter(deadline);
    f()
}

pin_project! {
    /// A future that runs with a [`Deadline`] as
    /// [`Deadline::current`](super::Deadline::current) while it is polled.
    /// Made by [`Deadline::scope`](super::Deadline::scope).
    #[derive(Debug)]
    pub struct Scoped<F> {
        #[pin]
        future: F,
        deadline: Deadline,
    }
}

impl<F> Scoped<F> {
    pub(super) fn new(future: F, deadline: Deadline) -> Self {
        Self { future, deadline }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = enter(*this.deadline);
        this.future.poll(cx)
    }
}
