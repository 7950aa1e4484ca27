use super::Mesh;
use super::body::ResponseBody;
use super::connect::BackoffConnector;
use super::outlier_report::OutlierReport;
use super::route::RouteError;
use super::runtime::{ClusterRuntime, HashKey};
use crate::balance::hash_key;
use crate::config::Protocol;
use crate::deadline::Deadline;
use crate::error::BoxError;
use crate::retry::{Attempt, ReplayBody};
use crate::timeout::Elapsed;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, ServiceExt};

/// A tower service that sends HTTP requests to a mesh service: it routes
/// each request, picks a cluster by weight, and for each attempt an
/// endpoint by the cluster's policy, sends it over a pooled connection
/// (HTTP/1.1) or a multiplexed one (HTTP/2), and applies the route's
/// timeout and retry (or hedging) policy. Made by [`Mesh::http_client`].
///
/// A request that cannot be routed fails with [`RouteError`] (answered
/// with 503 by [`ErrorResponseLayer`](crate::respond::ErrorResponseLayer)).
pub struct HttpClient<B> {
    mesh: Mesh,
    service: Arc<str>,
    clients: Clients<B>,
}

type Connector = BackoffConnector<HttpConnector>;

struct Clients<B> {
    http1: Client<Connector, ReplayBody<B>>,
    http2: Client<Connector, ReplayBody<B>>,
}

impl<B> Clone for Clients<B> {
    fn clone(&self) -> Self {
        Self {
            http1: self.http1.clone(),
            http2: self.http2.clone(),
        }
    }
}

impl<B> Clone for HttpClient<B> {
    fn clone(&self) -> Self {
        Self {
            mesh: self.mesh.clone(),
            service: self.service.clone(),
            clients: self.clients.clone(),
        }
    }
}

impl<B> std::fmt::Debug for HttpClient<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("service", &self.service)
            .finish()
    }
}

impl Mesh {
    /// A client for the mesh service `service`, for request bodies of
    /// type `B`.
    pub fn http_client<B>(&self, service: &str) -> HttpClient<B>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.client_for(service, false)
    }

    /// A client whose requests go over HTTP/2 whatever the cluster says
    /// when `http2_only` (gRPC is always HTTP/2, and control planes do not
    /// mark gRPC clusters as such).
    pub(super) fn client_for<B>(&self, service: &str, http2_only: bool) -> HttpClient<B>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        #[cfg(feature = "xds")]
        if let Some(discovery) = &self.shared.discovery {
            discovery.watch(service);
        }
        HttpClient {
            mesh: self.clone(),
            service: Arc::from(service),
            clients: {
                // One connector, so both pools share the backoff state.
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                let connector = BackoffConnector::new(http);
                let http2 = Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build(connector.clone());
                Clients {
                    http1: match http2_only {
                        true => http2.clone(),
                        false => Client::builder(TokioExecutor::new()).build(connector),
                    },
                    http2,
                }
            },
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a client and each of its attempts answer.
type Sent = BoxFuture<Result<Response<ResponseBody>, BoxError>>;

impl<B> tower::Service<Request<B>> for HttpClient<B>
where
    B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Sent;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
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
                if let Some(discovery) = &shared.discovery
                    && let Err(reason) = discovery.settled(&this.service, known).await
                {
                    return Err(RouteError::Undiscovered {
                        service: this.service.to_string(),
                        reason,
                    }
                    .into());
                }
                this.dispatch(request).await
            });
        }
        self.dispatch(request)
    }
}

