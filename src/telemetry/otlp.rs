//! Export of the telemetry spans over OTLP/gRPC, on the opentelemetry
//! crates (feature `otlp`): [`OtlpExport`] makes a `tracing-subscriber`
//! layer that sends every span (Sinew's and the application's) to an OTLP
//! endpoint, a collector or any OTLP receiver.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), sinew::telemetry::otlp::OtlpError> {
//! // Inside a tokio runtime: the exporter's gRPC channel runs on it.
//! let export = sinew::telemetry::otlp::OtlpExport::new("http://collector:4317", "reviews")?;
//! let subscriber = tracing_subscriber::registry().with(export.layer());
//! tracing::subscriber::set_global_default(subscriber).ok();
//! // ... serve, call ...
//! export.shutdown()?; // flushes what is left
//! # Ok(()) }
//! ```
//!
//! Sinew's spans carry their trace context in both directions: a request
//! span's parent is the one its trace context names (the caller's
//! `traceparent`, or the outbound request of an attempt), and the
//! `traceparent` Sinew sends names the exported span, so that a trace
//! crosses processes whole.

use super::context::{SpanId, TraceContext, TraceId};
use opentelemetry::trace::{
    SpanContext, TraceContextExt, TraceFlags, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};

/// Why the exporter could not be made, flushed or shut down.
#[derive(Debug)]
pub struct OtlpError(String);

impl std::fmt::Display for OtlpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OTLP export: {}", self.0)
    }
}

impl std::error::Error for OtlpError {}

/// An OTLP/gRPC span exporter and its tracer provider (batching, on a
/// thread of its own). Keep it for as long as spans should be exported;
/// [`shutdown`](Self::shutdown) sends what is left.
#[derive(Debug)]
pub struct OtlpExport {
    provider: SdkTracerProvider,
}

impl OtlpExport {
    /// Exports to `endpoint` (`http://host:4317`), naming the process
    /// `service_name` (the resource's `service.name`). Call it inside a
    /// tokio runtime: the gRPC channel runs on it.
    pub fn new(endpoint: &str, service_name: &str) -> Result<Self, OtlpError> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| OtlpError(e.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(service_name.to_owned())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Self { provider })
    }

    /// The tracer the layer exports through.
    pub fn tracer(&self) -> Tracer {
        self.provider.tracer("sinew")
    }

    /// A `tracing-subscriber` layer exporting every span it sees.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, Tracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.tracer())
    }

    /// Exports the finished spans now. It blocks until they are sent:
    /// call it off the runtime's workers (`spawn_blocking`).
    pub fn flush(&self) -> Result<(), OtlpError> {
        self.provider
            .force_flush()
            .map_err(|e| OtlpError(e.to_string()))
    }

    /// Exports what is left and stops. It blocks, like [`flush`](Self::flush).
    pub fn shutdown(self) -> Result<(), OtlpError> {
        self.provider
            .shutdown()
            .map_err(|e| OtlpError(e.to_string()))
    }
}

/// Gives `span` its parent explicitly, and makes `own` carry the ids the
/// exporter gave the span. A span no OpenTelemetry layer sees keeps our
/// ids.
pub(crate) fn link(span: &tracing::Span, parent: Option<&TraceContext>, own: &mut TraceContext) {
    let parent_cx = match parent {
        Some(parent) => {
            let remote = SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes(parent.trace_id.0),
                opentelemetry::trace::SpanId::from_bytes(parent.span_id.0),
                TraceFlags::new(parent.flags),
                true,
                TraceState::default(),
            );
            opentelemetry::Context::new().with_remote_span_context(remote)
        }
        // A root: not a child of whatever span the task happens to be in.
        None => opentelemetry::Context::new(),
    };
    if span.set_parent(parent_cx).is_err() {
        return;
    }
    let cx = span.context();
    let exported = cx.span().span_context().clone();
    if exported.is_valid() {
        own.trace_id = TraceId(exported.trace_id().to_bytes());
        own.span_id = SpanId(exported.span_id().to_bytes());
        own.flags = exported.trace_flags().to_u8();
    }
}
