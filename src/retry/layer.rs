use super::body::ReplayBody;
use super::budget::RetryBudget;
use super::config::RetryConfig;
use super::future::ResponseFuture;
use super::idempotency::is_idempotent;
use super::run::{Replay, Shared, attempt_request, hedge_or_retry};
use super::stats::{Counters, RetryStats};
use crate::classify::{Classify, StatusClassifier};
use crate::error::{BoxError, ConfigError};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::retry::backoff::ExponentialBackoffMaker;
use tower::util::rng::HasherRng;
use tower::{Layer, Service};

/// Retries failed requests. See the [module docs](super).
///
/// Every service made by one layer (and by its clones) shares one budget
/// and one set of [`RetryStats`].
pub struct RetryLayer<C = StatusClassifier> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C> std::fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl RetryLayer {
    /// Creates the layer with the default [`StatusClassifier`], after
    /// checking `config`.
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        Self::with_classifier(config, StatusClassifier::default())
    }
}

impl<C: Classify> RetryLayer<C> {
    /// Creates the layer with a classifier of the application's.
    pub fn with_classifier(config: RetryConfig, classifier: C) -> Result<Self, ConfigError> {
        config.validate()?;
        let budget = RetryBudget::new(
            config.budget.ratio,
            config.budget.min_per_second,
            config.budget.window,
        );
        let backoff = ExponentialBackoffMaker::new(
            config.backoff.base,
            config.backoff.max,
            config.backoff.jitter,
            HasherRng::default(),
        )
        .map_err(|e| ConfigError::new("retry.backoff", e.to_string()))?;
        let rules = config
            .retry_on
            .as_ref()
            .map(|on| on.rules())
            .transpose()
            .map_err(|e| e.within("retry.retry_on"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                budget,
                backoff,
                classifier,
                rules,
                counters: Counters::default(),
                labels: Vec::new(),
                metrics: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Counts this layer's retries, hedges and budget refusals under
    /// `labels` (besides `reason`), e.g. the service and route it serves;
    /// without, the series carry `reason` alone. Keep the values few
    /// (names from configuration, never per-request values): each set is
    /// a series of its own.
    ///
    /// The counters are registered here, once, so call it on a layer just
    /// built: on a layer already cloned, or that already counted, it
    /// changes nothing.
    ///
    /// ```
    /// use sinew::retry::{RetryConfig, RetryLayer};
    ///
    /// let layer = RetryLayer::new(RetryConfig::default())
    ///     .unwrap()
    ///     .with_metric_labels([("service", "reviews"), ("route", "0")]);
    /// # let _ = layer;
    /// ```
    pub fn with_metric_labels<K, V>(mut self, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<metrics::SharedString>,
        V: Into<metrics::SharedString>,
    {
        let labels: Vec<metrics::Label> = labels
            .into_iter()
            .map(|(k, v)| metrics::Label::new(k, v))
            .collect();
        match Arc::get_mut(&mut self.shared) {
            Some(shared) if shared.metrics.get().is_none() => {
                shared.labels = labels;
                // Registered now, so that the series show (at zero) from
                // the start.
                shared.metrics();
            }
            _ => {
                tracing::debug!("retry layer already shared or counting: metric labels not changed")
            }
        }
        self
    }

    /// The counters of every service this layer made.
    pub fn stats(&self) -> RetryStats {
        self.shared.counters.snapshot()
    }

    /// The configuration in force.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// True when both layers share one budget and counters: one is a clone
    /// of the other.
    pub fn shares_state_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<S, C> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`RetryLayer`]. Its inner service receives
/// [`ReplayBody`] request bodies.
pub struct Retry<S, C = StatusClassifier> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry").field("inner", &self.inner).finish()
    }
}

impl<S, C> Retry<S, C> {
    crate::inner_accessors!();
}

impl<S, C, B, ResB> Service<Request<B>> for Retry<S, C>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    C: Classify,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let (parts, body) = request.into_parts();
        let body = ReplayBody::new(body, shared.config.max_replay_bytes);
        let idempotent = is_idempotent(&parts, shared.config.assume_idempotent);
        shared.budget.deposit();
        // The ready service goes with the request; a clone stays behind.
        let clone = self.inner.clone();
        let mut service = std::mem::replace(&mut self.inner, clone);
        let hedge = shared.config.hedge.filter(|_| idempotent);
        // The hedging path sends every attempt itself.
        let first = hedge
            .is_none()
            .then(|| shared.per_try(service.call(attempt_request(&parts, &body))));
        let replay = Replay::new(shared.clone(), service, parts, body, idempotent);
        match first {
            Some(future) => ResponseFuture::first(future, replay),
            None => ResponseFuture::boxed(Box::pin(hedge_or_retry(replay, hedge))),
        }
    }
}
