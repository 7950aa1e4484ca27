//! The mesh's own hyper-util clients.

use super::connector::MeshConnector;
use crate::error::BoxError;
use futures_util::TryFutureExt;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use std::task::{Context, Poll};

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
}

impl<B> Clone for HyperClients<B> {
    fn clone(&self) -> Self {
        Self {
            http1: self.http1.clone(),
            http2: self.http2.clone(),
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
    type Future = futures_util::future::ErrInto<ResponseFuture, BoxError>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let client = match request.extensions().get::<WantsHttp2>() {
            Some(_) => &self.http2,
            None => &self.http1,
        };
        client.request(request).err_into()
    }
}
