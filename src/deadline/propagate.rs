use super::{
    Deadline, DeadlineExceeded, GRPC_TIMEOUT, SINEW_TIMEOUT_MS, encode_grpc_timeout,
    header::encode_millis,
};
use crate::error::BoxError;
use crate::grpc::is_grpc;
use futures_util::TryFutureExt;
use futures_util::future::{self, Either, MapErr, Ready};
use http::Request;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Writes the remaining budget of a request's [`Deadline`] into its
/// headers, so that the next hop can enforce it.
///
/// Place it below retries, so that each attempt carries what is left at
/// the moment it is sent. A request whose deadline has already passed is
/// not sent: it fails with [`DeadlineExceeded`].
///
/// ```
/// use std::time::Duration;
/// use sinew::deadline::{Deadline, PropagateDeadlineLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(PropagateDeadlineLayer::new())
///     .service(service_fn(|req: http::Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(req.headers().contains_key("sinew-timeout-ms"))
///     }));
/// let sent = Deadline::after(Duration::from_secs(1))
///     .scope(svc.oneshot(http::Request::new(())))
///     .await
///     .unwrap();
/// assert!(sent);
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateDeadlineLayer(());

impl PropagateDeadlineLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self(())
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline { inner }
    }
}

/// The service made by [`PropagateDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
}

impl<S> PropagateDeadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    crate::inner_accessors!();
}

type ErrInto<F, E> = MapErr<F, fn(E) -> BoxError>;

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<Ready<Result<S::Response, BoxError>>, ErrInto<S::Future, S::Error>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if let Some(deadline) = Deadline::for_request(&request) {
            let remaining = deadline.remaining();
            if remaining.is_zero() {
                return Either::Left(future::ready(Err(DeadlineExceeded::unsent().into())));
            }
            let headers = request.headers_mut();
            if is_grpc(headers) {
                headers.insert(GRPC_TIMEOUT, encode_grpc_timeout(remaining));
            } else {
                headers.insert(SINEW_TIMEOUT_MS, encode_millis(remaining));
            }
        }
        Either::Right(self.inner.call(request).map_err(Into::into as fn(_) -> _))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::ServiceExt;

    fn echo_headers() -> impl Service<
        Request<()>,
        Response = http::HeaderMap,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(|req: Request<()>| async move { Ok(req.headers().clone()) })
    }

    #[tokio::test(start_paused = true)]
    async fn writes_the_header_that_fits_the_protocol() {
        let svc = PropagateDeadline::new(echo_headers());
        let deadline = Deadline::after(Duration::from_millis(750));

        let headers = deadline
            .scope(svc.clone().oneshot(Request::new(())))
            .await
            .unwrap_or_default();
        assert_eq!(headers[SINEW_TIMEOUT_MS], "750");

        let grpc = Request::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap_or_default();
        let headers = deadline
            .scope(svc.clone().oneshot(grpc))
            .await
            .unwrap_or_default();
        assert_eq!(headers[GRPC_TIMEOUT], "750000u");
        assert!(!headers.contains_key(SINEW_TIMEOUT_MS));

        let plain = svc
            .clone()
            .oneshot(Request::new(()))
            .await
            .unwrap_or_default();
        assert!(plain.is_empty(), "no deadline, no header");
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_to_send_an_expired_request() {
        let deadline = Deadline::after(Duration::from_millis(10));
        tokio::time::advance(Duration::from_millis(11)).await;
        let err = deadline
            .scope(PropagateDeadline::new(echo_headers()).oneshot(Request::new(())))
            .await
            .err()
            .map(|e| e.is::<DeadlineExceeded>());
        assert_eq!(err, Some(true));
    }
}
