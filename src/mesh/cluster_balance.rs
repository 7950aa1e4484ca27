//! The client stack's balance step over one cluster: admission under the
//! cluster's thresholds, an endpoint picked anew for each attempt (so a
//! retry can go elsewhere), the request pointed at it, its load counted,
//! and one outlier report per attempt.
//!
//! It is the mesh's form of [`Picker`](crate::balance::Picker) use: the
//! same pickers and loads, with the cluster's thresholds and outlier
//! detection around them.

use super::body::Tracked;
use super::hyper_clients::WantsHttp2;
use super::mtls::Gate;
use super::outlier_report::OutlierReport;
use super::route::RouteError;
use super::runtime::{ClusterRuntime, Picked};
use crate::balance::ServedBy;
use crate::config::Protocol;
use crate::deadline::{Deadline, DeadlineExceeded};
use crate::error::BoxError;
use crate::retry::Attempt;
use crate::telemetry::report::{self, AttemptResult, ErrorClass, Refusal};
use futures_util::FutureExt;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::ServiceExt;

/// Sends each attempt to an endpoint of `cluster` through `inner`.
pub(super) struct ClusterBalance<S> {
    cluster: Arc<ClusterRuntime>,
    own: OwnDeadlines,
    /// Set when the cluster requires mTLS.
    mtls: Option<Gate>,
    inner: S,
}

impl<S: Clone> Clone for ClusterBalance<S> {
    fn clone(&self) -> Self {
        Self {
            cluster: self.cluster.clone(),
            own: self.own,
            mtls: self.mtls.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S> ClusterBalance<S> {
    pub(super) fn new(
        cluster: Arc<ClusterRuntime>,
        own: OwnDeadlines,
        mtls: Option<Gate>,
        inner: S,
    ) -> Self {
        Self {
            cluster,
            own,
            mtls,
            inner,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<Request<B>> for ClusterBalance<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    RB: Body + Send + 'static,
{
    type Response = Response<Tracked<RB>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's, awaited per attempt once the
        // attempt has its place under the cluster's thresholds.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Attempts after the first are marked by the retry layer.
        let number = request.extensions().get::<Attempt>().map_or(1, |a| a.0);
        let retry = number > 1;
        // The attempt's span, a child of the request's, and the trace
        // context it carries (a fresh span id per attempt).
        let span =
            crate::telemetry::attempt::start(&mut request, number, cluster_name(&self.cluster));
        let cluster = self.cluster.clone();
        let inner = self.inner.clone();
        // From the attempt's start, as its per-try timer runs.
        let deadline = self.own.for_attempt();
        // Checked per attempt: a certificate may arrive between two.
        if let Some(gate) = &self.mtls
            && let Err(refused) = gate.check(&cluster.name)
        {
            report::refused(number, Refusal::MtlsUnavailable);
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let scheme = match self.mtls {
            // A pool key of its own: a plaintext connection pooled before
            // the cluster required mTLS is never reused for it.
            Some(_) => Scheme::HTTPS,
            None => Scheme::HTTP,
        };
        let attempt_span = span.clone();
        let attempt = async move {
            // Admitted first, so that a request that waited in line goes
            // to the endpoint that is best when it leaves the line.
            let _ends = report::AttemptGuard::new(number);
            let mut admit = std::pin::pin!(cluster.admit(retry));
            // Polled once first, to tell the report whether it waited.
            let (admitted, queued) = match admit.as_mut().now_or_never() {
                Some(admitted) => (admitted, false),
                None => (admit.await, true),
            };
            let permit = admitted.inspect_err(|overloaded| {
                let (name, limit) = (overloaded.threshold, overloaded.limit);
                report::refused(number, Refusal::Threshold { name, limit });
            })?;
            let Some(endpoint) = cluster.pick(&request) else {
                report::refused(number, Refusal::NoEndpoint);
                return Err(RouteError::NoEndpoint(cluster.name.clone()).into());
            };
            crate::telemetry::attempt::endpoint(&span, endpoint.address);
            report::endpoint(number, endpoint.address, queued);
            aim(request.uri_mut(), &endpoint, scheme)?;
            if cluster.protocol == Protocol::Http2 {
                request.extensions_mut().insert(WantsHttp2);
            }
            let in_flight = endpoint.load.start();
            // Polled inside the route's and the attempt's deadline scopes:
            // the earlier of the two, by which a hung endpoint is judged.
            let mut report =
                OutlierReport::new(cluster.clone(), endpoint.outlier.clone(), deadline);
            // The application's client may hold Sinew layers of its own:
            // what they decide is not in the mesh's report.
            let response = match report::Outside::new(inner.oneshot(request)).await {
                Ok(response) => response,
                Err(error) => {
                    let error = error.into();
                    crate::telemetry::span::error(&span, &error);
                    report::ended(number, AttemptResult::Failed(ErrorClass::of(&*error)));
                    if error.is::<DeadlineExceeded>() {
                        report.withdraw();
                    } else {
                        report.failed();
                    }
                    return Err(error);
                }
            };
            crate::telemetry::attempt::response(&span, response.status(), response.headers());
            report::ended(number, AttemptResult::Status(response.status()));
            let report = report.head(response.status(), response.headers());
            // Latency is time to the response head; the request stays in
            // flight (and in the cluster's count) until its body ends.
            in_flight.observe();
            let mut response = response.map(|body| Tracked::new(body, permit, in_flight, report));
            response.extensions_mut().insert(ServedBy(endpoint.address));
            Ok(response)
        };
        Box::pin(tracing::Instrument::instrument(attempt, attempt_span))
    }
}

fn cluster_name(cluster: &ClusterRuntime) -> &str {
    &cluster.name
}

/// The deadlines the mesh sets on a request: its route's timeout and its
/// retry policy's per-try timeout. Outlier detection judges an endpoint
/// that did not answer in time by these alone: a caller's own deadline
/// says nothing about the endpoint.
#[derive(Clone, Copy, Debug)]
pub(super) struct OwnDeadlines {
    pub(super) route: Option<Deadline>,
    pub(super) per_try: Option<std::time::Duration>,
}

impl OwnDeadlines {
    /// The earlier of the two for an attempt starting now.
    fn for_attempt(self) -> Option<Deadline> {
        let per_try = self.per_try.map(Deadline::after);
        crate::deadline::earliest(self.route, per_try)
    }
}

/// Points the request at the endpoint, keeping its path and query, with
/// `scheme`: `https` for a cluster that requires mTLS (the connector
/// decides TLS by the endpoint's clusters, the scheme keeps the pools
/// apart), `http` otherwise.
fn aim(uri: &mut Uri, endpoint: &Picked, scheme: Scheme) -> Result<(), BoxError> {
    let authority = match &endpoint.authority {
        Some(authority) => authority.clone(),
        None => Authority::try_from(endpoint.address.to_string())?,
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *uri = Uri::from_parts(parts)?;
    Ok(())
}
