//! Seeing the mesh: trace context, spans, golden metrics, the per-request
//! decision report, and the per-edge aggregates pushed to the control
//! plane.
//!
//! - [`context`]: W3C `traceparent` / `tracestate` (and B3, read), the
//!   trace context a task is in;
//! - [`TelemetryLayer`]: a span, trace context and request metrics for
//!   each request, in both of the mesh's stacks or alone;
//! - [`request_metrics`]: `sinew_requests_total` and
//!   `sinew_request_duration_seconds`, with bounded labels;
//! - [`edges`] keeps the golden metrics of each edge (source service →
//!   destination service) in process, lock-free on the request path, for
//!   whoever takes them (the push to the control plane, a test);
//! - [`report`]: the per-request decision report every mesh client's
//!   response carries, and its short form for the `sinew-debug` header;
//! - `otlp` (feature `otlp`): export of the spans over OTLP/gRPC;
//! - `push` (feature `xds`): the edges, pushed to the control plane as
//!   OTLP metrics (ADR 0017).
//!
//! docs/telemetry.md lists the spans, their fields and the metrics.

#[cfg(feature = "mesh")]
pub(crate) mod attempt;
pub mod context;
pub mod edges;
pub mod layer;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod otlp_names;
#[cfg(feature = "xds")]
pub mod push;
pub mod report;
pub mod request_metrics;
pub mod span;

pub use layer::{RouteLabel, Telemetry, TelemetryLayer};
pub use request_metrics::RequestMetrics;

/// Ties a new span to its parent for the exporter, and makes `own` carry
/// the ids the exporter gave it (so that what is propagated matches what
/// is exported). Without the `otlp` feature, our ids are the span's.
#[inline]
pub(crate) fn link(
    span: &tracing::Span,
    parent: Option<&context::TraceContext>,
    own: &mut context::TraceContext,
) {
    #[cfg(feature = "otlp")]
    otlp::link(span, parent, own);
    #[cfg(not(feature = "otlp"))]
    let _ = (span, parent, own);
}
