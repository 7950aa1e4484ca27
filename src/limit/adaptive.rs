use super::Overloaded;
use super::gradient::{Gradient, Params};
use crate::error::{BoxError, ConfigError, check};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Settings of [`AdaptiveLimitLayer`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct AdaptiveLimitConfig {
    /// The limit used once the first minimum latency is measured.
    /// Default: 20.
    pub initial_limit: usize,
    /// The lowest limit, also used while measuring the minimum latency.
    /// Default: 3.
    pub min_limit: usize,
    /// The highest limit. Default: 1000.
    pub max_limit: usize,
    /// How often the limit is recomputed. Default: 100 ms.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub sample_window: Duration,
    /// Latency above the minimum tolerated before the limit shrinks, as a
    /// fraction of the minimum. Default: 0.1. Range: 0 to 1.
    pub buffer: f64,
    /// How often the minimum latency is measured again. Default: 60 s
    /// (±15% jitter).
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub min_rtt_interval: Duration,
    /// Samples taken to measure the minimum latency. Default: 50.
    pub min_rtt_samples: u32,
}

impl Default for AdaptiveLimitConfig {
    fn default() -> Self {
        Self {
            initial_limit: 20,
            min_limit: 3,
            max_limit: 1000,
            sample_window: Duration::from_millis(100),
            buffer: 0.1,
            min_rtt_interval: Duration::from_secs(60),
            min_rtt_samples: 50,
        }
    }
}

impl AdaptiveLimitConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields()
            .map_err(|e| e.within("adaptive_limit"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        check::at_least("min_limit", self.min_limit, 1)?;
        if self.max_limit < self.min_limit {
            return Err(ConfigError::new(
                "max_limit",
                "must not be less than min_limit",
            ));
        }
        if !(self.min_limit..=self.max_limit).contains(&self.initial_limit) {
            return Err(ConfigError::new(
                "initial_limit",
                "must be between min_limit and max_limit",
            ));
        }
        check::duration("sample_window", self.sample_window)?;
        check::between("buffer", self.buffer, 0.0, 1.0)?;
        check::duration("min_rtt_interval", self.min_rtt_interval)?;
        check::at_least("min_rtt_samples", self.min_rtt_samples, 1)
    }
}

/// A concurrency limit that finds the server's capacity by itself, from
/// latency, as Netflix's concurrency-limits library and Envoy's adaptive
/// concurrency filter do. Requests over the current limit fail at once
/// with [`Overloaded`].
///
/// Each completed request is a latency sample (atomics only); once per
/// sample window one completing request recomputes the limit. The control
/// law is documented in `docs/architecture.md` and in the source.
///
/// ```
/// use sinew::limit::{AdaptiveLimitConfig, AdaptiveLimitLayer};
///
/// let layer = AdaptiveLimitLayer::new(AdaptiveLimitConfig::default()).unwrap();
/// assert_eq!(layer.limit(), 3, "measuring the minimum latency first");
/// ```
#[derive(Clone, Debug)]
pub struct AdaptiveLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit: AtomicUsize,
    inflight: AtomicUsize,
    peak: AtomicUsize,
    base: Instant,
    window_nanos: u64,
    window_end: AtomicU64,
    sum_nanos: AtomicU64,
    count: AtomicU64,
    gradient: Mutex<Gradient>,
}

