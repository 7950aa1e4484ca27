use super::body::ReplayBody;
use super::per_try::PerTry;
use super::run::{Replay, retry_after};
use crate::classify::Classify;
use crate::error::BoxError;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pin_project! {
    /// Response future of [`Retry`](super::Retry).
    ///
    /// The first attempt runs inline, without allocating; only a request
    /// that needs a second attempt (or hedging) moves to a boxed future.
    pub struct ResponseFuture<S, C, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        stage: Stage<S, C, B>,
    }
}

pin_project! {
    #[project = StageProjection]
    enum Stage<S, C, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        First { #[pin] future: PerTry<S::Future>, replay: Option<Replay<S, C, B>> },
        Again { future: BoxFuture<Result<S::Response, BoxError>> },
    }
}

impl<S, C, B> ResponseFuture<S, C, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    #[inline]
    pub(super) fn first(future: PerTry<S::Future>, replay: Replay<S, C, B>) -> Self {
        Self {
            stage: Stage::First {
                future,
                replay: Some(replay),
            },
        }
    }

    #[inline]
    pub(super) fn boxed(future: BoxFuture<Result<S::Response, BoxError>>) -> Self {
        Self {
            stage: Stage::Again { future },
        }
    }
}

impl<S, C, B, ResB> Future for ResponseFuture<S, C, B>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    C: Classify,
    B: Body + Send + 'static,
    ResB: Send + 'static,
{
    type Output = Result<Response<ResB>, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut stage = self.as_mut().project().stage;
            match stage.as_mut().project() {
                StageProjection::First { future, replay } => {
                    let result = ready!(future.poll(cx));
                    let Some(replay) = replay.take() else {
                        return Poll::Ready(result);
                    };
                    if replay.is_final(&result) {
                        return Poll::Ready(result);
                    }
                    stage.set(Stage::Again {
                        future: Box::pin(retry_after(replay, result)),
                    });
                }
                StageProjection::Again { future } => return future.as_mut().poll(cx),
            }
        }
    }
}
