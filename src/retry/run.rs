use super::body::ReplayBody;
use super::budget::RetryBudget;
use super::config::{HedgeConfig, RetryConfig};
use super::hedge::hedged;
use super::metrics::{RetryMetrics, RetryReason};
use super::per_try::PerTry;
use super::retry_on::Rules;
use super::stats::{Attempt, Attempts, Counters};
use crate::classify::{Classify, Outcome};
use crate::deadline::{Deadline, earliest};
use crate::error::BoxError;
use bytes::Bytes;
use http::{Request, Response, request::Parts};
use http_body::Body;
use std::sync::Arc;
use tokio::time::Instant;
use tower::retry::backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceExt};

pub(super) struct Shared<C> {
    pub(super) config: RetryConfig,
    pub(super) budget: RetryBudget,
    pub(super) backoff: ExponentialBackoffMaker<HasherRng>,
    pub(super) classifier: C,
    /// The route's `retry_on`, when it has one.
    pub(super) rules: Option<Rules>,
    pub(super) counters: Counters,
    /// The labels of the `metrics` series.
    pub(super) labels: Vec<metrics::Label>,
    /// The same counts, through the `metrics` facade: registered when the
    /// layer is labelled, or else at its first count, so that a layer
    /// about to be labelled leaves no unlabelled series behind.
    pub(super) metrics: std::sync::OnceLock<RetryMetrics>,
}

impl<C> Shared<C> {
    pub(super) fn metrics(&self) -> &RetryMetrics {
        self.metrics.get_or_init(|| RetryMetrics::new(&self.labels))
    }
}

impl<C: Classify> Shared<C> {
    pub(super) fn classify<B>(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match (result, &self.rules) {
            (Ok(response), Some(rules)) => {
                rules.classify_response(&self.classifier, response.status(), response.headers())
            }
            // A gRPC response without a status in its headers is streaming:
            // it is committed, whatever its trailers say later.
            (Ok(response), None) => self
                .classifier
                .classify_response(response.status(), response.headers())
                .unwrap_or(Outcome::Success),
            (Err(error), Some(rules)) => rules.classify_error(&self.classifier, error.as_ref()),
            (Err(error), None) => self.classifier.classify_error(error.as_ref()),
        }
    }

    /// An attempt's future, bounded by the per-try timeout.
    #[inline]
    pub(super) fn per_try<F>(&self, attempt: F) -> PerTry<F> {
        PerTry::new(attempt, self.config.per_try_timeout)
    }

    /// Takes one retry from the budget, counting refusals.
    pub(super) fn withdraw(&self) -> bool {
        let ok = self.budget.withdraw();
        if !ok {
            Counters::bump(&self.counters.budget_exhausted);
            self.metrics().budget_exhausted();
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

#[inline]
pub(super) fn attempt_request<B: Body>(
    parts: &Parts,
    body: &ReplayBody<B>,
) -> Request<ReplayBody<B>> {
    Request::from_parts(parts.clone(), body.replay())
}

/// A later attempt (a retry or a hedge), marked so that the layers below
/// can tell it from a first attempt.
pub(super) fn later_attempt<B: Body>(
    parts: &Parts,
    body: &ReplayBody<B>,
    number: u32,
) -> Request<ReplayBody<B>> {
    let mut request = attempt_request(parts, body);
    request.extensions_mut().insert(Attempt(number));
    request
}

pub(super) fn mark_attempts<B>(
    mut result: Result<Response<B>, BoxError>,
    attempts: u32,
) -> Result<Response<B>, BoxError> {
    if attempts > 1
        && let Ok(response) = &mut result
    {
        response.extensions_mut().insert(Attempts(attempts));
    }
    result
}

/// What a request needs to be sent again.
pub(super) struct Replay<S, C, B> {
    pub(super) shared: Arc<Shared<C>>,
    pub(super) service: S,
    pub(super) parts: Parts,
    pub(super) body: ReplayBody<B>,
    pub(super) idempotent: bool,
}

impl<S, C, B> Replay<S, C, B> {
    #[inline]
    pub(super) fn new(
        shared: Arc<Shared<C>>,
        service: S,
        parts: Parts,
        body: ReplayBody<B>,
        idempotent: bool,
    ) -> Self {
        Self {
            shared,
            service,
            parts,
            body,
            idempotent,
        }
    }
}

impl<S, C: Classify, B: Body> Replay<S, C, B> {
    /// Whether the first attempt's result ends the request.
    #[inline]
    pub(super) fn is_final<T>(&self, result: &Result<Response<T>, BoxError>) -> bool {
        let outcome = self.shared.classify(result);
        !may_retry(outcome, self.idempotent)
            || self.shared.config.max_attempts <= 1
            || !self.body.is_replayable()
    }
}

/// Hedges a request when hedging is on and its body can be held whole;
/// otherwise sends it with sequential retries.
pub(super) async fn hedge_or_retry<S, C, B, ResB>(
    replay: Replay<S, C, B>,
    hedge: Option<HedgeConfig>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    C: Classify,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let deadline = earliest(
        replay.parts.extensions.get::<Deadline>().copied(),
        Deadline::current(),
    );
    let hedge = match hedge {
        Some(hedge) if replay.body.buffer_all().await.map_err(Into::into)? => Some(hedge),
        _ => None,
    };
    if let Some(hedge) = hedge {
        let Replay {
            shared,
            service,
            parts,
            body,
            ..
        } = replay;
        return hedged(&shared, service, &parts, &body, hedge, deadline).await;
    }
    let mut replay = replay;
    let request = attempt_request(&replay.parts, &replay.body);
    let first = call(&replay.shared, &mut replay.service, request).await;
    retry_after(replay, first).await
}

async fn call<S, C: Classify, B, ResB>(
    shared: &Shared<C>,
    service: &mut S,
    request: Request<B>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    let ready: Result<&mut S, BoxError> = service.ready().await.map_err(Into::into);
    match ready {
        Ok(ready) => shared.per_try(ready.call(request)).await,
        Err(e) => Err(e),
    }
}

/// Goes on after a first attempt that failed: backs off, checks the
/// attempt count, the deadline and the budget, and sends again.
pub(super) async fn retry_after<S, C, B, ResB>(
    replay: Replay<S, C, B>,
    first: Result<Response<ResB>, BoxError>,
) -> Result<Response<ResB>, BoxError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    C: Classify,
    B: Body,
{
    let Replay {
        shared,
        mut service,
        parts,
        body,
        idempotent,
    } = replay;
    let deadline = earliest(
        parts.extensions.get::<Deadline>().copied(),
        Deadline::current(),
    );
    let mut backoff = shared.backoff.clone().make_backoff();
    let mut result = first;
    let mut attempt = 1;
    loop {
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
        let reason = RetryReason::of(&result, outcome);
        #[cfg(feature = "telemetry")]
        crate::telemetry::report::retrying(attempt + 1, &result);
        // Release the failed response (and its connection) before waiting.
        drop(result);
        delay.await;
        attempt += 1;
        Counters::bump(&shared.counters.retries);
        shared.metrics().retried(reason);
        result = call(&shared, &mut service, later_attempt(&parts, &body, attempt)).await;
    }
}
