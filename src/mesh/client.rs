use super::Mesh;
use super::route::RouteError;
use crate::config::Protocol;
use crate::error::BoxError;
use crate::timeout::Elapsed;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A tower service that sends HTTP requests to a mesh service: it routes
/// each request, picks a cluster by weight and an endpoint by the
/// cluster's policy, and sends it over a pooled connection (HTTP/1.1) or a
/// multiplexed one (HTTP/2), within the route's timeout. Made by
/// [`Mesh::http_client`].
///
/// A request that cannot be routed fails with [`RouteError`] (answered
/// with 503 by [`ErrorResponseLayer`](crate::respond::ErrorResponseLayer));
/// a cluster with no endpoint in service fails with
/// [`RouteError::NoEndpoint`].
pub struct HttpClient<B> {
    mesh: Mesh,
    service: Arc<str>,
    http1: Client<HttpConnector, B>,
    http2: Client<HttpConnector, B>,
}

impl<B> Clone for HttpClient<B> {
    fn clone(&self) -> Self {
        Self {
            mesh: self.mesh.clone(),
            service: self.service.clone(),
            http1: self.http1.clone(),
            http2: self.http2.clone(),
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
        HttpClient {
            mesh: self.clone(),
            service: Arc::from(service),
            http1: Client::builder(TokioExecutor::new()).build_http(),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

impl<B> tower::Service<Request<B>> for HttpClient<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let routing = self.mesh.shared.routing.load_full();
        let decision = match self.mesh.decide(&routing, &self.service, &request) {
            Ok(decision) => decision,
            Err(error) => return Box::pin(std::future::ready(Err(error.into()))),
        };
        let picked = routing
            .cluster(decision.cluster())
            .and_then(|cluster| Some((cluster.pick(&request)?.clone(), cluster.protocol)));
        let Some((endpoint, protocol)) = picked else {
            let error = RouteError::NoEndpoint(decision.cluster().to_owned());
            return Box::pin(std::future::ready(Err(error.into())));
        };
        if let Err(error) = aim(request.uri_mut(), endpoint.address) {
            return Box::pin(std::future::ready(Err(error)));
        }
        let client = match protocol {
            Protocol::Http1 => &self.http1,
            Protocol::Http2 => &self.http2,
        };
        let sent = client.request(request);
        let timeout = decision.timeout();
        let in_flight = endpoint.load.start();
        Box::pin(async move {
            let result = match timeout {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(result) => result,
                    Err(_) => return Err(Elapsed::new(limit).into()),
                },
                None => sent.await,
            };
            if result.is_ok() {
                in_flight.finish();
            }
            result.map_err(Into::into)
        })
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
