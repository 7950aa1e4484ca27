//! Turning Sinew's refusals into responses, for servers.
//!
//! A client wants a refusal as an error it can match; a server must answer
//! its caller. [`ErrorResponseLayer`] sits on top of a server's stack and
//! answers each refusal the way the caller's protocol expects:
//!
//! | error | HTTP | gRPC |
//! |---|---|---|
//! | [`Overloaded`](crate::limit::Overloaded), tower's load-shed `Overloaded`, [`BreakerOpen`](crate::breaker::BreakerOpen), [`RouteError`](crate::mesh::RouteError) | 503 | `UNAVAILABLE` |
//! | [`RateLimited`](crate::limit::RateLimited) | 429 with `retry-after` | `RESOURCE_EXHAUSTED` |
//! | [`DeadlineExceeded`], [`Elapsed`](crate::timeout::Elapsed) | 504 | `DEADLINE_EXCEEDED` |
//! | [`Denied`](crate::authz::Denied) | 403 | `PERMISSION_DENIED` |
//!
//! A refusal's answer says only what kind it is (`permission denied`,
//! `overloaded`...): nothing about the policy or limit that refused.
//!
//! Other errors pass through unchanged.
//!
//! ```
//! use sinew::limit::{RateLimitConfig, RateLimitLayer};
//! use sinew::respond::ErrorResponseLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ErrorResponseLayer::new())
//!     .layer(RateLimitLayer::new(RateLimitConfig { per_second: 1.0, burst: 1 }).unwrap())
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     }));
//! assert_eq!(svc.clone().oneshot(http::Request::new(())).await.unwrap().status(), 200);
//! assert_eq!(svc.oneshot(http::Request::new(())).await.unwrap().status(), 429);
//! # }
//! ```

use crate::deadline::DeadlineExceeded;
use crate::error::BoxError;
use crate::grpc::{Code, is_grpc, reject};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// Answers Sinew's refusals with responses. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorResponseLayer(());

impl ErrorResponseLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self(())
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse { inner }
    }
}

/// The service made by [`ErrorResponseLayer`].
#[derive(Clone, Debug)]
pub struct ErrorResponse<S> {
    inner: S,
}

impl<S> ErrorResponse<S> {
    crate::inner_accessors!();
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ErrorResponse<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        ResponseFuture {
            grpc: is_grpc(request.headers()),
            future: self.inner.call(request),
        }
    }
}

pin_project! {
    /// Response future of [`ErrorResponse`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        grpc: bool,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Default,
{
    type Output = Result<Response<B>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error = match ready!(this.future.poll(cx)) {
            Ok(response) => return Poll::Ready(Ok(response)),
            Err(error) => error.into(),
        };
        Poll::Ready(match answer(error.as_ref(), *this.grpc) {
            Some(response) => Ok(response),
            None => Err(error),
        })
    }
}

enum Refusal {
    #[cfg(any(feature = "limit", feature = "breaker", feature = "mesh"))]
    Unavailable,
    #[cfg(feature = "limit")]
    RateLimited(std::time::Duration),
    Deadline,
    #[cfg(feature = "authz")]
    Denied,
}

fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    #[cfg(feature = "authz")]
    if error.is::<crate::authz::Denied>() {
        return Some(Refusal::Denied);
    }
    #[cfg(feature = "limit")]
    {
        if error.is::<crate::limit::Overloaded>()
            || error.is::<tower::load_shed::error::Overloaded>()
        {
            return Some(Refusal::Unavailable);
        }
        if let Some(limited) = error.downcast_ref::<crate::limit::RateLimited>() {
            return Some(Refusal::RateLimited(limited.retry_after()));
        }
    }
    #[cfg(feature = "breaker")]
    if error.is::<crate::breaker::BreakerOpen>() {
        return Some(Refusal::Unavailable);
    }
    #[cfg(feature = "mesh")]
    if error.is::<crate::mesh::RouteError>() || error.is::<crate::mesh::ClusterOverloaded>() {
        return Some(Refusal::Unavailable);
    }
    #[cfg(feature = "timeout")]
    if error.is::<crate::timeout::Elapsed>() {
        return Some(Refusal::Deadline);
    }
    error.is::<DeadlineExceeded>().then_some(Refusal::Deadline)
}

fn answer<B: Default>(
    error: &(dyn std::error::Error + 'static),
    grpc: bool,
) -> Option<Response<B>> {
    Some(match refusal(error)? {
        #[cfg(any(feature = "limit", feature = "breaker", feature = "mesh"))]
        Refusal::Unavailable => reject(
            grpc,
            StatusCode::SERVICE_UNAVAILABLE,
            Code::UNAVAILABLE,
            "overloaded",
        ),
        #[cfg(feature = "limit")]
        Refusal::RateLimited(wait) => {
            let mut response = reject(
                grpc,
                StatusCode::TOO_MANY_REQUESTS,
                Code::RESOURCE_EXHAUSTED,
                "rate limited",
            );
            if !grpc {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
            }
            response
        }
        Refusal::Deadline => reject(
            grpc,
            StatusCode::GATEWAY_TIMEOUT,
            Code::DEADLINE_EXCEEDED,
            "deadline exceeded",
        ),
        #[cfg(feature = "authz")]
        Refusal::Denied => reject(
            grpc,
            StatusCode::FORBIDDEN,
            Code::PERMISSION_DENIED,
            "permission denied",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    #[cfg(feature = "limit")]
    fn maps_refusals_by_protocol() {
        let r: Option<Response<()>> = answer(&DeadlineExceeded::new(), true);
        assert_eq!(
            r.as_ref().and_then(|r| Code::from_headers(r.headers())),
            Some(Code::DEADLINE_EXCEEDED)
        );
        let r: Option<Response<()>> = answer(&crate::limit::Overloaded::new("adaptive"), false);
        assert_eq!(r.map(|r| r.status()), Some(StatusCode::SERVICE_UNAVAILABLE));
        let r: Option<Response<()>> = answer(
            &crate::limit::RateLimited::new(std::time::Duration::from_millis(1500)),
            false,
        );
        assert_eq!(
            r.as_ref().and_then(|r| r.headers().get("retry-after")),
            Some(&HeaderValue::from_static("2"))
        );
        #[cfg(feature = "authz")]
        {
            let r: Option<Response<()>> = answer(&crate::authz::Denied::new(), false);
            assert_eq!(r.map(|r| r.status()), Some(StatusCode::FORBIDDEN));
            let r: Option<Response<()>> = answer(&crate::authz::Denied::new(), true);
            assert_eq!(
                r.as_ref().and_then(|r| Code::from_headers(r.headers())),
                Some(Code::PERMISSION_DENIED)
            );
            assert_eq!(r.map(|r| r.status()), Some(StatusCode::OK));
        }
        let other = std::io::Error::other("boom");
        assert!(answer::<()>(&other, false).is_none());
    }
}
