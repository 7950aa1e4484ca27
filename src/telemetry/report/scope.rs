//! Where the layers of a mesh client find the request's report: a
//! thread-local slot that holds it while the request's future is polled,
//! as the deadline's scope does for the deadline (ADR 0003). The report is
//! boxed so that entering and leaving the scope moves one pointer, and the
//! stack's future is not moved again to wrap it.

use super::{AttemptResult, DecisionReport, ErrorClass, ReportSink};
use crate::error::BoxError;
use http::Response;
use pin_project_lite::pin_project;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static CURRENT: Cell<Option<Box<DecisionReport>>> = const { Cell::new(None) };
}

/// Records into the current report, if there is one.
#[inline]
pub(super) fn record(f: impl FnOnce(&mut DecisionReport)) {
    CURRENT.with(|slot| {
        if let Some(mut report) = slot.take() {
            f(&mut report);
            slot.set(Some(report));
        }
    });
}

/// Whether a report is being recorded (so that a layer can skip work done
/// only for it).
#[inline]
pub(crate) fn active() -> bool {
    CURRENT.with(|slot| {
        let report = slot.take();
        let active = report.is_some();
        slot.set(report);
        active
    })
}

pin_project! {
    /// A mesh client's request future, with its report current while it
    /// is polled; at the end, the report goes into the response's
    /// extensions, the request's [`ReportSink`], and (when `debug`) the
    /// `sinew-decision` header.
    pub(crate) struct Recorded<F> {
        #[pin]
        future: F,
        report: Option<Box<DecisionReport>>,
        sink: Option<ReportSink>,
        debug: bool,
    }
}

impl<F> Recorded<F> {
    // Inlined so that the stack's future can be built in place.
    #[inline(always)]
    #[cfg_attr(not(feature = "mesh"), allow(dead_code))]
    pub(crate) fn new(
        future: F,
        report: DecisionReport,
        sink: Option<ReportSink>,
        debug: bool,
    ) -> Self {
        Self {
            future,
            report: Some(Box::new(report)),
            sink,
            debug,
        }
    }
}

/// Puts the report back where it was found when the poll ends, even if
/// the future inside panics.
struct Entered<'a> {
    own: &'a mut Option<Box<DecisionReport>>,
    previous: Option<Box<DecisionReport>>,
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        *self.own = CURRENT.with(|slot| slot.replace(self.previous.take()));
    }
}

impl<F, T> Future for Recorded<F>
where
    F: Future<Output = Result<Response<T>, BoxError>>,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let entered = Entered {
            previous: CURRENT.with(|slot| slot.replace(this.report.take())),
            own: this.report,
        };
        let polled = this.future.poll(cx);
        drop(entered);
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let Some(mut report) = this.report.take() else {
            return Poll::Ready(result);
        };
        // Attempts still running when the request ended (cut by the
        // route's timeout, say) end with it; their futures are dropped
        // later, outside the scope.
        let cut = match &result {
            Ok(_) => AttemptResult::Cancelled,
            Err(error) => AttemptResult::Failed(ErrorClass::of(error.as_ref())),
        };
        report.end_pending(cut);
        report.finish();
        if let Some(sink) = this.sink.take() {
            sink.put(DecisionReport::clone(&report));
        }
        Poll::Ready(result.map(|mut response| {
            if *this.debug
                && let Some(value) = report.short_header()
            {
                response
                    .headers_mut()
                    .insert(super::DECISION_RESPONSE_HEADER, value);
            }
            response.extensions_mut().insert(*report);
            response
        }))
    }
}

pin_project! {
    /// The transport under a mesh client's stack (the application's own
    /// client, which may hold Sinew layers of its own), polled outside the
    /// report's scope: what layers down there do is not the mesh's
    /// decision, and they record nothing into its report.
    pub(crate) struct Outside<F> {
        #[pin]
        future: F,
    }
}

impl<F> Outside<F> {
    #[inline]
    #[cfg_attr(not(feature = "mesh"), allow(dead_code))]
    pub(crate) fn new(future: F) -> Self {
        Self { future }
    }
}

/// Puts the report back into the slot when the transport's poll ends,
/// even if it panics.
struct Aside(Option<Box<DecisionReport>>);

impl Drop for Aside {
    #[inline]
    fn drop(&mut self) {
        let report = self.0.take();
        CURRENT.with(|slot| slot.set(report));
    }
}

impl<F: Future> Future for Outside<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _aside = Aside(CURRENT.with(|slot| slot.take()));
        self.project().future.poll(cx)
    }
}
