use super::{Deadline, Scoped, header::budget_from_headers};
use crate::error::ConfigError;
use crate::grpc::{Code, is_grpc, reject};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// Settings of [`EnforceDeadlineLayer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct EnforceDeadlineConfig {
    /// The longest budget accepted from a caller; longer ones are cut to
    /// it. Default: none (the caller's budget is trusted).
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub max: Option<Duration>,
    /// The budget given to requests that carry none. Default: none (such
    /// requests run without a deadline).
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub default: Option<Duration>,
}

impl EnforceDeadlineConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(max) = self.max {
            crate::error::check::duration("deadline.max", max)?;
        }
        if let Some(default) = self.default {
            crate::error::check::duration("deadline.default", default)?;
        }
        Ok(())
    }
}

/// Server side: reads the caller's budget (`grpc-timeout` or
/// `sinew-timeout-ms`), refuses work whose deadline has already passed, and
/// cancels the handler when the deadline passes while it runs.
///
/// The refusal and the cancellation answer with HTTP 504, or with gRPC
/// `DEADLINE_EXCEEDED` for gRPC requests. While the handler runs, its
/// deadline is [`Deadline::current`], so requests it sends onward through a
/// [`Timeout`](crate::timeout::Timeout) or
/// [`PropagateDeadline`](super::PropagateDeadline) carry what is left.
///
/// ```
/// use std::time::Duration;
/// use sinew::deadline::{EnforceDeadlineConfig, EnforceDeadlineLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = EnforceDeadlineLayer::new(EnforceDeadlineConfig::default()).unwrap();
/// let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
/// }));
/// let request = http::Request::builder().header("sinew-timeout-ms", "0").body(()).unwrap();
/// let response = svc.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 504);
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct EnforceDeadlineLayer {
    config: EnforceDeadlineConfig,
}

impl EnforceDeadlineLayer {
    /// Creates the layer, after checking `config`.
    pub fn new(config: EnforceDeadlineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self { config })
    }
}

impl<S> Layer<S> for EnforceDeadlineLayer {
    type Service = EnforceDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EnforceDeadline {
            inner,
            config: self.config,
        }
    }
}

/// The service made by [`EnforceDeadlineLayer`].
#[derive(Clone, Debug)]
pub struct EnforceDeadline<S> {
    inner: S,
    config: EnforceDeadlineConfig,
}

impl<S> EnforceDeadline<S> {
    crate::inner_accessors!();
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for EnforceDeadline<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let budget = budget_from_headers(request.headers()).or(self.config.default);
        let Some(mut budget) = budget else {
            return ResponseFuture::new(Stage::Unbounded {
                future: self.inner.call(request),
            });
        };
        if let Some(max) = self.config.max {
            budget = budget.min(max);
        }
        let grpc = is_grpc(request.headers());
        if budget.is_zero() {
            return ResponseFuture::new(Stage::Refused {
                response: Some(exceeded(grpc)),
            });
        }
        let at = crate::bounds::later(Instant::now(), budget);
        let deadline = Deadline::at(at);
        let scope = super::scope::enter(deadline);
        let future = self.inner.call(request);
        drop(scope);
        ResponseFuture::new(Stage::Bounded {
            future: deadline.scope(future),
            sleep: tokio::time::sleep_until(at),
            grpc,
            fired: false,
        })
    }
}

pin_project! {
    /// Response future of [`EnforceDeadline`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        stage: Stage<F, B>,
    }
}

pin_project! {
    #[project = Projection]
    enum Stage<F, B> {
        // The request carries no deadline.
        Unbounded { #[pin] future: F },
        // The handler runs with a deadline.
        Bounded {
            #[pin] future: Scoped<F>,
            #[pin] sleep: Sleep,
            grpc: bool,
            fired: bool,
        },
        // The deadline had passed on arrival.
        Refused { response: Option<Response<B>> },
    }
}

fn exceeded<B: Default>(grpc: bool) -> Response<B> {
    reject(
        grpc,
        StatusCode::GATEWAY_TIMEOUT,
        Code::DEADLINE_EXCEEDED,
        "deadline exceeded",
    )
}

impl<F, B> ResponseFuture<F, B> {
    fn new(stage: Stage<F, B>) -> Self {
        Self { stage }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().stage.project() {
            Projection::Unbounded { future } => future.poll(cx),
            Projection::Bounded {
                future,
                sleep,
                grpc,
                fired,
            } => {
                if !*fired && let Poll::Ready(result) = future.poll(cx) {
                    return Poll::Ready(result);
                }
                ready!(sleep.poll(cx));
                if std::mem::replace(fired, true) {
                    return Poll::Pending;
                }
                tracing::debug!("deadline passed while handling the request");
                Poll::Ready(Ok(exceeded(*grpc)))
            }
            Projection::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    fn layer(config: EnforceDeadlineConfig) -> EnforceDeadlineLayer {
        EnforceDeadlineLayer::new(config).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[tokio::test(start_paused = true)]
    async fn cancels_a_slow_handler_and_exposes_the_deadline() {
        let seen = Arc::new(AtomicUsize::new(0));
        let seen2 = seen.clone();
        let svc = layer(EnforceDeadlineConfig::default()).layer(tower::service_fn(
            move |_req: Request<()>| {
                let seen = seen2.clone();
                async move {
                    let remaining = Deadline::current().map(|d| d.remaining());
                    seen.store(
                        remaining.map_or(0, |d| d.as_millis() as usize),
                        Ordering::SeqCst,
                    );
                    std::future::pending::<()>().await;
                    Ok::<_, std::convert::Infallible>(Response::new(String::new()))
                }
            },
        ));
        let request = Request::builder()
            .header("content-type", "application/grpc")
            .header("grpc-timeout", "300m")
            .body(())
            .unwrap_or_default();
        let started = Instant::now();
        let response = svc.oneshot(request).await.unwrap_or_default();
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert_eq!(seen.load(Ordering::SeqCst), 300);
        assert_eq!(
            Code::from_headers(response.headers()),
            Some(Code::DEADLINE_EXCEEDED)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn caps_and_defaults_budgets() {
        let config = EnforceDeadlineConfig {
            max: Some(Duration::from_millis(100)),
            default: Some(Duration::from_millis(50)),
        };
        let slow = tower::service_fn(|_req: Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        });
        let started = Instant::now();
        let request = Request::builder()
            .header("sinew-timeout-ms", "5000")
            .body(())
            .unwrap_or_default();
        let response = layer(config)
            .layer(slow)
            .oneshot(request)
            .await
            .unwrap_or_default();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_millis(100));

        let started = Instant::now();
        let response = layer(config)
            .layer(slow)
            .oneshot(Request::new(()))
            .await
            .unwrap_or_default();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }

    #[test]
    fn rejects_zero_durations() {
        let err = EnforceDeadlineLayer::new(EnforceDeadlineConfig {
            max: Some(Duration::ZERO),
            default: None,
        })
        .err()
        .map(|e| e.field().to_owned());
        assert_eq!(err.as_deref(), Some("deadline.max"));
    }
}
