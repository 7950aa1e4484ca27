use super::Overloaded;
use crate::error::{BoxError, ConfigError, check};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use tokio::sync::Notify;
use tower::{Layer, Service};

/// Settings of [`ConcurrencyLimitLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct ConcurrencyLimitConfig {
    /// Requests in flight at once. Default: 1024.
    pub max_concurrent: usize,
    /// Requests waiting for a slot; one more is refused at once.
    /// Default: 1024. Zero refuses whatever finds every slot taken.
    pub max_queue: usize,
}

impl Default for ConcurrencyLimitConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 1024,
            max_queue: 1024,
        }
    }
}

impl ConcurrencyLimitConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::at_least("concurrency_limit.max_concurrent", self.max_concurrent, 1)?;
        if self.max_concurrent > usize::MAX / 2 {
            return Err(ConfigError::new(
                "concurrency_limit.max_concurrent",
                format!("must be at most {}", usize::MAX / 2),
            ));
        }
        Ok(())
    }
}

/// Bounds the requests in flight, with a bounded FIFO queue; when the queue
/// is full, a request fails at once with [`Overloaded`].
///
/// Unlike tower's `ConcurrencyLimit`, which makes callers wait in
/// `poll_ready` without bound, this layer is always ready and decides in
/// `call`, so the queue length is a setting and not an accident. Every
/// service made by one layer shares its slots. A slot is released when the
/// response head arrives (or the request is cancelled).
///
/// ```
/// use sinew::limit::{ConcurrencyLimitConfig, ConcurrencyLimitLayer};
///
/// let layer = ConcurrencyLimitLayer::new(ConcurrencyLimitConfig {
///     max_concurrent: 64,
///     max_queue: 16,
/// })
/// .unwrap();
/// assert_eq!(layer.available(), 64);
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    shared: Arc<Shared>,
}

/// The slots are a plain atomic count, so that taking and releasing one is
/// a single atomic operation; tokio's semaphore locks its waiter list on
/// every release. Waiters park on a `Notify`, and arrivals queue behind
/// them rather than barging in while anyone waits.
#[derive(Debug)]
struct Shared {
    max_concurrent: usize,
    inflight: AtomicUsize,
    queued: AtomicUsize,
    max_queue: usize,
    released: Notify,
}

impl Shared {
    fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut inflight = self.inflight.load(Ordering::Relaxed);
        loop {
            if inflight >= self.max_concurrent {
                return None;
            }
            match self.inflight.compare_exchange_weak(
                inflight,
                inflight + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Permit(self.clone())),
                Err(seen) => inflight = seen,
            }
        }
    }

    async fn acquire(self: Arc<Self>) -> Permit {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before trying, so that a release in between is not missed.
            released.as_mut().enable();
            if let Some(permit) = self.try_acquire() {
                return permit;
            }
            released.await;
        }
    }
}

/// One slot, given back when dropped.
#[derive(Debug)]
struct Permit(Arc<Shared>);

impl Drop for Permit {
    fn drop(&mut self) {
        let shared = &self.0;
        shared.inflight.fetch_sub(1, Ordering::Release);
        if shared.queued.load(Ordering::Acquire) > 0 {
            shared.released.notify_one();
        }
    }
}

impl ConcurrencyLimitLayer {
    /// Creates the layer, after checking `config`.
    pub fn new(config: ConcurrencyLimitConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                max_concurrent: config.max_concurrent,
                inflight: AtomicUsize::new(0),
                queued: AtomicUsize::new(0),
                max_queue: config.max_queue,
                released: Notify::new(),
            }),
        })
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        self.shared
            .max_concurrent
            .saturating_sub(self.shared.inflight.load(Ordering::Relaxed))
    }

    /// Requests waiting for a slot right now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`ConcurrencyLimitLayer`].
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ConcurrencyLimit<S> {
    crate::inner_accessors!();
}

/// Keeps the queue length right however a queued request ends.
#[derive(Debug)]
struct QueueSlot(Arc<Shared>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

type Acquire = Pin<Box<dyn Future<Output = Permit> + Send>>;

impl<S, Req> Service<Req> for ConcurrencyLimit<S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let nobody_waits = self.shared.queued.load(Ordering::Relaxed) == 0;
        if let Some(permit) = nobody_waits.then(|| self.shared.try_acquire()).flatten() {
            return ResponseFuture {
                state: Stage::Running {
                    future: self.inner.call(request),
                    permit: Some(permit),
                },
            };
        }
        let queued = self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let slot = QueueSlot(self.shared.clone());
        if queued >= self.shared.max_queue {
            return ResponseFuture {
                state: Stage::Refused { slot: Some(slot) },
            };
        }
        // The ready service waits in the queue with its request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: Stage::Queued {
                acquire: Box::pin(self.shared.clone().acquire()),
                waiting: Some(Box::new((ready, request, slot))),
            },
        }
    }
}

