use super::load::InFlight;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// The body of a response through [`Balance`](super::Balance): the
    /// inner service's body, counting its request in flight to its
    /// endpoint until it ends, fails or is dropped. A streaming response
    /// thus weighs on its endpoint for as long as it streams.
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use sinew::balance::{Balance, EndpointSet};
    /// use tower::ServiceExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let set = EndpointSet::default();
    /// let address = "10.0.0.1:8080".parse().unwrap();
    /// set.insert(address, 1);
    /// let inner = tower::service_fn(|_: http::Request<()>| async {
    ///     let body = http_body_util::Full::new(bytes::Bytes::from("hello"));
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(body))
    /// });
    /// let response = Balance::new(inner, set.clone())
    ///     .oneshot(http::Request::new(()))
    ///     .await
    ///     .unwrap();
    /// let load = set.load(address).unwrap();
    /// assert_eq!(load.inflight(), 1, "until the body ends");
    /// let body = response.into_body().collect().await.unwrap();
    /// assert_eq!(body.to_bytes(), "hello");
    /// assert_eq!(load.inflight(), 0);
    /// # }
    /// ```
    pub struct BalanceBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
        endpoint: SocketAddr,
    }
}

impl<B: Body> BalanceBody<B> {
    pub(super) fn new(inner: B, in_flight: InFlight, endpoint: SocketAddr) -> Self {
        let ended = inner.is_end_stream();
        Self {
            inner,
            in_flight: (!ended).then_some(in_flight),
            endpoint,
        }
    }
}

impl<B> BalanceBody<B> {
    /// The endpoint that served the response.
    ///
    /// ```
    /// # async fn f(response: http::Response<sinew::balance::BalanceBody<hyper::body::Incoming>>) {
    /// println!("served by {}", response.body().endpoint());
    /// # }
    /// ```
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// The inner body.
    ///
    /// ```
    /// # fn f(body: &sinew::balance::BalanceBody<hyper::body::Incoming>) {
    /// let inner: &hyper::body::Incoming = body.get_ref();
    /// # }
    /// ```
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body; the request stops counting as in flight.
    ///
    /// ```
    /// # fn f(body: sinew::balance::BalanceBody<hyper::body::Incoming>) {
    /// let inner: hyper::body::Incoming = body.into_inner();
    /// # }
    /// ```
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for BalanceBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        if has_ended(&*this.inner, &polled) {
            *this.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a body's `poll_frame` gives.
pub(crate) type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

/// Whether `body` is over after a poll that gave `polled`: it ended, it
/// failed, or the frame just read was its last. Bodies that hold a request
/// in flight until the response ends (here, and the mesh's) release it then.
pub(crate) fn has_ended<B: Body>(body: &B, polled: &Polled<B>) -> bool {
    match polled {
        Poll::Ready(None | Some(Err(_))) => true,
        Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
        Poll::Pending => false,
    }
}

impl<B> std::fmt::Debug for BalanceBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalanceBody")
            .field("endpoint", &self.endpoint)
            .field("in_flight", &self.in_flight.is_some())
            .finish_non_exhaustive()
    }
}
