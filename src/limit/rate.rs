use super::RateLimited;
use crate::error::{BoxError, ConfigError, check};
use futures_util::TryFutureExt;
use futures_util::future::{self, Either, MapErr, Ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Settings of [`RateLimitLayer`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RateLimitConfig {
    /// Tokens added per second. Default: 100.
    pub per_second: f64,
    /// Bucket size: requests admitted at once after a quiet spell.
    /// Default: 100.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 100.0,
            burst: 100,
        }
    }
}

impl RateLimitConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::between("rate_limit.per_second", self.per_second, 1e-3, 1e9)?;
        check::at_least("rate_limit.burst", self.burst, 1)
    }
}

/// A token bucket, refusing with [`RateLimited`] when it is empty.
///
/// The bucket is kept as one atomic "theoretical arrival time" (the
/// generic cell rate algorithm, which admits exactly what a token bucket
/// admits), so admitting a request is one compare-and-swap and no lock.
/// Every service made by one layer shares its bucket.
///
/// ```
/// use sinew::limit::{RateLimitConfig, RateLimitLayer};
///
/// let layer = RateLimitLayer::new(RateLimitConfig { per_second: 50.0, burst: 10 }).unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    base: Instant,
    /// Nanoseconds after `base` at which the bucket would be full again,
    /// minus the burst tolerance.
    tat: AtomicU64,
    interval: u64,
    tolerance: u64,
}

impl Bucket {
    fn try_take(&self) -> Result<(), Duration> {
        let now = crate::clock::now()
            .saturating_duration_since(self.base)
            .as_nanos() as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                return Err(Duration::from_nanos(start - now - self.tolerance));
            }
            match self.tat.compare_exchange_weak(
                tat,
                start + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

impl RateLimitLayer {
    /// Creates the layer, after checking `config`.
    pub fn new(config: RateLimitConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let interval = (1e9 / config.per_second).max(1.0) as u64;
        Ok(Self {
            bucket: Arc::new(Bucket {
                base: Instant::now(),
                tat: AtomicU64::new(0),
                interval,
                tolerance: interval.saturating_mul(u64::from(config.burst - 1)),
            }),
        })
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<Bucket>,
}

impl<S> RateLimit<S> {
    crate::inner_accessors!();
}

/// Response future of [`RateLimit`].
pub type ResponseFuture<F, T, E> = Either<Ready<Result<T, BoxError>>, MapErr<F, fn(E) -> BoxError>>;

impl<S, Req> Service<Req> for RateLimit<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.bucket.try_take() {
            Ok(()) => Either::Right(self.inner.call(request).map_err(Into::into as fn(_) -> _)),
            Err(wait) => Either::Left(future::ready(Err(RateLimited::new(wait).into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn admits_a_burst_then_the_rate() {
        let layer = RateLimitLayer::new(RateLimitConfig {
            per_second: 10.0,
            burst: 5,
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        let svc = layer.layer(tower::service_fn(|()| async { Ok::<_, BoxError>(()) }));
        let mut admitted = 0;
        for _ in 0..20 {
            if svc.clone().oneshot(()).await.is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 5, "the burst");
        let err = svc.clone().oneshot(()).await.err();
        let wait = err
            .as_ref()
            .and_then(|e| e.downcast_ref::<RateLimited>())
            .map(RateLimited::retry_after);
        assert_eq!(wait, Some(Duration::from_millis(100)));

        // Over 2 s, 10/s admits 20 more.
        let mut admitted = 0;
        for _ in 0..200 {
            tokio::time::advance(Duration::from_millis(10)).await;
            if svc.clone().oneshot(()).await.is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 20);
    }

    #[test]
    fn validates() {
        let err = RateLimitLayer::new(RateLimitConfig {
            per_second: 0.0,
            burst: 1,
        })
        .err();
        assert_eq!(
            err.map(|e| e.field().to_owned()).as_deref(),
            Some("rate_limit.per_second")
        );
        let err = RateLimitLayer::new(RateLimitConfig {
            per_second: 1.0,
            burst: 0,
        })
        .err();
        assert_eq!(
            err.map(|e| e.field().to_owned()).as_deref(),
            Some("rate_limit.burst")
        );
    }
}