pin_project! {
    /// Response future of [`ConcurrencyLimit`].
    pub struct ResponseFuture<S: Service<Req>, Req> {
        #[pin]
        state: Stage<S, Req>,
    }
}

pin_project! {
    #[project = Projection]
    enum Stage<S: Service<Req>, Req> {
        // Waiting for a slot, with the ready service and the request.
        // Boxed: the queue is the slow path, and keeping the service and
        // the request inline would make every response future larger.
        Queued { acquire: Acquire, waiting: Option<Box<(S, Req, QueueSlot)>> },
        // Holding a slot.
        Running { #[pin] future: S::Future, permit: Option<Permit> },
        // The queue was full.
        Refused { slot: Option<QueueSlot> },
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            match state.as_mut().project() {
                Projection::Running { future, permit } => {
                    let result = ready!(future.poll(cx));
                    permit.take();
                    return Poll::Ready(result.map_err(Into::into));
                }
                Projection::Refused { slot } => {
                    slot.take();
                    return Poll::Ready(Err(Overloaded::new("concurrency").into()));
                }
                Projection::Queued { acquire, waiting } => {
                    let permit = ready!(acquire.as_mut().poll(cx));
                    let Some(waiting) = waiting.take() else {
                        return Poll::Ready(Err(
                            "concurrency limit future polled after completion".into(),
                        ));
                    };
                    let (mut service, request, _slot) = *waiting;
                    let future = service.call(request);
                    state.set(Stage::Running {
                        future,
                        permit: Some(permit),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::ServiceExt;

    fn slow() -> impl Service<u32, Response = u32, Error = BoxError, Future = impl Send> + Clone {
        tower::service_fn(|n: u32| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok::<_, BoxError>(n)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn queues_up_to_the_bound_then_refuses() {
        let layer = ConcurrencyLimitLayer::new(ConcurrencyLimitConfig {
            max_concurrent: 2,
            max_queue: 1,
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        let svc = layer.layer(slow());
        let calls: Vec<_> = (0..4).map(|n| svc.clone().oneshot(n)).collect();
        let started = tokio::time::Instant::now();
        let results = futures_util::future::join_all(calls).await;
        // Two run, one waits its turn, the fourth is refused at once.
        let ok: Vec<_> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(ok, vec![0, 1, 2]);
        assert!(
            results[3]
                .as_ref()
                .err()
                .is_some_and(|e| e.is::<Overloaded>())
        );
        assert_eq!(started.elapsed(), Duration::from_millis(20));
        assert_eq!(layer.available(), 2);
        assert_eq!(layer.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_request_frees_its_slot() {
        let layer = ConcurrencyLimitLayer::new(ConcurrencyLimitConfig {
            max_concurrent: 1,
            max_queue: 0,
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        let mut svc = layer.layer(slow());
        let first = svc.call(1);
        assert_eq!(layer.available(), 0);
        drop(first);
        assert_eq!(svc.oneshot(2).await.ok(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn every_queued_request_gets_a_slot_and_the_bound_holds() {
        let layer = ConcurrencyLimitLayer::new(ConcurrencyLimitConfig {
            max_concurrent: 3,
            max_queue: 100,
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        let inflight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (i, p) = (inflight.clone(), peak.clone());
        let svc = layer.layer(tower::service_fn(move |n: u32| {
            let (i, p) = (i.clone(), p.clone());
            async move {
                let now = i.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(u64::from(n % 7) + 1)).await;
                i.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, BoxError>(n)
            }
        }));
        let calls: Vec<_> = (0..60).map(|n| svc.clone().oneshot(n)).collect();
        let results = futures_util::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!((layer.available(), layer.queued()), (3, 0));
    }

    #[test]
    fn rejects_zero_slots() {
        let err = ConcurrencyLimitLayer::new(ConcurrencyLimitConfig {
            max_concurrent: 0,
            max_queue: 0,
        })
        .err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("concurrency_limit.max_concurrent: must be at least 1")
        );
    }
}
