//! [`TelemetryLayer`]: trace context, a span and request metrics for every
//! request through the service it wraps, inbound or outbound.

use super::context::{self, TraceContext};
use super::edges::Direction;
use super::request_metrics::{Labels, RequestMetrics, StatusLabel};
use super::span;
use crate::classify::{Classify, SharedClassifier, StatusClassifier};
use futures_util::future::Either;
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::task::futures::TaskLocalFuture;
use tracing::Span;

/// The service name used when a side is not known: a caller without a
/// SPIFFE ID, a mesh not told its own name.
pub const UNKNOWN: &str = "unknown";

/// A tower layer that traces and measures each request through the
/// service it wraps.
///
/// - **Trace context.** Inbound, the caller's W3C `traceparent` (or B3
///   headers) is the parent of the request's span; outbound, the parent is
///   the span the calling task is in ([`context::current`]: the inbound
///   request being served, say), and the request leaves with a
///   `traceparent` naming its span. Invalid headers start a new trace.
/// - **Span.** One `tracing` span per request, at `INFO` under the target
///   [`TARGET`](super::span::TARGET), with OpenTelemetry's HTTP and RPC
///   field names (docs/telemetry.md lists them).
/// - **Metrics.** `sinew_requests_total` and
///   `sinew_request_duration_seconds`, labelled by direction, source and
///   destination service, route and status class or gRPC code (see
///   [`RequestMetrics`]).
///
/// The mesh puts it outermost in its client and server stacks; it also
/// works alone, in front of any `Service<http::Request<B>>`:
///
/// ```
/// use sinew::telemetry::TelemetryLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let app = service_fn(|request: http::Request<()>| async move {
///     // The caller's trace is the parent of the span this runs in.
///     let context = sinew::telemetry::context::current();
///     assert_eq!(
///         context.map(|c| c.trace_id.to_string()).as_deref(),
///         Some("4bf92f3577b34da6a3ce929d0e0e4736"),
///     );
///     Ok::<_, std::convert::Infallible>(http::Response::new(()))
/// });
/// let service = TelemetryLayer::inbound("reviews").layer(app);
/// let request = http::Request::get("/reviews/1")
///     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
///     .body(())
///     .unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TelemetryLayer {
    settings: Arc<Settings>,
}

/// What a [`TelemetryLayer`] knows of its side.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) direction: Direction,
    /// This process's service: the source outbound, the destination
    /// inbound.
    pub(crate) service: Arc<str>,
    /// The called service, outbound.
    pub(crate) peer: Option<Arc<str>>,
    pub(crate) metrics: Option<RequestMetrics>,
    pub(crate) classifier: SharedClassifier,
}

impl Settings {
    pub(crate) fn new(
        direction: Direction,
        service: Arc<str>,
        peer: Option<Arc<str>>,
        metrics: Option<RequestMetrics>,
    ) -> Self {
        Self {
            direction,
            service,
            peer,
            metrics,
            classifier: Arc::new(StatusClassifier::default()),
        }
    }
}

impl TelemetryLayer {
    /// For the server side of `service`: the caller's service is read from
    /// its SPIFFE ID ([`PeerIdentity`](crate::mesh::PeerIdentity) in the
    /// request's extensions), `unknown` without one.
    pub fn inbound(service: &str) -> Self {
        let settings = Settings::new(
            Direction::Inbound,
            service.into(),
            None,
            Some(RequestMetrics::new()),
        );
        Self {
            settings: Arc::new(settings),
        }
    }

    /// For calls from the service `source` to the service `destination`.
    pub fn outbound(source: &str, destination: &str) -> Self {
        let settings = Settings::new(
            Direction::Outbound,
            source.into(),
            Some(destination.into()),
            Some(RequestMetrics::new()),
        );
        Self {
            settings: Arc::new(settings),
        }
    }

    /// Records into `metrics` (to share its handles, or its
    /// [`Edges`](super::edges::Edges)) instead of metrics of its own.
    pub fn metrics(self, metrics: RequestMetrics) -> Self {
        self.with(|s| s.metrics = Some(metrics))
    }

    /// No metrics: trace context and spans only.
    pub fn without_metrics(self) -> Self {
        self.with(|s| s.metrics = None)
    }