impl<B> HttpClient<B>
where
    B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    fn dispatch(&mut self, mut request: Request<B>) -> Sent {
        // A guard, not a clone: the routing is only read here.
        let routing = self.mesh.shared.routing.load();
        let decision = match self.mesh.decide(&routing, &self.service, &request) {
            Ok(decision) => decision,
            Err(error) => return Box::pin(std::future::ready(Err(error.into()))),
        };
        let Some(cluster) = routing.cluster(decision.cluster()).cloned() else {
            let error = RouteError::NoEndpoint(decision.cluster().to_owned());
            return Box::pin(std::future::ready(Err(error.into())));
        };
        if let Some(name) = decision.route().hash_header()
            && let Some(value) = request.headers().get(name)
        {
            let key = HashKey(hash_key(value.as_bytes()));
            request.extensions_mut().insert(key);
        }
        let route = routing.route(decision.indices());
        let route_deadline = decision.timeout().map(Deadline::after);
        let attempts = Attempts {
            cluster,
            clients: self.clients.clone(),
            // The deadlines the mesh itself sets, by which outlier
            // detection judges an endpoint that did not answer in time (a
            // caller's own deadline says nothing about the endpoint).
            own: OwnDeadlines {
                route: route_deadline,
                per_try: route
                    .and_then(|r| r.retry.as_ref())
                    .and_then(|r| r.config().per_try_timeout),
            },
        };
        let drawn = route.and_then(|r| r.faults.as_ref()).and_then(|f| f.draw());
        let abort = drawn.as_ref().and_then(|d| d.abort(request.headers()));
        let mut sent: Sent = match (abort, route.and_then(|r| r.retry.as_ref())) {
            (Some(answer), _) => Box::pin(std::future::ready(Ok(answer))),
            (None, Some(retry)) => Box::pin(retry.layer(attempts).oneshot(request)),
            // Without a retry policy nothing is kept for replay.
            (None, None) => {
                Box::pin(attempts.oneshot(request.map(|body| ReplayBody::new(body, 0))))
            }
        };
        if let Some(drawn) = drawn {
            sent = Box::pin(async move {
                if let Some(delay) = drawn.delay {
                    tokio::time::sleep(delay).await;
                }
                // The fault counts as active until its request is answered.
                let result = sent.await;
                drop(drawn);
                result
            });
        }
        match (decision.timeout(), route_deadline) {
            (Some(limit), Some(deadline)) => Box::pin(async move {
                match tokio::time::timeout_at(deadline.instant(), deadline.scope(sent)).await {
                    Ok(result) => result,
                    Err(_) => Err(Elapsed::new(limit).into()),
                }
            }),
            _ => sent,
        }
    }
}

/// The endpoint that served a response: a response extension set by the
/// mesh's clients.
///
/// ```no_run
/// # async fn f(response: http::Response<sinew::mesh::ResponseBody>) {
/// if let Some(sinew::mesh::ServedBy(endpoint)) = response.extensions().get() {
///     println!("served by {endpoint}");
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServedBy(pub std::net::SocketAddr);

/// Sends one attempt to an endpoint of the cluster, picked anew for each
/// attempt, so that a retry can go elsewhere.
struct Attempts<B> {
    cluster: Arc<ClusterRuntime>,
    clients: Clients<B>,
    own: OwnDeadlines,
}

impl<B> Clone for Attempts<B> {
    fn clone(&self) -> Self {
        Self {
            cluster: self.cluster.clone(),
            clients: self.clients.clone(),
            own: self.own,
        }
    }
}

impl<B> tower::Service<Request<ReplayBody<B>>> for Attempts<B>
where
    B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Sent;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ReplayBody<B>>) -> Self::Future {
        let retry = request.extensions().get::<Attempt>().is_some();
        let cluster = self.cluster.clone();
        let clients = self.clients.clone();
        // From the attempt's start, as its per-try timer runs.
        let deadline = self.own.for_attempt();
        Box::pin(async move {
            // Admitted first, so that a request that waited in line goes
            // to the endpoint that is best when it leaves the line.
            let permit = cluster.admit(retry).await?;
            let Some(endpoint) = cluster.pick(&request) else {
                return Err(RouteError::NoEndpoint(cluster.name.clone()).into());
            };
            aim(request.uri_mut(), endpoint.address)?;
            let client = match cluster.protocol {
                Protocol::Http1 => &clients.http1,
                Protocol::Http2 => &clients.http2,
            };
            let in_flight = endpoint.load.start();
            // Polled inside the route's and the attempt's deadline scopes:
            // the earlier of the two, by which a hung endpoint is judged.
            let mut report =
                OutlierReport::new(cluster.clone(), endpoint.outlier.clone(), deadline);
            let response = match client.request(request).await {
                Ok(response) => response,
                Err(error) => {
                    report.failed();
                    return Err(error.into());
                }
            };
            let report = report.head(response.status(), response.headers());
            // Latency is time to the response head; the request stays in
            // flight (and in the cluster's count) until its body ends.
            in_flight.observe();
            let mut response =
                response.map(|body| ResponseBody::new(body, permit, in_flight, report));
            response.extensions_mut().insert(ServedBy(endpoint.address));
            Ok(response)
        })
    }
}

/// The deadlines the mesh sets on a request: its route's timeout and its
/// retry policy's per-try timeout.
#[derive(Clone, Copy, Debug)]
struct OwnDeadlines {
    route: Option<Deadline>,
    per_try: Option<std::time::Duration>,
}

impl OwnDeadlines {
    /// The earlier of the two for an attempt starting now.
    fn for_attempt(self) -> Option<Deadline> {
        let per_try = self.per_try.map(Deadline::after);
        crate::deadline::earliest(self.route, per_try)
    }
}

/// Points the request at the endpoint, keeping its path and query.
fn aim(uri: &mut Uri, address: std::net::SocketAddr) -> Result<(), BoxError> {
    let authority = Authority::try_from(address.to_string())?;
    let mut parts = std::mem::take(uri).into_parts();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *uri = Uri::from_parts(parts)?;
    Ok(())
}
