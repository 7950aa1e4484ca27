use super::Overloaded;
use crate::error::{BoxError, ConfigError, check};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

/// Settings of [`ConcurrencyLimitLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
        if self.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(ConfigError::new(
                "concurrency_limit.max_concurrent",
                format!("must be at most {}", Semaphore::MAX_PERMITS),
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

#[derive(Debug)]
struct Shared {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queue: usize,
}

impl ConcurrencyLimitLayer {
    /// Creates the layer, after checking `config`.
    pub fn new(config: ConcurrencyLimitConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                slots: Arc::new(Semaphore::new(config.max_concurrent)),
                queued: AtomicUsize::new(0),
                max_queue: config.max_queue,
            }),
        })
    }

    /// Free slots right now.
    pub fn available(&self) -> usize {
        self.shared.slots.available_permits()
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

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

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
        if let Ok(permit) = self.shared.slots.clone().try_acquire_owned() {
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
                acquire: Box::pin(self.shared.slots.clone().acquire_owned()),
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
        Running { #[pin] future: S::Future, permit: Option<OwnedSemaphorePermit> },
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
                    let permit = ready!(acquire.as_mut().poll(cx))
                        .map_err(|_closed| BoxError::from(Overloaded::new("concurrency")))?;
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
