//! The client half of the mesh: [`ClientLayer`] wraps any HTTP client into
//! a client of one mesh service; [`HttpClient`] is that layer over the
//! mesh's own hyper-util client.

use super::Mesh;
use super::body::ResponseBody;
use super::cluster_balance::OwnDeadlines;
use super::hyper_clients::HyperClients;
use super::mtls::Gate;
use super::route::RouteError;
use super::stack::stack;
use crate::balance::{HashKey, hash_key};
use crate::deadline::Deadline;
use crate::error::BoxError;
use crate::retry::ReplayBody;
use crate::telemetry::layer::{Recording, Settings};
use crate::telemetry::report::{self, DecisionReport, ReportSink};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, ServiceExt};

/// A layer that makes an HTTP client a client of one mesh service. Made
/// by [`Mesh::client_layer`].
///
/// The client it wraps takes requests whose body is a
/// [`ReplayBody`] (which keeps what a retry must resend) and sends each to
/// the URI it is given: the mesh points it at the endpoint it picked. A
/// hyper-util client built on [`Mesh::connector`] fits:
///
/// ```no_run
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use sinew::retry::ReplayBody;
/// use tower::{Layer, ServiceExt};
///
/// # async fn f(mesh: sinew::mesh::Mesh) -> Result<(), sinew::error::BoxError> {
/// let own = Client::builder(TokioExecutor::new())
///     .pool_max_idle_per_host(8)
///     .build::<_, ReplayBody<Full<bytes::Bytes>>>(mesh.connector());
/// let reviews = mesh.client_layer("reviews").layer(own);
/// let request = http::Request::get("/reviews/1").body(Full::default())?;
/// let response = reviews.oneshot(request).await?;
/// # let _ = response;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ClientLayer {
    mesh: Mesh,
    service: Arc<str>,
    telemetry: Arc<Settings>,
}

impl<S> Layer<S> for ClientLayer {
    type Service = MeshClient<S>;

    fn layer(&self, inner: S) -> MeshClient<S> {
        MeshClient {
            mesh: self.mesh.clone(),
            service: self.service.clone(),
            telemetry: self.telemetry.clone(),
            inner,
        }
    }
}

/// A client of one mesh service over the client `S`: each request is
/// traced and measured (as by a
/// [`TelemetryLayer`](crate::telemetry::TelemetryLayer), outermost), routed, and then goes through the route's timeout (merged with the
/// caller's deadline), its faults, its retry or hedging policy, the
/// cluster's breaker, the cluster's balance step (thresholds, an endpoint
/// per attempt, outlier detection) and, with the remaining budget in its
/// headers, to `S`. docs/architecture.md draws the stack.
///
/// A request that cannot be routed fails with [`RouteError`] (answered
/// with 503 by [`ErrorResponseLayer`](crate::respond::ErrorResponseLayer)).
///
/// Each response carries the request's
/// [`DecisionReport`] in its extensions (and, in a
/// [`ReportSink`] the request carries, failed or not); where the service's
/// configuration sets `debug_header`, a request with `sinew-debug: 1`
/// gets its short form in the `sinew-decision` response header.
pub struct MeshClient<S> {
    mesh: Mesh,
    service: Arc<str>,
    /// Its telemetry (outermost): the span, trace context and metrics of
    /// each request.
    telemetry: Arc<Settings>,
    inner: S,
}

/// The mesh's own client of a mesh service, for request bodies of type
/// `B`: [`ClientLayer`] over hyper-util clients built on
/// [`Mesh::connector`] ([`HyperClients`]). Made by [`Mesh::http_client`].
pub type HttpClient<B> = MeshClient<HyperClients<ReplayBody<B>>>;

impl<S: Clone> Clone for MeshClient<S> {
    fn clone(&self) -> Self {
        Self {
            mesh: self.mesh.clone(),
            service: self.service.clone(),
            telemetry: self.telemetry.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S> std::fmt::Debug for MeshClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshClient")
            .field("service", &self.service)
            .finish()
    }
}

impl<S> MeshClient<S> {
    /// The mesh service this client calls.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The client it wraps.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl Mesh {
    /// A layer that makes an application's HTTP client (built on
    /// [`Mesh::connector`], say) a client of the mesh service `service`.
    pub fn client_layer(&self, service: &str) -> ClientLayer {
        #[cfg(feature = "xds")]
        if let Some(discovery) = &self.shared.discovery {
            discovery.watch(service);
        }
        ClientLayer {
            mesh: self.clone(),
            service: Arc::from(service),
            telemetry: self.shared.telemetry.outbound(service),
        }
    }

    /// A client for the mesh service `service`, for request bodies of
    /// type `B`: HTTP/1.1 or HTTP/2 to each endpoint, as its cluster says.
    pub fn http_client<B>(&self, service: &str) -> HttpClient<B>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.client_layer(service)
            .layer(HyperClients::new(self.connector()))
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<Request<B>> for MeshClient<S>
where
    S: tower::Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Response<ResponseBody<RB>>, BoxError>>;