impl AdaptiveLimitLayer {
    /// Creates the layer, after checking `config`.
    pub fn new(config: AdaptiveLimitConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let gradient = Gradient::new(
            Params {
                min_limit: config.min_limit,
                max_limit: config.max_limit,
                buffer: config.buffer,
                min_rtt_interval: config.min_rtt_interval,
                min_rtt_samples: u64::from(config.min_rtt_samples),
            },
            config.initial_limit,
        );
        let window_nanos = config.sample_window.as_nanos() as u64;
        Ok(Self {
            shared: Arc::new(Shared {
                limit: AtomicUsize::new(gradient.initial()),
                inflight: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                base: Instant::now(),
                window_nanos,
                window_end: AtomicU64::new(window_nanos),
                sum_nanos: AtomicU64::new(0),
                count: AtomicU64::new(0),
                gradient: Mutex::new(gradient),
            }),
        })
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub fn inflight(&self) -> usize {
        self.shared.inflight.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let before = self.inflight.fetch_add(1, Ordering::AcqRel);
        if before >= self.limit.load(Ordering::Relaxed) {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.peak.fetch_max(before + 1, Ordering::Relaxed);
        Some(Admitted {
            shared: self.clone(),
            start: Instant::now(),
        })
    }

    fn sample(&self, rtt: Duration) {
        self.sum_nanos
            .fetch_add(rtt.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = self.base.elapsed().as_nanos() as u64;
        let end = self.window_end.load(Ordering::Relaxed);
        if now < end {
            return;
        }
        // One completing request per window does the arithmetic; the
        // others go on without waiting.
        let Ok(mut gradient) = self.gradient.try_lock() else {
            return;
        };
        if self
            .window_end
            .compare_exchange(
                end,
                now + self.window_nanos,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let sum = Duration::from_nanos(self.sum_nanos.swap(0, Ordering::Relaxed));
        let count = self.count.swap(0, Ordering::Relaxed);
        let peak = self
            .peak
            .swap(self.inflight.load(Ordering::Relaxed), Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        let next = gradient.update(Instant::now(), limit, sum, count, peak);
        if next != limit {
            tracing::debug!(limit = next, "adaptive concurrency limit changed");
            self.limit.store(next, Ordering::Relaxed);
        }
    }
}

/// One admitted request: gives its place back when dropped.
#[derive(Debug)]
struct Admitted {
    shared: Arc<Shared>,
    start: Instant,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> Layer<S> for AdaptiveLimitLayer {
    type Service = AdaptiveLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`AdaptiveLimitLayer`].
#[derive(Clone, Debug)]
pub struct AdaptiveLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> AdaptiveLimit<S> {
    crate::inner_accessors!();
}

impl<S, Req> Service<Req> for AdaptiveLimit<S>
where
    S: Service<Req>,
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
    fn call(&mut self, request: Req) -> Self::Future {
        match self.shared.admit() {
            Some(admitted) => ResponseFuture {
                future: Some(self.inner.call(request)),
                admitted: Some(admitted),
            },
            None => ResponseFuture {
                future: None,
                admitted: None,
            },
        }
    }
}

pin_project! {
    /// Response future of [`AdaptiveLimit`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: Option<F>,
        admitted: Option<Admitted>,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(future) = this.future.as_pin_mut() else {
            return Poll::Ready(Err(Overloaded::new("adaptive").into()));
        };
        let result = ready!(future.poll(cx));
        if let Some(admitted) = this.admitted.take() {
            admitted.shared.sample(admitted.start.elapsed());
        }
        Poll::Ready(result.map_err(Into::into))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;
    use tower::ServiceExt;

    /// A server that serves `capacity` requests at a time, 10 ms each,
    /// and queues the rest (so latency grows with the excess).
    fn server(
        capacity: usize,
    ) -> impl Service<(), Response = (), Error = BoxError, Future = impl Send> + Clone {
        let slots = Arc::new(Semaphore::new(capacity));
        tower::service_fn(move |()| {
            let slots = slots.clone();
            async move {
                let _slot = slots.acquire().await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok::<_, BoxError>(())
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn converges_near_the_servers_capacity() {
        let layer = AdaptiveLimitLayer::new(AdaptiveLimitConfig {
            initial_limit: 100,
            min_limit: 2,
            ..AdaptiveLimitConfig::default()
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        let svc = layer.layer(server(10));
        let stop = Instant::now() + Duration::from_secs(20);
        let mut limits = Vec::new();
        let clients = (0..64).map(|_| {
            let svc = svc.clone();
            async move {
                while Instant::now() < stop {
                    if svc.clone().oneshot(()).await.is_err() {
                        // Refused at once: come back a little later.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            }
        });
        let watcher = async {
            while Instant::now() < stop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                limits.push(layer.limit());
            }
        };
        tokio::join!(futures_util::future::join_all(clients), watcher);
        // Ignore the first 2 s of convergence from 100.
        let settled = &limits[4..];
        let (lo, hi) = (
            settled.iter().copied().min().unwrap_or_default(),
            settled.iter().copied().max().unwrap_or_default(),
        );
        assert!(
            lo >= 10 && hi <= 16,
            "limit settled within [{lo}, {hi}]: {limits:?}"
        );
    }

    #[test]
    fn validates() {
        let err = AdaptiveLimitLayer::new(AdaptiveLimitConfig {
            initial_limit: 5000,
            ..AdaptiveLimitConfig::default()
        })
        .err();
        assert_eq!(
            err.map(|e| e.field().to_owned()).as_deref(),
            Some("adaptive_limit.initial_limit")
        );
    }
}
