use super::{ClusterOverloaded, Mesh, ResponseBody, RouteError};
use crate::error::BoxError;
use futures_util::TryFutureExt;
use futures_util::future::MapErr;
use http::{Request, Response};
use std::task::{Context, Poll};

/// The mesh client over one HTTP/2-only hyper-util client.
type Inner = super::MeshClient<
    hyper_util::client::legacy::Client<
        super::MeshConnector,
        crate::retry::ReplayBody<tonic::body::Body>,
    >,
>;

/// A channel for tonic's generated clients. Made by
/// [`Mesh::grpc_channel`].
///
/// It is the mesh's [`HttpClient`](super::HttpClient) with tonic's body type, speaking
/// HTTP/2 to every endpoint, except that the mesh's refusals become the
/// gRPC status tonic clients report to the application: `UNAVAILABLE` for
/// a request the mesh cannot place (unknown service, no route, no
/// endpoint, a cluster at its limits, an open breaker) and
/// `DEADLINE_EXCEEDED` for a spent budget, each with the reason.
#[derive(Clone, Debug)]
pub struct GrpcChannel {
    inner: Inner,
}

impl Mesh {
    /// A channel to the mesh service `service` for tonic clients
    /// (`GreeterClient::with_origin(mesh.grpc_channel("greeter"), origin)`).
    /// gRPC is always HTTP/2: the channel speaks HTTP/2 to every
    /// endpoint whatever its cluster's `protocol` says.
    ///
    /// ```
    /// # async fn f() -> Result<(), sinew::error::ConfigError> {
    /// let mesh = sinew::mesh::Mesh::builder().build().await?;
    /// let channel = mesh.grpc_channel("greeter");
    /// // let client = GreeterClient::with_origin(channel, "http://greeter".parse()?);
    /// # let _ = channel;
    /// # Ok(()) }
    /// ```
    pub fn grpc_channel(&self, service: &str) -> GrpcChannel {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build(self.connector());
        GrpcChannel {
            inner: tower::Layer::layer(&self.client_layer(service), client),
        }
    }
}

/// A refusal of the mesh's, as the gRPC status a tonic client reports:
/// what could not be placed (unknown service, no route, no endpoint, a
/// cluster at its limits, an open breaker, a cluster that requires mTLS
/// the mesh cannot give) is `UNAVAILABLE`, a spent
/// budget `DEADLINE_EXCEEDED`, each with the reason.
fn as_status(error: BoxError) -> BoxError {
    let unplaced = error.is::<RouteError>()
        || error.is::<ClusterOverloaded>()
        || error.is::<crate::breaker::BreakerOpen>()
        || error.is::<super::MtlsUnavailable>();
    let late =
        error.is::<crate::deadline::DeadlineExceeded>() || error.is::<crate::timeout::Elapsed>();
    if unplaced {
        Box::new(tonic::Status::unavailable(error.to_string()))
    } else if late {
        Box::new(tonic::Status::deadline_exceeded(error.to_string()))
    } else {
        error
    }
}

impl tower::Service<Request<tonic::body::Body>> for GrpcChannel {
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = MapErr<
        <Inner as tower::Service<Request<tonic::body::Body>>>::Future,
        fn(BoxError) -> BoxError,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        self.inner
            .call(request)
            .map_err(as_status as fn(BoxError) -> BoxError)
    }
}
