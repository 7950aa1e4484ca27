use super::config::BreakerConfig;
use super::future::ResponseFuture;
use super::state::{Core, State, Transition, admit};
use crate::classify::{Classify, StatusClassifier};
use crate::error::{BoxError, ConfigError};
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// A circuit breaker. See the [module docs](super).
///
/// Every service made by one layer (and by its clones) shares one breaker.
pub struct BreakerLayer<C = StatusClassifier> {
    core: Arc<Core<C>>,
}

impl<C> Clone for BreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
        }
    }
}

impl<C> std::fmt::Debug for BreakerLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("state", &self.core.state())
            .finish()
    }
}

impl BreakerLayer {
    /// Creates a breaker with the default [`StatusClassifier`], after
    /// checking `config`.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::with_classifier(config, StatusClassifier::default())
    }
}

impl<C: Classify> BreakerLayer<C> {
    /// Creates a breaker that counts failures with `classifier`.
    pub fn with_classifier(config: BreakerConfig, classifier: C) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            core: Arc::new(Core::new(config, classifier)),
        })
    }
}

impl<C> BreakerLayer<C> {
    /// Calls `observer` on every change of state (from whichever task
    /// caused it; keep it quick).
    pub fn on_transition(self, observer: impl Fn(Transition) + Send + Sync + 'static) -> Self {
        self.core.observe(Arc::new(observer));
        self
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.core.state()
    }
}

impl<S, C> Layer<S> for BreakerLayer<C> {
    type Service = Breaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            core: self.core.clone(),
        }
    }
}

/// The service made by [`BreakerLayer`].
pub struct Breaker<S, C = StatusClassifier> {
    inner: S,
    core: Arc<Core<C>>,
}

impl<S: Clone, C> Clone for Breaker<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
        }
    }
}

impl<S: std::fmt::Debug, C> std::fmt::Debug for Breaker<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("state", &self.core.state())
            .finish()
    }
}

impl<S, C> Breaker<S, C> {
    /// The current state.
    pub fn state(&self) -> State {
        self.core.state()
    }

    crate::inner_accessors!();
}

impl<S, C, ReqB, ResB> Service<Request<ReqB>> for Breaker<S, C>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    C: Classify,
{
    type Response = Response<super::BreakerBody<ResB, C>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let admitted = admit(&self.core);
        #[cfg(feature = "telemetry")]
        crate::telemetry::report::breaker(&request, admitted.is_some(), || self.core.state());
        match admitted {
            Some(ticket) => ResponseFuture::admitted(self.inner.call(request), ticket),
            None => ResponseFuture::refused(),
        }
    }
}
