//! The client stack: the public layers a routed request goes through,
//! assembled in [`stack`], outermost first. docs/architecture.md draws it,
//! and ADR 0009 says why the order is this one.

use super::body::{ResponseBody, Tracked};
use super::cluster_balance::{ClusterBalance, OwnDeadlines};
use super::fault::InjectFaults;
use super::mtls::Gate;
use super::runtime::{ClusterRuntime, RouteRuntime};
use crate::breaker::{Breaker, BreakerBody};
use crate::classify::SharedClassifier;
use crate::deadline::PropagateDeadline;
use crate::error::BoxError;
use crate::retry::{ReplayBody, Retry};
use crate::timeout::Timeout;
use futures_util::TryFutureExt;
use futures_util::future::{Either, MapOk};
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::Either as EitherService;
use tower::{Layer, Service};

/// The stack for one request of a route, to one cluster, over `inner`
/// (the application's client or the mesh's own). The route was decided
/// above it, in [`MeshClient`](super::MeshClient).
pub(super) fn stack<S>(
    timeout: Option<crate::timeout::TimeoutLayer>,
    route: Option<&RouteRuntime>,
    cluster: &Arc<ClusterRuntime>,
    own: OwnDeadlines,
    mtls: Option<Gate>,
    inner: S,
) -> Stack<S> {
    // Innermost first.
    let wire = PropagateDeadline::new(inner); // the remaining budget, per attempt
    let balanced = ClusterBalance::new(cluster.clone(), own, mtls, wire); // mTLS gate, thresholds, pick, outlier report
    let guarded = BreakerStep::new(cluster.breaker(), balanced); // the cluster's breaker, if any
    let retried = RetryStep::new(route.and_then(|r| r.retry.as_ref()), guarded); // route policy, shared budget
    let faulted = InjectFaults::new(route.and_then(|r| r.faults.clone()), retried); // the route's faults
    match timeout {
        // The route's timeout, merged with the caller's deadline.
        Some(timeout) => EitherService::Left(timeout.layer(faulted)),
        None => EitherService::Right(faulted),
    }
}

/// The client stack over `S`, as [`stack`] assembles it.
pub(super) type Stack<S> = EitherService<Timeout<Attempts<S>>, Attempts<S>>;

/// Everything below the route's timeout.
type Attempts<S> = InjectFaults<RetryStep<BreakerStep<ClusterBalance<PropagateDeadline<S>>>>>;

/// The retry step: the route's retry (or hedging) layer, or a request
/// whose body nothing keeps for replay.
#[derive(Clone)]
pub(super) enum RetryStep<S> {
    Retry(Retry<S, SharedClassifier>),
    Once(S),
}

impl<S> RetryStep<S> {
    fn new(layer: Option<&crate::retry::RetryLayer<SharedClassifier>>, inner: S) -> Self {
        match layer {
            Some(layer) => Self::Retry(layer.layer(inner)),
            None => Self::Once(inner),
        }
    }
}

impl<S, B, RB> Service<Request<B>> for RetryStep<S>
where
    Retry<S, SharedClassifier>: Service<Request<B>, Response = Response<RB>, Error = BoxError>,
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = Either<
        <Retry<S, SharedClassifier> as Service<Request<B>>>::Future,
        futures_util::future::ErrInto<S::Future, BoxError>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::Retry(retry) => retry.poll_ready(cx),
            Self::Once(inner) => inner.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self {
            Self::Retry(retry) => Either::Left(retry.call(request)),
            // Without a retry policy nothing is kept for replay.
            Self::Once(inner) => Either::Right(
                inner
                    .call(request.map(|body| ReplayBody::new(body, 0)))
                    .err_into(),
            ),
        }
    }
}

/// The breaker step: the cluster's breaker, when it has one. Either way
/// the response body becomes the mesh's [`ResponseBody`].
#[derive(Clone)]
pub(super) enum BreakerStep<S> {
    On(Breaker<S, SharedClassifier>),
    Off(S),
}

impl<S> BreakerStep<S> {
    fn new(layer: Option<&crate::breaker::BreakerLayer<SharedClassifier>>, inner: S) -> Self {
        match layer {
            Some(layer) => Self::On(layer.layer(inner)),
            None => Self::Off(inner),
        }
    }
}

type Broken<RB> = Response<BreakerBody<Tracked<RB>, SharedClassifier>>;

impl<S, B, RB> Service<Request<B>> for BreakerStep<S>
where
    S: Service<Request<B>, Response = Response<Tracked<RB>>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = Either<
        MapOk<
            <Breaker<S, SharedClassifier> as Service<Request<B>>>::Future,
            fn(Broken<RB>) -> Response<ResponseBody<RB>>,
        >,
        MapOk<
            futures_util::future::ErrInto<S::Future, BoxError>,
            fn(Response<Tracked<RB>>) -> Response<ResponseBody<RB>>,
        >,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Self::On(breaker) => breaker.poll_ready(cx),
            Self::Off(inner) => inner.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self {
            Self::On(breaker) => Either::Left(
                breaker
                    .call(request)
                    .map_ok(|r: Broken<RB>| r.map(ResponseBody::broken)),
            ),
            Self::Off(inner) => Either::Right(
                inner
                    .call(request)
                    .err_into()
                    .map_ok(|r: Response<Tracked<RB>>| r.map(ResponseBody::tracked)),
            ),
        }
    }
}
