//! The mesh's own hyper-util clients.

use super::connector::MeshConnector;
use super::refusals::{Mark, Refusals};
use crate::error::BoxError;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Marks a request for a cluster that speaks HTTP/2 (set by the balance
/// step, read by [`HyperClients`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct WantsHttp2;

/// The client under [`HttpClient`](super::HttpClient): two hyper-util
/// clients on one [`MeshConnector`] (so they share its connect backoff),
/// one for clusters that speak HTTP/1.1 and one HTTP/2-only, picked per
/// request by the cluster's protocol. A cluster whose protocol changes
/// thus switches at once, where one client's pooled connections would
/// keep the protocol they were opened with until they close.
pub struct HyperClients<B> {
    http1: Client<MeshConnector, B>,
    http2: Client<MeshConnector, B>,
    refusals: Refusals,
}

impl<B> Clone for HyperClients<B> {
    fn clone(&self) -> Self {
        Self {
            http1: self.http1.clone(),
            http2: self.http2.clone(),
            refusals: self.refusals.clone(),
        }
    }
}

impl<B> std::fmt::Debug for HyperClients<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperClients").finish_non_exhaustive()
    }
}

impl<B> HyperClients<B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(super) fn new(connector: MeshConnector) -> Self {
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector.clone());
        Self {
            refusals: connector.refusals(),
            http1: Client::builder(TokioExecutor::new()).build(connector),
            http2,
        }
    }
}

impl<B> tower::Service<Request<B>> for HyperClients<B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = HyperResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = match request.extensions().get::<WantsHttp2>() {
            Some(_) => &self.http2,
            None => &self.http1,
        };
        let endpoint = request.uri().authority().cloned();
        HyperResponseFuture {
            began: self.refusals.mark(),
            response: client.request(request),
            refusals: self.refusals.clone(),
            endpoint,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response, or the error told for what it is when the server
    /// refused the mesh's certificate (see [`Refusals`]).
    pub struct HyperResponseFuture {
        #[pin]
        response: ResponseFuture,
        refusals: Refusals,
        endpoint: Option<http::uri::Authority>,
        began: Mark,
    }
}

impl Future for HyperResponseFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(ready!(this.response.poll(cx)).map_err(|e| {
            this.refusals
                .explain(e, this.endpoint.as_ref(), *this.began)
        }))
    }
}
