use super::Elapsed;
use crate::deadline::{Deadline, DeadlineExceeded, Scoped};
use crate::error::BoxError;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

pin_project! {
    /// Response future of [`Timeout`](super::Timeout).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Scoped<F>,
        // Armed only when the inner future is not ready at once, so that a
        // request answered on its first poll never touches the timer.
        #[pin]
        sleep: Option<Sleep>,
        deadline: Deadline,
        inherited: bool,
        timeout: Duration,
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(super) fn new(inner: F, deadline: Deadline, inherited: bool, timeout: Duration) -> Self {
        Self {
            inner: deadline.scope(inner),
            sleep: None,
            deadline,
            inherited,
            timeout,
        }
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
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if this.sleep.is_none() {
            this.sleep
                .set(Some(tokio::time::sleep_until(this.deadline.instant())));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        Poll::Ready(Err(if *this.inherited {
            DeadlineExceeded::new().into()
        } else {
            Elapsed::new(*this.timeout).into()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{TimeoutConfig, TimeoutLayer};
    use super::*;
    use http::Request;
    use tokio::time::Instant;
    use tower::{Layer, ServiceExt};

    fn slow(
        delay: Duration,
    ) -> impl tower::Service<
        Request<()>,
        Response = Option<Duration>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(move |_req: Request<()>| async move {
            let remaining = Deadline::current().map(Deadline::remaining);
            tokio::time::sleep(delay).await;
            Ok(remaining)
        })
    }

    fn layer(ms: u64) -> TimeoutLayer {
        TimeoutLayer::new(TimeoutConfig::after(Duration::from_millis(ms)))
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[tokio::test(start_paused = true)]
    async fn fast_requests_pass_and_see_their_deadline() {
        let seen = layer(100)
            .layer(slow(Duration::from_millis(10)))
            .oneshot(Request::new(()))
            .await
            .ok()
            .flatten();
        assert_eq!(seen, Some(Duration::from_millis(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_time_out() {
        let started = Instant::now();
        let err = layer(100)
            .layer(slow(Duration::from_secs(5)))
            .oneshot(Request::new(()))
            .await
            .err();
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        let elapsed = err.as_ref().and_then(|e| e.downcast_ref::<Elapsed>());
        assert_eq!(
            elapsed.map(Elapsed::timeout),
            Some(Duration::from_millis(100))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_inherited_deadline_wins() {
        let outer = Deadline::after(Duration::from_millis(40));
        let svc = layer(100).layer(slow(Duration::from_secs(5)));
        let started = Instant::now();
        let err = outer.scope(svc.oneshot(Request::new(()))).await.err();
        assert_eq!(started.elapsed(), Duration::from_millis(40));
        assert!(err.is_some_and(|e| e.is::<DeadlineExceeded>()));

        // A per-attempt timeout below never extends the overall deadline.
        let per_attempt = layer(100).layer(slow(Duration::ZERO));
        let seen = Deadline::after(Duration::from_millis(30))
            .scope(per_attempt.oneshot(Request::new(())))
            .await
            .ok()
            .flatten();
        assert_eq!(seen, Some(Duration::from_millis(30)));
    }

    #[test]
    fn rejects_a_zero_timeout() {
        let err = TimeoutLayer::new(TimeoutConfig::after(Duration::ZERO)).err();
        assert_eq!(
            err.map(|e| e.to_string()).as_deref(),
            Some("timeout.timeout: must be greater than zero")
        );
    }
}