    /// Decides with `classifier` which responses are failures (the
    /// default: [`StatusClassifier`]).
    pub fn classifier(self, classifier: impl Classify) -> Self {
        self.with(|s| s.classifier = Arc::new(classifier))
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Arc::unwrap_or_clone(self.settings);
        change(&mut settings);
        Self {
            settings: Arc::new(settings),
        }
    }
}

impl<S> tower::Layer<S> for TelemetryLayer {
    type Service = Telemetry<S>;

    fn layer(&self, inner: S) -> Telemetry<S> {
        Telemetry {
            inner,
            settings: self.settings.clone(),
        }
    }
}

/// The service made by [`TelemetryLayer`].
#[derive(Clone, Debug)]
pub struct Telemetry<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Telemetry<S> {
    crate::inner_accessors!();
}

impl<S, B, RB> tower::Service<Request<B>> for Telemetry<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Error: std::fmt::Display,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let recording = Recording::start(&self.settings, &mut request);
        let route = request.extensions().get::<RouteLabel>().copied();
        let mut recording = recording;
        if let Some(RouteLabel(route)) = route {
            recording.route = route;
        }
        recording.call(|request| self.inner.call(request), request)
    }
}

/// The route label of a request, for the metrics of a
/// [`TelemetryLayer`] used alone: a bounded name the application gives
/// (a request extension). Without one the route label is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLabel(pub &'static str);

/// One request being recorded: its span, its trace context, when it
/// started, and the labels learnt on the way.
#[derive(Debug)]
pub(crate) struct Recording {
    settings: Arc<Settings>,
    start: Instant,
    span: Span,
    /// This request's context (its span's), or the caller's passed through
    /// when its span is disabled.
    context: Option<TraceContext>,
    pub(crate) route: &'static str,
    /// The caller's identity, inbound (a reference count, not a copy).
    #[cfg(feature = "mesh")]
    peer: Option<crate::mesh::PeerIdentity>,
    /// Whether the request was counted (ended with a response or error).
    counted: bool,
}

/// A request dropped before it ended was given up by its caller (its own
/// timeout, a client gone): counted as cancelled, a failure, so that the
/// slowest requests are not left out of the success rate.
impl Drop for Recording {
    fn drop(&mut self) {
        if !self.counted {
            span::cancelled(&self.span);
            self.count(StatusLabel::Cancelled, false);
        }
    }
}

impl Recording {
    /// Starts recording `request`: its span, and its trace context
    /// (extracted inbound; injected outbound).
    pub(crate) fn start<B>(settings: &Arc<Settings>, request: &mut Request<B>) -> Self {
        let span = span::request(settings.direction);
        let parent = match settings.direction {
            Direction::Inbound => TraceContext::extract(request.headers()),
            Direction::Outbound => {
                context::current().or_else(|| TraceContext::extract(request.headers()))
            }
        };
        #[cfg(feature = "mesh")]
        let peer = match settings.direction {
            Direction::Inbound => request.extensions().get::<crate::mesh::PeerIdentity>(),
            Direction::Outbound => None,
        };
        let context = if span.is_disabled() {
            // No span of ours: the caller's context passes through.
            parent
        } else {
            let mut own = parent
                .as_ref()
                .map_or_else(TraceContext::new_root, TraceContext::child);
            // Described first: an exporter may start the span when linking.
            span::describe(&span, request);
            super::link(&span, parent.as_ref(), &mut own);
            span::ids(&span, &own, parent.as_ref());
            span.record("sinew.service", &*settings.service);
            #[cfg(feature = "mesh")]
            if let Some(peer) = peer {
                span.record("sinew.peer_identity", peer.as_str());
            }
            if let Some(destination) = &settings.peer {
                span.record("server.address", &**destination);
            }
            Some(own)
        };
        Self {
            settings: settings.clone(),
            start: Instant::now(),
            span,
            context,
            route: "",
            #[cfg(feature = "mesh")]
            peer: peer.cloned(),
            counted: false,
        }
    }

    /// Records the route, by its index in its service.
    #[cfg(feature = "mesh")]
    pub(crate) fn set_route(&mut self, index: usize) {
        self.route = super::request_metrics::route_label(index);
        if !self.span.is_disabled() {
            self.span.record("sinew.route", index);
        }
    }

