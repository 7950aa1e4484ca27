use super::body::ResponseBody;
use crate::config::{FaultAbort, FaultConfig};
use crate::grpc::{Code, is_grpc};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A route's fault injection, with its count of faults in progress (for
/// `max_active`), shared by every request through the route (and by its
/// clones, which updates keeping the fault make).
#[derive(Clone, Debug)]
pub(super) struct Faults {
    config: FaultConfig,
    active: Arc<AtomicU32>,
}

/// The faults drawn for one request. It counts as active until dropped.
#[derive(Debug)]
pub(super) struct Drawn {
    pub(super) delay: Option<Duration>,
    abort: Option<FaultAbort>,
    _active: Active,
}

#[derive(Debug)]
struct Active(Arc<AtomicU32>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn rolls(percent: f64) -> bool {
    percent >= 100.0 || fastrand::f64() * 100.0 < percent
}

impl Faults {
    pub(super) fn new(config: FaultConfig) -> Self {
        Self {
            config,
            active: Arc::default(),
        }
    }

    pub(super) fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Draws the faults for one request, or none.
    pub(super) fn draw(&self) -> Option<Drawn> {
        let delay = self
            .config
            .delay
            .filter(|d| rolls(d.percent))
            .map(|d| d.fixed);
        let abort = self
            .config
            .abort
            .as_ref()
            .filter(|a| rolls(a.percent))
            .cloned();
        if delay.is_none() && abort.is_none() {
            return None;
        }
        let limit = self.config.max_active.unwrap_or(u32::MAX);
        let taken = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            });
        taken.ok()?;
        Some(Drawn {
            delay,
            abort,
            _active: Active(self.active.clone()),
        })
    }
}

impl Drawn {
    /// The answer of an aborted request, or `None` when it goes on.
    pub(super) fn abort<B>(&self, request: &HeaderMap) -> Option<Response<ResponseBody<B>>> {
        let abort = self.abort.as_ref()?;
        let grpc_code = abort.grpc_status.as_deref().and_then(Code::from_name);
        let mut response = Response::new(ResponseBody::empty());
        match (grpc_code, abort.http_status) {
            (Some(code), _) => grpc_answer(&mut response, code),
            (None, Some(status)) if is_grpc(request) => {
                grpc_answer(&mut response, grpc_code_for(status))
            }
            (None, Some(status)) => {
                *response.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            }
            // Validated: one of the two is set.
            (None, None) => return None,
        }
        Some(response)
    }
}

/// A trailers-only gRPC answer.
fn grpc_answer<B>(response: &mut Response<ResponseBody<B>>, code: Code) {
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        crate::grpc::GRPC_STATUS,
        HeaderValue::from(u16::from(code.value())),
    );
    headers.insert(
        crate::grpc::GRPC_MESSAGE,
        HeaderValue::from_static("fault%20injected"),
    );
}

/// gRPC's mapping of an HTTP status to a gRPC code, for a gRPC request
/// aborted with an HTTP status.
fn grpc_code_for(status: u16) -> Code {
    match status {
        400 => Code::INTERNAL,
        401 => Code::UNAUTHENTICATED,
        403 => Code::PERMISSION_DENIED,
        404 => Code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => Code::UNAVAILABLE,
        _ => Code::UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FaultDelay;

    #[test]
    fn max_active_bounds_faults_in_progress() {
        let faults = Faults::new(FaultConfig {
            delay: Some(FaultDelay {
                fixed: Duration::from_millis(5),
                percent: 100.0,
            }),
            abort: None,
            max_active: Some(2),
        });
        let first = faults.draw();
        let second = faults.draw();
        assert!(first.is_some() && second.is_some());
        assert!(faults.draw().is_none(), "a third fault at once");
        drop(first);
        assert!(faults.draw().is_some(), "a place freed");
    }

    #[test]
    fn aborts_answer_http_or_grpc() {
        let faults = |http_status, grpc_status: Option<&str>| {
            Faults::new(FaultConfig {
                delay: None,
                abort: Some(FaultAbort {
                    http_status,
                    grpc_status: grpc_status.map(str::to_owned),
                    percent: 100.0,
                }),
                max_active: None,
            })
        };
        let http = HeaderMap::new();
        let mut grpc = HeaderMap::new();
        grpc.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        let answer =
            |f: &Faults, h: &HeaderMap| f.draw().and_then(|d| d.abort::<hyper::body::Incoming>(h));

        let f = faults(Some(503), None);
        assert_eq!(
            answer(&f, &http).map(|r| r.status()),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
        let code = answer(&f, &grpc).and_then(|r| Code::from_headers(r.headers()));
        assert_eq!(code, Some(Code::UNAVAILABLE));

        let f = faults(None, Some("permission-denied"));
        let code = answer(&f, &grpc).and_then(|r| Code::from_headers(r.headers()));
        assert_eq!(code, Some(Code::PERMISSION_DENIED));

        let none = faults(Some(503), None);
        let never = Faults::new(FaultConfig {
            abort: Some(FaultAbort {
                percent: 0.0,
                ..none.config.abort.clone().unwrap_or_else(|| unreachable!())
            }),
            ..FaultConfig::default()
        });
        assert!((0..1000).all(|_| never.draw().is_none()));
    }
}

/// The client stack's fault step: a request the route's faults abort is
/// answered here; one they delay waits before going on. The fault counts
/// as active until its request is answered.
#[derive(Clone, Debug)]
pub(super) struct InjectFaults<S> {
    faults: Option<Faults>,
    inner: S,
}

impl<S> InjectFaults<S> {
    pub(super) fn new(faults: Option<Faults>, inner: S) -> Self {
        Self { faults, inner }
    }
}

type Boxed<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for InjectFaults<S>
where
    S: tower::Service<http::Request<B>, Response = Response<ResponseBody<RB>>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    S::Error: Into<crate::error::BoxError>,
    RB: Send + 'static,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = crate::error::BoxError;
    type Future = futures_util::future::Either<
        futures_util::future::ErrInto<S::Future, crate::error::BoxError>,
        Boxed<Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        use futures_util::future::Either;
        let Some(drawn) = self.faults.as_ref().and_then(Faults::draw) else {
            return Either::Left(self.inner.call(request).err_into());
        };
        if let Some(answer) = drawn.abort(request.headers()) {
            return Either::Right(Box::pin(async move {
                drop(drawn);
                Ok(answer)
            }));
        }
        // Sent after the delay, as a slow network would send it.
        let inner = self.inner.clone();
        Either::Right(Box::pin(async move {
            if let Some(delay) = drawn.delay {
                tokio::time::sleep(delay).await;
            }
            let result = tower::ServiceExt::oneshot(inner, request)
                .await
                .map_err(Into::into);
            drop(drawn);
            result
        }))
    }
}