    /// Always ready: the wrapped client's readiness is awaited per
    /// attempt, once the attempt has its endpoint.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Outermost: the span covers the wait for configuration, routing
        // and every attempt; routing errors are counted too.
        let recording = Recording::start(&self.telemetry, &mut request);
        #[cfg(feature = "xds")]
        if let Some(discovery) = &self.mesh.shared.discovery
            && !discovery.is_warm()
        {
            // Configuration still on its way from the control plane: wait
            // for this service's (up to the initial fetch timeout).
            let mut this = self.clone();
            return Box::pin(async move {
                let shared = this.mesh.shared.clone();
                let known = || shared.snapshot().service(&this.service).is_some();
                let settled = match &shared.discovery {
                    Some(discovery) => discovery.settled(&this.service, known).await,
                    None => Ok(()),
                };
                let undiscovered = |reason| RouteError::Undiscovered {
                    service: this.service.to_string(),
                    reason,
                };
                this.route(request, recording, settled.map_err(undiscovered))
                    .await
            });
        }
        self.route(request, recording, Ok(()))
    }
}

impl<S> MeshClient<S> {
    /// The top of the stack: routes the request, then sends it through
    /// the route's stack.
    fn route<B, RB>(
        &mut self,
        mut request: Request<B>,
        mut recording: Recording,
        settled: Result<(), RouteError>,
    ) -> BoxFuture<Result<Response<ResponseBody<RB>>, BoxError>>
    where
        S: tower::Service<Request<ReplayBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
        RB: Body<Data = Bytes> + Send + 'static,
    {
        let refused = |recording: Recording, error: RouteError, request| {
            let error: Result<_, BoxError> = Err(error.into());
            Box::pin(recording.call(|_: Request<B>| std::future::ready(error), request))
                as BoxFuture<_>
        };
        if let Err(error) = settled {
            return refused(recording, error, request);
        }
        // A guard, not a clone: the routing is only read here.
        let routing = self.mesh.shared.routing.load();
        let decision = match self.mesh.decide(&routing, &self.service, &request) {
            Ok(decision) => decision,
            Err(error) => return refused(recording, error, request),
        };
        recording.set_route(decision.indices().1);
        recording.set_cluster(decision.cluster());
        let Some(cluster) = routing.cluster(decision.cluster()) else {
            let error = RouteError::NoEndpoint(decision.cluster().to_owned());
            return refused(recording, error, request);
        };
        if let Some(name) = decision.route().hash_header()
            && let Some(value) = request.headers().get(name)
        {
            let key = HashKey(hash_key(value.as_bytes()));
            request.extensions_mut().insert(key);
        }
        caller_deadline_from_grpc_timeout(&mut request);
        let route = routing.route(decision.indices());
        let own = OwnDeadlines {
            route: decision.timeout().map(Deadline::after),
            per_try: route
                .and_then(|r| r.retry.as_ref())
                .and_then(|r| r.config().per_try_timeout),
        };
        // The route's timeout; without one, a caller's deadline is still
        // enforced here (a layer that never times out by itself).
        let timeout = route.and_then(|r| r.timeout).or_else(|| {
            Deadline::for_request(&request).and_then(|_| {
                let forever = crate::timeout::TimeoutConfig::after(crate::bounds::MAX_DURATION);
                crate::timeout::TimeoutLayer::new(forever).ok()
            })
        });
        let mtls = cluster
            .requires_mtls()
            .then(|| Gate::of(self.mesh.identity()));
        let stack = stack(timeout, route, cluster, own, mtls, self.inner.clone());
        let (service, route_index) = decision.indices();
        // What the caller asked to see: the short form only where the
        // service's configuration allows it (it reveals the topology). The
        // ask is the mesh's and goes no further than this client.
        let asked = request
            .headers_mut()
            .remove(report::DEBUG_REQUEST_HEADER)
            .is_some_and(|v| v.as_bytes() == b"1");
        let debug = asked
            && decision
                .snapshot()
                .services_in_order()
                .get(service)
                .is_some_and(|s| s.debug_header());
        let sink = request.extensions().get::<ReportSink>().cloned();
        let report = DecisionReport::new(
            self.service.clone(),
            decision.snapshot().version(),
            route_index,
            decision.cluster_arc().clone(),
            decision.timeout(),
        );
        Box::pin(recording.call(
            |request| report::Recorded::new(stack.oneshot(request), report, sink, debug),
            request,
        ))
    }
}

/// A gRPC caller's own timeout (tonic's `Request::set_timeout` writes it
/// as `grpc-timeout`) is the caller's deadline, merged with the route's
/// like any other.
fn caller_deadline_from_grpc_timeout<B>(request: &mut Request<B>) {
    let Some(value) = request.headers().get(crate::deadline::GRPC_TIMEOUT) else {
        return;
    };
    if let Some(budget) = crate::deadline::parse_grpc_timeout(value.as_bytes()) {
        let theirs = Deadline::after(budget);
        let earliest = crate::deadline::earliest(
            request.extensions().get::<Deadline>().copied(),
            Some(theirs),
        );
        if let Some(deadline) = earliest {
            request.extensions_mut().insert(deadline);
        }
    }
}
