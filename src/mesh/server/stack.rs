//! The server's request stack: the order of its layers, in one place.

use super::live::{Limits, Live};
use crate::authz::{Authorize, Authorizer};
use crate::deadline::EnforceDeadline;
use crate::error::BoxError;
use crate::limit::{AdaptiveLimit, ConcurrencyLimit, RateLimit};
use crate::respond::{ErrorResponse, ErrorResponseLayer};
use crate::telemetry::layer::{Recording, ResponseFuture, Settings};
use futures_util::future::{self, Either as EitherFuture, Ready};
use http::{Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::{Either, MapErr};
use tower::{Layer, Service, ServiceBuilder};

/// The stack in front of the application, outermost first.
///
/// ```text
/// Telemetry          (in `Inbound::call`) trace context, span, metrics, edges: it sees refusals too
/// ErrorResponse      refusals below become 403/503/429/504 or gRPC codes
/// Authorize          the service's policies: a refused caller costs no token or slot (403 / PERMISSION_DENIED)
/// EnforceDeadline    an expired budget is refused unseen; the handler is cancelled at the deadline
/// Shed               the application is not ready (load_shed): 503
/// RateLimit          429 / RESOURCE_EXHAUSTED, before a slot is taken
/// ConcurrencyLimit   a fixed limit with a bounded queue: 503 / UNAVAILABLE
/// AdaptiveLimit      a limit learned from latency: 503 / UNAVAILABLE
/// app
/// ```
///
/// Deadlines come before limits so that a request already too late takes
/// no token and no slot, and so that time spent queued counts against the
/// caller's budget.
pub(crate) type Stack<S, E> = ErrorResponse<
    Authorize<EnforceDeadline<Shed<Optional<RateLimit<Limited<S, E>>, Limited<S, E>>>>>,
>;
type Limited<S, E> = Optional<ConcurrencyLimit<Adaptive<S, E>>, Adaptive<S, E>>;
type Adaptive<S, E> = Optional<AdaptiveLimit<App<S, E>>, App<S, E>>;
type App<S, E> = MapErr<S, fn(E) -> BoxError>;
type Optional<A, B> = Either<A, B>;

fn stack<S: Service<R>, R>(
    limits: &Limits,
    authorizer: Option<Arc<Authorizer>>,
    shed: bool,
    app: S,
) -> Stack<S, S::Error>
where
    S::Error: Into<BoxError>,
{
    ServiceBuilder::new()
        // Telemetry is outermost, in `Inbound::call` (it sees refusals too).
        .layer(ErrorResponseLayer::new())
        // An unauthorized caller costs no token or slot, and is refused
        // whatever its deadline.
        .layer_fn(move |inner| Authorize::new(inner, authorizer.clone()))
        .layer(limits.deadline)
        .layer_fn(|inner| Shed { inner, shed })
        .option_layer(limits.rate.as_ref())
        .option_layer(limits.concurrency.as_ref())
        .option_layer(limits.adaptive.as_ref())
        .map_err(boxed::<S::Error> as fn(S::Error) -> BoxError)
        .service(app)
}

fn boxed<E: Into<BoxError>>(error: E) -> BoxError {
    error.into()
}

/// The server stack of one served service as a tower [`Layer`], for any
/// server that takes layers (`tonic::transport::Server::builder().layer(..)`,
/// axum, hyper-util). Made by
/// [`ServerBuilder::layer`](super::ServerBuilder::layer); clones share the
/// limits (their requests in flight, tokens and learned limit), and follow
/// the mesh's configuration as it changes.
#[derive(Clone, Debug)]
pub struct InboundLayer {
    live: Arc<Live>,
    telemetry: Arc<Settings>,
}

impl InboundLayer {
    pub(crate) fn new(live: Arc<Live>) -> Self {
        let telemetry = live.telemetry();
        Self { live, telemetry }
    }
}

impl<S> Layer<S> for InboundLayer {
    type Service = Inbound<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Inbound {
            inner,
            live: self.live.clone(),
            telemetry: self.telemetry.clone(),
            shed: false,
        }
    }
}

/// The service made by [`InboundLayer`]: the application behind the server
/// stack. Refusals are answered as responses, so its error is the
/// application's own (boxed).
#[derive(Clone, Debug)]
pub struct Inbound<S> {
    inner: S,
    live: Arc<Live>,
    /// The span, trace context and metrics of each request, outermost.
    telemetry: Arc<Settings>,
    /// Set when `poll_ready` found the application not ready and the
    /// limits shed load: the next call is refused.
    shed: bool,
}

impl<S> Inbound<S> {
    crate::inner_accessors!();
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Inbound<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<<Stack<S, S::Error> as Service<Request<ReqB>>>::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(ready) => {
                self.shed = false;
                Poll::Ready(ready.map_err(Into::into))
            }
            Poll::Pending if self.live.limits().config.load_shed => {
                self.shed = true;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        // tonic with the server's incoming connections: the caller's
        // address and SPIFFE ID, where the application reads them.
        #[cfg(feature = "grpc")]
        super::accept::ConnectionInfo::spread(request.extensions_mut());
        let limits = self.live.limits();
        // The ready service goes into the stack; its clone stays for the
        // next request (tower's rule: a clone is not ready).
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let authorizer = self.live.authorizer(&limits);
        let mut stack = stack(&limits, authorizer, std::mem::take(&mut self.shed), ready);
        // A caller's ask for the decision report is for its own mesh
        // client: taken off here, so that a handler forwarding the
        // request's headers cannot have its client answer an outsider with
        // the topology behind it.
        request
            .headers_mut()
            .remove(crate::telemetry::report::DEBUG_REQUEST_HEADER);
        let recording = Recording::start(&self.telemetry, &mut request);
        recording.call(|request| stack.call(request), request)
    }
}

/// Refuses the request with tower's load-shed `Overloaded` when the
/// application was found not ready.
#[derive(Clone, Debug)]
pub struct Shed<S> {
    inner: S,
    shed: bool,
}

impl<S, R> Service<R> for Shed<S>
where
    S: Service<R, Error = BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = EitherFuture<Ready<Result<S::Response, BoxError>>, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.shed {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: R) -> Self::Future {
        if self.shed {
            let refused = tower::load_shed::error::Overloaded::new();
            return EitherFuture::Left(future::ready(Err(refused.into())));
        }
        EitherFuture::Right(self.inner.call(request))
    }
}
