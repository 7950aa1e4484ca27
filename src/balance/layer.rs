use super::body::BalanceBody;
use super::future::ResponseFuture;
use super::set::{EndpointSet, Version};
use crate::error::BoxError;
use http::uri::{Authority, InvalidUriParts, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Balances requests over an [`EndpointSet`]: for each request, picks an
/// endpoint by the set's policy and points the request's URI at it, then
/// sends it through the inner service. See the [module docs](super).
///
/// ```
/// use sinew::balance::{BalanceLayer, EndpointSet};
/// use sinew::config::LbPolicy;
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), sinew::error::ConfigError> {
/// let set = EndpointSet::new(LbPolicy::LeastRequest)?;
/// set.insert("127.0.0.1:8080".parse().unwrap(), 1);
/// let client = hyper_util::client::legacy::Client::builder(
///     hyper_util::rt::TokioExecutor::new(),
/// )
/// .build_http::<http_body_util::Empty<bytes::Bytes>>();
/// let balanced = ServiceBuilder::new()
///     .layer(BalanceLayer::new(set))
///     .service(client);
/// # let _ = balanced;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BalanceLayer {
    set: EndpointSet,
    served_by: bool,
}

impl BalanceLayer {
    /// A layer balancing over `set`.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let layer = sinew::balance::BalanceLayer::new(set);
    /// # let _ = layer;
    /// ```
    pub fn new(set: EndpointSet) -> Self {
        Self {
            set,
            served_by: false,
        }
    }

    /// Whether responses carry a [`ServedBy`] extension naming the
    /// endpoint (off by default: inserting an extension allocates, about
    /// as much as the rest of the layer costs; [`BalanceBody::endpoint`]
    /// tells the same for free).
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let layer = sinew::balance::BalanceLayer::new(set).served_by(true);
    /// # let _ = layer;
    /// ```
    pub fn served_by(mut self, insert: bool) -> Self {
        self.served_by = insert;
        self
    }

    /// The set balanced over: change it, and every service the layer made
    /// sees the change.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let layer = sinew::balance::BalanceLayer::new(set);
    /// layer.set().insert("127.0.0.1:8080".parse().unwrap(), 1);
    /// ```
    pub fn set(&self) -> &EndpointSet {
        &self.set
    }
}

impl<S> Layer<S> for BalanceLayer {
    type Service = Balance<S>;

    fn layer(&self, inner: S) -> Balance<S> {
        Balance {
            inner,
            version: self.set.current(),
            set: self.set.clone(),
            served_by: self.served_by,
        }
    }
}

/// The service [`BalanceLayer`] makes.
///
/// Each request goes to the endpoint the set's policy picks (its key, for
/// ring hash and Maglev, from the policy's header or a
/// [`HashKey`](super::HashKey) extension), with its URI's authority made
/// the endpoint's address: its scheme stays (`http` when it has none), its
/// path and query stay (`/` when it has none). The request counts as in
/// flight on the endpoint's [`EndpointLoad`](super::EndpointLoad) until
/// its response body ends (or fails, or is dropped); under P2C Peak-EWMA
/// its time to the response head feeds the endpoint's latency estimate
/// (the other policies do not read it, and skip the clock).
///
/// With no endpoint in the set, a request fails with
/// [`NoEndpoint`](super::NoEndpoint) without reaching the inner service.
/// Readiness is the inner service's.
///
/// ```
/// use sinew::balance::{Balance, EndpointSet};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let set = EndpointSet::default();
/// set.insert("10.0.0.1:8080".parse().unwrap(), 1);
/// // An inner service that answers with the URI it was given.
/// let inner = tower::service_fn(|request: http::Request<()>| async move {
///     let body = http_body_util::Full::new(bytes::Bytes::from(request.uri().to_string()));
///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
/// });
/// let response = Balance::new(inner, set)
///     .oneshot(http::Request::get("/items?page=2").body(()).unwrap())
///     .await
///     .unwrap();
/// assert_eq!(response.body().endpoint(), "10.0.0.1:8080".parse().unwrap());
/// # }
/// ```
#[derive(Clone)]
pub struct Balance<S> {
    inner: S,
    set: EndpointSet,
    /// The set's version this service picked from last, kept between
    /// requests (a newer one replaces it at the next request).
    version: Arc<Version>,
    served_by: bool,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Balance<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balance")
            .field("inner", &self.inner)
            .field("set", &self.set)
            .field("served_by", &self.served_by)
            .finish()
    }
}

impl<S> Balance<S> {
    /// `inner`, balanced over `set`.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let inner = tower::service_fn(|_: http::Request<()>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// });
    /// let balanced = sinew::balance::Balance::new(inner, set);
    /// # let _ = balanced;
    /// ```
    pub fn new(inner: S, set: EndpointSet) -> Self {
        BalanceLayer::new(set).layer(inner)
    }

    /// The set balanced over.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// # let inner = tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// # });
    /// let balanced = sinew::balance::Balance::new(inner, set);
    /// assert!(balanced.set().is_empty());
    /// ```
    pub fn set(&self) -> &EndpointSet {
        &self.set
    }

    crate::inner_accessors!();
}

impl<S, B, RB> Service<Request<B>> for Balance<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: http_body::Body,
{
    type Response = Response<BalanceBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.set.refresh(&mut self.version);
        let mut picked = self.set.pick(&self.version, &request);
        if picked.is_some() && self.set.is_stale(&self.version) {
            drop(picked);
            self.set.refresh(&mut self.version);
            picked = self.set.pick(&self.version, &request);
        }
        let Some(picked) = picked else {
            return ResponseFuture::no_endpoint();
        };
        if let Err(error) = aim(request.uri_mut(), picked.authority) {
            return ResponseFuture::failed(error.into());
        }
        ResponseFuture::sent(
            self.inner.call(request),
            picked.in_flight,
            picked.address,
            self.served_by,
        )
    }
}

/// The endpoint that served a response: a response extension, set by
/// [`Balance`] when asked ([`BalanceLayer::served_by`]).
///
/// ```
/// # fn f(response: http::Response<()>) {
/// if let Some(sinew::balance::ServedBy(endpoint)) = response.extensions().get() {
///     println!("served by {endpoint}");
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServedBy(pub std::net::SocketAddr);

/// Points `uri` at `authority`, keeping its scheme (`http` when it has
/// none), path and query (`/` when it has none). Moves the parts: no
/// allocation.
#[inline]
pub(crate) fn aim(uri: &mut Uri, authority: Authority) -> Result<(), InvalidUriParts> {
    let mut parts = std::mem::take(uri).into_parts();
    if parts.scheme.is_none() {
        parts.scheme = Some(Scheme::HTTP);
    }
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    *uri = Uri::from_parts(parts)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aim_keeps_path_query_and_scheme() {
        let authority = Authority::from_static("10.0.0.1:8080");
        for (given, expected) in [
            ("/a/b?c=d", "http://10.0.0.1:8080/a/b?c=d"),
            ("http://reviews/x?y", "http://10.0.0.1:8080/x?y"),
            ("https://reviews", "https://10.0.0.1:8080/"),
            ("reviews:80", "http://10.0.0.1:8080/"),
        ] {
            let mut uri: Uri = given.parse().unwrap_or_else(|e| unreachable!("{e}"));
            assert!(aim(&mut uri, authority.clone()).is_ok(), "{given}");
            assert_eq!(uri, expected, "{given}");
        }
    }
}
