use super::body::ReplayBody;
use super::config::RetryConfig;
use super::hedge::hedged;
use super::idempotency::is_idempotent;
use super::stats::{Attempts, Counters};
use crate::classify::{Classify, Outcome};
use crate::deadline::{Deadline, earliest};
use crate::error::BoxError;
use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use std::sync::Arc;
use tokio::time::Instant;
use tower::retry::backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceExt};

pub(super) struct Shared<C> {
    pub(super) config: RetryConfig,
    pub(super) budget: TpsBudget,
    pub(super) backoff: ExponentialBackoffMaker<HasherRng>,
    pub(super) classifier: C,
    pub(super) counters: Counters,
}

impl<C: Classify> Shared<C> {
    pub(super) fn classify<B>(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match result {
            // A gRPC response without a status in its headers is streaming:
            // it is committed, whatever its trailers say later.
            Ok(response) => self
                .classifier
                .classify_response(response.status(), response.headers())
                .unwrap_or(Outcome::Success),
            Err(error) => self.classifier.classify_error(error.as_ref()),
        }
    }

    /// Takes one retry from the budget, counting refusals.
    pub(super) fn withdraw(&self) -> bool {
        let ok = self.budget.withdraw();
        if !ok {
            Counters::bump(&self.counters.budget_exhausted);
            tracing::debug!("retry budget exhausted");
        }
        ok
    }

    /// True when an attempt starting at `start` would have at least the
    /// configured minimum of time before `deadline`.
    pub(super) fn time_for_attempt(&self, deadline: Option<Deadline>, start: Instant) -> bool {
        deadline.is_none_or(|d| {
            d.instant().saturating_duration_since(start) >= self.config.min_attempt_time
        })
    }
}

/// Whether an attempt with `outcome` may be tried again.
pub(super) fn may_retry(outcome: Outcome, idempotent: bool) -> bool {
    match outcome {
        Outcome::Success => false,
        Outcome::Failure { retryable } => retryable && idempotent,
        Outcome::NotProcessed => true,
    }
}

pub(super) fn attempt_request<B: Body>(parts: &Parts, body: &ReplayBody<B>) -> Request<ReplayBody<B>> {
    Request::from_parts(parts.clone(), body.replay())
}

pub(super) fn mark_attempts<B>(
    mut result: Result<Response<B>, BoxError>,
    attempts: u32,
) -> Result<Response<B>, BoxError> {
    if attempts > 1 {
        if let Ok(response) = &mut result {
            response.extensions_mut().insert(Attempts(attempts));
        }
    }
    result
}

pub(super) async fn run<S, C, B, ResB>(
    shared: Arc<Shared<C>>,
    mut service: S,
    request: Request<B>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    C: Classify,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let body = ReplayBody::new(body, shared.config.max_replay_bytes);
    let idempotent = is_idempotent(&parts, shared.config.assume_idempotent);
    let deadline = earliest(parts.extensions.get::<Deadline>().copied(), Deadline::current());
    shared.budget.deposit();
    Counters::bump(&shared.counters.requests);

    if let Some(hedge) = shared.config.hedge {
        if idempotent && body.buffer_all().await.map_err(Into::into)? {
            return hedged(&shared, service, &parts, &body, hedge, deadline).await;
        }
    }

    let mut backoff = shared.backoff.clone().make_backoff();
    let mut attempt = 1;
    let mut first = true;
    loop {
        let request = attempt_request(&parts, &body);
        let result = if std::mem::take(&mut first) {
            service.call(request).await.map_err(Into::into)
        } else {
            let ready: Result<&mut S, BoxError> = service.ready().await.map_err(Into::into);
            match ready {
                Ok(ready) => ready.call(request).await.map_err(Into::into),
                Err(e) => Err(e),
            }
        };
        let outcome = shared.classify(&result);
        if !may_retry(outcome, idempotent)
            || attempt >= shared.config.max_attempts
            || !body.is_replayable()
        {
            return mark_attempts(result, attempt);
        }
        let delay = backoff.next_backoff();
        if !shared.time_for_attempt(deadline, delay.deadline()) {
            tracing::debug!(attempt, "not enough time left for another attempt");
            return mark_attempts(result, attempt);
        }
        if !shared.withdraw() {
            return mark_attempts(result, attempt);
        }
        tracing::debug!(attempt, ?outcome, "retrying");
        // Release the failed response (and its connection) before waiting.
        drop(result);
        delay.await;
        attempt += 1;
        Counters::bump(&shared.counters.retries);
    }
}