    /// Records the cluster.
    #[cfg(feature = "mesh")]
    pub(crate) fn set_cluster(&self, cluster: &str) {
        if !self.span.is_disabled() {
            self.span.record("sinew.cluster", cluster);
        }
    }

    /// Calls `call` with the request inside the span and the trace
    /// context, and records the result when the future ends.
    pub(crate) fn call<B, F, RB, E>(
        self,
        call: impl FnOnce(Request<B>) -> F,
        request: Request<B>,
    ) -> ResponseFuture<F>
    where
        F: Future<Output = Result<Response<RB>, E>>,
        E: std::fmt::Display,
    {
        let _entered = self.span.enter();
        // Without a context, nothing to scope: the task's own (none, or
        // the one this request passed through) stays current.
        let inner = match &self.context {
            Some(context) => {
                let future = context::sync_scope(Some(context.clone()), || call(request));
                Either::Left(context::scope(Some(context.clone()), future))
            }
            None => Either::Right(call(request)),
        };
        drop(_entered);
        ResponseFuture {
            inner,
            recording: Some(self),
        }
    }

    /// The caller's service, inbound.
    fn source(&self) -> &str {
        #[cfg(feature = "mesh")]
        if let Some(peer) = &self.peer {
            return service_of(peer.id());
        }
        UNKNOWN
    }

    fn finish<RB, E: std::fmt::Display>(mut self, result: &Result<Response<RB>, E>) {
        let (status, success) = match result {
            Ok(response) => {
                let headers = response.headers();
                let success = self
                    .settings
                    .classifier
                    .classify_response(response.status(), headers)
                    // Known only from the trailers: counted as a success
                    // (the head is all this layer sees).
                    .is_none_or(|outcome| outcome.is_success());
                span::response(&self.span, response.status(), headers, success);
                let status = match crate::grpc::Code::from_headers(headers) {
                    Some(code) => StatusLabel::Grpc(code),
                    None if crate::grpc::is_grpc(headers) => {
                        StatusLabel::Grpc(crate::grpc::Code::OK)
                    }
                    None => StatusLabel::Class((response.status().as_u16() / 100) as u8),
                };
                (status, success)
            }
            Err(error) => {
                span::error(&self.span, error);
                (StatusLabel::Error, false)
            }
        };
        self.count(status, success);
    }

    /// Counts the request (metrics and edges) once it ended.
    fn count(&mut self, status: StatusLabel, success: bool) {
        self.counted = true;
        let latency = self.start.elapsed();
        let Some(metrics) = &self.settings.metrics else {
            return;
        };
        let (source, destination) = match self.settings.direction {
            Direction::Outbound => (
                &*self.settings.service,
                self.settings.peer.as_deref().unwrap_or(UNKNOWN),
            ),
            Direction::Inbound => (self.source(), &*self.settings.service),
        };
        let labels = Labels {
            direction: self.settings.direction,
            source,
            destination,
            route: self.route,
            status,
        };
        metrics.record(labels, success, latency);
    }
}

/// The service a SPIFFE ID names: `<sa>` in Sinew's
/// `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, else its last path segment,
/// else `unknown`.
///
/// ```
/// use sinew::telemetry::layer::service_of;
///
/// let id = "spiffe://example.org/ns/shop/sa/cart".parse().unwrap();
/// assert_eq!(service_of(&id), "cart");
/// let id = "spiffe://example.org".parse().unwrap();
/// assert_eq!(service_of(&id), "unknown");
/// ```
#[cfg(feature = "tls")]
pub fn service_of(id: &crate::tls::SpiffeId) -> &str {
    let path = id.path();
    let mut segments = path.rsplit('/');
    match (segments.next(), segments.next()) {
        (Some(name), Some("sa")) => name,
        (Some(name), _) if !name.is_empty() => name,
        _ => UNKNOWN,
    }
}

pin_project! {
    /// The future of a [`Telemetry`] service: the inner future, polled
    /// inside the request's span and trace context, recorded when it ends.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Either<TaskLocalFuture<Option<TraceContext>, F>, F>,
        recording: Option<Recording>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: std::fmt::Display,
{
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.recording.as_ref().map(|r| r.span.enter());
            std::task::ready!(this.inner.poll(cx))
        };
        if let Some(recording) = this.recording.take() {
            recording.finish(&result);
        }
        Poll::Ready(result)
    }
}
