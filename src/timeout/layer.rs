use super::{ResponseFuture, TimeoutConfig};
use crate::deadline::Deadline;
use crate::error::{BoxError, ConfigError};
use http::Request;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// Applies a timeout to each request, merged with any inherited deadline.
/// See the [module docs](super).
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Creates the layer, after checking `config`.
    pub fn new(config: TimeoutConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            timeout: config.timeout,
        })
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service made by [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    crate::inner_accessors!();
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clock = crate::clock::enter();
        let own = Deadline::at(crate::bounds::later(crate::clock::now(), self.timeout));
        let (deadline, inherited) = match Deadline::for_request(&request) {
            Some(outer) if outer < own => (outer, true),
            _ => (own, false),
        };
        let scope = crate::deadline::scope::enter(deadline);
        let future = self.inner.call(request);
        drop((scope, clock));
        ResponseFuture::new(future, deadline, inherited, self.timeout)
    }
}
