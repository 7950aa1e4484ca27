use super::body::ReplayBody;
use super::config::HedgeConfig;
use super::metrics::HedgeReason;
use super::run::{Shared, attempt_request, later_attempt, mark_attempts, may_retry};
use super::stats::Counters;
use crate::classify::Classify;
use crate::deadline::Deadline;
use crate::error::BoxError;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{Request, Response, request::Parts};
use http_body::Body;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// Sends the request, and another copy each time `delay` passes without an
/// answer, up to the configured number of attempts. The first answer that
/// is not a retryable failure wins; dropping the others cancels them. A
/// retryable failure sends the next copy at once, as gRFC A6 specifies.
pub(super) async fn hedged<S, C, B, ResB>(
    shared: &Shared<C>,
    service: S,
    parts: &Parts,
    body: &ReplayBody<B>,
    hedge: HedgeConfig,
    deadline: Option<Deadline>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    C: Classify,
    B: Body,
{
    let send = |svc: &S, number: u32| {
        let request = if number == 1 {
            attempt_request(parts, body)
        } else {
            later_attempt(parts, body, number)
        };
        shared.per_try(svc.clone().oneshot(request))
    };
    let mut inflight = FuturesUnordered::new();
    inflight.push(send(&service, 1));
    let mut sent = 1;
    let mut last = None;
    let timer = tokio::time::sleep(hedge.delay);
    tokio::pin!(timer);

    loop {
        let more = sent < hedge.max_attempts;
        tokio::select! {
            biased;
            Some(result) = inflight.next() => {
                let outcome = shared.classify(&result);
                if !may_retry(outcome, true) {
                    return mark_attempts(result, sent);
                }
                last = Some(result);
                if more && shared.time_for_attempt(deadline, Instant::now()) && shared.withdraw() {
                    #[cfg(feature = "telemetry")]
                    if let Some(previous) = &last {
                        crate::telemetry::report::retrying(sent + 1, previous);
                    }
                    inflight.push(send(&service, sent + 1));
                    sent += 1;
                    Counters::bump(&shared.counters.hedges);
                    shared.metrics().hedged(HedgeReason::Failure);
                    timer.as_mut().reset(crate::bounds::later(Instant::now(), hedge.delay));
                } else if inflight.is_empty() {
                    break;
                }
            }
            () = &mut timer, if more => {
                if shared.time_for_attempt(deadline, Instant::now()) && shared.withdraw() {
                    #[cfg(feature = "telemetry")]
                    crate::telemetry::report::hedging(sent + 1, hedge.delay);
                    inflight.push(send(&service, sent + 1));
                    sent += 1;
                    Counters::bump(&shared.counters.hedges);
                    shared.metrics().hedged(HedgeReason::Delay);
                    timer.as_mut().reset(crate::bounds::later(Instant::now(), hedge.delay));
                } else {
                    // No budget or time for more: wait for what is in flight.
                    sent = hedge.max_attempts;
                }
            }
            else => break,
        }
    }
    match last {
        Some(result) => mark_attempts(result, sent),
        None => Err("hedged request ended without an attempt".into()),
    }
}
