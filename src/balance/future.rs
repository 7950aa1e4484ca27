use super::body::BalanceBody;
use super::error::NoEndpoint;
use super::layer::ServedBy;
use super::load::InFlight;
use crate::error::BoxError;
use http::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// Response future of [`Balance`](super::Balance): the inner
    /// service's, or a [`NoEndpoint`](super::NoEndpoint) failure.
    ///
    /// ```
    /// # fn f<S>(mut balanced: sinew::balance::Balance<S>)
    /// # where S: tower::Service<http::Request<()>, Response = http::Response<http_body_util::Empty<bytes::Bytes>>>,
    /// #       S::Error: Into<sinew::error::BoxError>,
    /// # {
    /// use tower::Service;
    /// let future: sinew::balance::ResponseFuture<S::Future> = balanced.call(http::Request::new(()));
    /// # }
    /// ```
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Sent {
            #[pin]
            future: F,
            // Taken when the response head arrives.
            sent: Option<Sent>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

/// What a request sent to an endpoint carries until its response head.
struct Sent {
    in_flight: InFlight,
    endpoint: SocketAddr,
    served_by: bool,
}

impl<F> ResponseFuture<F> {
    pub(super) fn sent(
        future: F,
        in_flight: InFlight,
        endpoint: SocketAddr,
        served_by: bool,
    ) -> Self {
        Self {
            state: State::Sent {
                future,
                sent: Some(Sent {
                    in_flight,
                    endpoint,
                    served_by,
                }),
            },
        }
    }

    pub(super) fn no_endpoint() -> Self {
        Self::failed(NoEndpoint::new().into())
    }

    pub(super) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: http_body::Body,
{
    type Output = Result<Response<BalanceBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sent { future, sent } => {
                let result = ready!(future.poll(cx));
                let Some(sent) = sent.take() else {
                    return Poll::Ready(Err(
                        "balance response future polled after it completed".into()
                    ));
                };
                // An error drops the guard: no latency sample, since a
                // fast failure says nothing of the endpoint's speed.
                let response = result.map_err(Into::into)?;
                sent.in_flight.observe();
                let endpoint = sent.endpoint;
                let mut response =
                    response.map(|body| BalanceBody::new(body, sent.in_flight, endpoint));
                if sent.served_by {
                    response.extensions_mut().insert(ServedBy(endpoint));
                }
                Poll::Ready(Ok(response))
            }
            StateProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "balance response future polled after it completed".into()))),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
