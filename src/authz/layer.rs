//! Authorization as a tower layer.

use super::Authorizer;
#[cfg(doc)]
use super::Denied;
use super::request::view;
use crate::config::AuthorizationPolicy;
use crate::error::{BoxError, ConfigError};
use futures_util::TryFutureExt;
use futures_util::future::{self, Either, MapErr, Ready};
use http::Request;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Enforces a service's authorization policies in front of any tower
/// service of `http::Request`s: a refused request fails with [`Denied`]
/// and never reaches the inner service. The server stack of
/// [`Mesh::server`](crate::mesh::Mesh::server) has it built in, from the
/// service's inbound block; this is the same, usable alone (put
/// [`ErrorResponseLayer`](crate::respond::ErrorResponseLayer) on top to
/// answer `Denied` with 403 or gRPC `PERMISSION_DENIED`).
///
/// The caller's SPIFFE ID is read from the request's
/// [`PeerIdentity`](crate::mesh::PeerIdentity), its address from what the
/// mesh's server or tonic put in the extensions; a request without them
/// is unauthenticated, from no known address.
///
/// ```
/// use sinew::authz::{AuthorizeLayer, Denied};
/// use sinew::config::MeshConfig;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let config = MeshConfig::from_yaml(r#"
/// services:
///   reviews:
///     inbound:
///       authorization:
///         - name: reads
///           action: allow
///           rules: [{ methods: [GET] }]
/// "#).unwrap();
/// let policies = &config.services["reviews"].inbound.as_ref().unwrap().authorization;
/// let svc = ServiceBuilder::new()
///     .layer(AuthorizeLayer::new("reviews", policies).unwrap())
///     .service(service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     }));
/// assert!(svc.clone().oneshot(http::Request::get("/").body(()).unwrap()).await.is_ok());
/// let err = svc.oneshot(http::Request::post("/").body(()).unwrap()).await.unwrap_err();
/// assert!(err.is::<Denied>());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AuthorizeLayer {
    authorizer: Option<Arc<Authorizer>>,
}

impl AuthorizeLayer {
    /// Checks and compiles `policies` (a service's `inbound.authorization`)
    /// for `service`, the name its logs and metrics give. An invalid
    /// policy is refused, naming the field under `authorization`. No
    /// policies: every request passes.
    pub fn new(service: &str, policies: &[AuthorizationPolicy]) -> Result<Self, ConfigError> {
        let compiled = crate::config::compile_policies("authorization", policies)?;
        Ok(Self::compiled(service, Arc::new(compiled)))
    }

    pub(crate) fn compiled(service: &str, policies: Arc<super::CompiledPolicies>) -> Self {
        Self {
            authorizer: (!policies.groups.is_empty())
                .then(|| Arc::new(Authorizer::new(service, policies))),
        }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize::new(inner, self.authorizer.clone())
    }
}

/// The service made by [`AuthorizeLayer`].
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    inner: S,
    authorizer: Option<Arc<Authorizer>>,
}

impl<S> Authorize<S> {
    pub(crate) fn new(inner: S, authorizer: Option<Arc<Authorizer>>) -> Self {
        Self { inner, authorizer }
    }

    crate::inner_accessors!();
}

/// Response future of [`Authorize`].
pub type ResponseFuture<F, T, E> = Either<Ready<Result<T, BoxError>>, MapErr<F, fn(E) -> BoxError>>;

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Some(authorizer) = &self.authorizer
            && let Err(denied) = authorizer.check(&view(&request))
        {
            return Either::Left(future::ready(Err(denied.into())));
        }
        Either::Right(self.inner.call(request).map_err(Into::into as fn(_) -> _))
    }
}
