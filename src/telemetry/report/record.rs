//! What the layers record into the current report: each is a no-op when
//! no report is being recorded.

#[cfg(feature = "breaker")]
use super::BreakerDecision;
use super::{
    AttemptReason, AttemptResult, Cause, DecisionReport, ErrorClass, Refusal, active, record, since,
};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Attempt `number` is a retry after `previous` (a failed attempt's
/// result), as the retry layer saw it.
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
pub(crate) fn retrying<B>(
    number: u32,
    previous: &Result<http::Response<B>, crate::error::BoxError>,
) {
    if !active() {
        return;
    }
    let after = cause(previous);
    record(|r| {
        // An attempt cut by its per-try timeout was dropped (and marked
        // cancelled) before the retry layer saw why.
        if after == Cause::Error(ErrorClass::PerTryTimeout)
            && let Some(cut) = r.attempts_mut().find(|a| a.number + 1 == number)
            && cut.result == AttemptResult::Cancelled
        {
            cut.result = AttemptResult::Failed(ErrorClass::PerTryTimeout);
        }
        r.attempt_mut(number).reason = AttemptReason::Retry { after };
    });
}

/// Attempt `number` is a hedge, sent after `delay` without an answer.
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
pub(crate) fn hedging(number: u32, delay: Duration) {
    record(|r| r.attempt_mut(number).reason = AttemptReason::Hedge { delay });
}

/// How a failed attempt ended, as a retry layer saw it.
fn cause<B>(result: &Result<http::Response<B>, crate::error::BoxError>) -> Cause {
    match result {
        Ok(response) => match response
            .headers()
            .get("grpc-status")
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .and_then(|v| v.parse().ok())
        {
            Some(code) => Cause::Grpc(code),
            None => Cause::Status(response.status()),
        },
        Err(error) => Cause::Error(ErrorClass::of(error.as_ref())),
    }
}

/// The breaker's decision for `request` (`admitted` or not, in `state`).
#[cfg(feature = "breaker")]
pub(crate) fn breaker<B>(
    request: &http::Request<B>,
    admitted: bool,
    state: impl FnOnce() -> crate::breaker::State,
) {
    if !active() {
        return;
    }
    let number = attempt_number(request);
    let decision = match admitted {
        true => BreakerDecision::Admitted(state()),
        false => BreakerDecision::Refused,
    };
    record(|r| {
        let attempt = r.attempt_mut(number);
        attempt.breaker = Some(decision);
        if !admitted {
            attempt.result = AttemptResult::Refused(Refusal::BreakerOpen);
            attempt.duration = Some(Duration::ZERO);
        }
    });
}

/// The request's attempt number: 1, or what the retry layer marked.
#[cfg(feature = "breaker")]
fn attempt_number<B>(#[allow(unused_variables)] request: &http::Request<B>) -> u32 {
    #[cfg(feature = "retry")]
    if let Some(attempt) = request.extensions().get::<crate::retry::Attempt>() {
        return attempt.0;
    }
    1
}

/// Attempt `number` was refused before being sent.
#[cfg_attr(not(feature = "mesh"), allow(dead_code))]
pub(crate) fn refused(number: u32, refusal: Refusal) {
    record(|r| {
        let attempt = r.attempt_mut(number);
        attempt.result = AttemptResult::Refused(refusal);
        attempt.duration = Some(Duration::ZERO);
    });
}

/// Attempt `number` goes to `endpoint` (after waiting in line if `queued`).
#[cfg_attr(not(feature = "mesh"), allow(dead_code))]
pub(crate) fn endpoint(number: u32, endpoint: SocketAddr, queued: bool) {
    record(|r| {
        let attempt = r.attempt_mut(number);
        attempt.endpoint = Some(endpoint);
        attempt.queued = queued;
    });
}

/// Attempt `number` ended with `result` (the first ending recorded wins).
#[cfg_attr(not(feature = "mesh"), allow(dead_code))]
pub(crate) fn ended(number: u32, result: AttemptResult) {
    record(|r| end(r, number, result));
}

impl DecisionReport {
    /// Ends every attempt still pending with `result`, now.
    pub(super) fn end_pending(&mut self, result: AttemptResult) {
        let now = since(self.started);
        for attempt in self.attempts_mut() {
            if attempt.result == AttemptResult::Pending {
                attempt.result = result;
                attempt.duration = Some(now.saturating_sub(attempt.start));
            }
        }
    }
}

fn end(r: &mut DecisionReport, number: u32, result: AttemptResult) {
    let started = r.started;
    let attempt = r.attempt_mut(number);
    if attempt.result == AttemptResult::Pending {
        attempt.result = result;
        attempt.duration = Some(since(started).saturating_sub(attempt.start));
    }
}

/// Ends attempt `number` as cancelled if nothing else ended it first: held
/// by the attempt's future, so a hedge that lost or an attempt cut by its
/// per-try timeout still gets its duration. It records only into the
/// report of its own request (the one current when it was made).
#[cfg_attr(not(feature = "mesh"), allow(dead_code))]
pub(crate) struct AttemptGuard {
    number: u32,
    report: ReportId,
}

/// Which report: where it lives (boxed, it does not move while recorded)
/// and when its request started. Either alone could be shared by two
/// reports: an address reused once a report is freed, or one instant under
/// a paused clock.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ReportId(usize, Instant);

impl ReportId {
    fn of(report: &DecisionReport) -> Self {
        Self(std::ptr::from_ref(report) as usize, report.started)
    }
}

impl AttemptGuard {
    /// A guard for attempt `number`, when a report is recorded.
    #[inline]
    #[cfg_attr(not(feature = "mesh"), allow(dead_code))]
    pub(crate) fn new(number: u32) -> Option<Self> {
        let mut report = None;
        record(|r| report = Some(ReportId::of(r)));
        report.map(|report| Self { number, report })
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        record(|r| {
            if ReportId::of(r) == self.report {
                end(r, self.number, AttemptResult::Cancelled);
            }
        });
    }
}
