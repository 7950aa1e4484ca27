//! How edge metrics are spelled in OTLP (ADR 0017): the names and
//! attributes the library's push writes and the control plane reads, so
//! that both sides (and a collector's configuration) agree.
//!
//! Per export, one `ResourceMetrics` whose resource names the reporting
//! process ([`SERVICE_NAME`], [`SERVICE_INSTANCE_ID`]) and, per edge, two
//! delta data points carrying [`SOURCE`], [`DESTINATION`] and
//! [`DIRECTION`]:
//!
//! | metric | kind | unit | what |
//! |---|---|---|---|
//! | [`DURATION`] | explicit-bucket histogram, delta | `s` | the requests finished and their latency; its count is the request count |
//! | [`FAILURES`] | monotonic sum, delta | `{request}` | of those, the failures |
//!
//! The histogram's bounds are [`LATENCY_BOUNDS_MICROS`](super::edges::LATENCY_BOUNDS_MICROS)
//! in seconds ([`latency_bounds_seconds`]).

/// The histogram of the requests of an edge.
pub const DURATION: &str = "sinew.edge.duration";
/// The failures of an edge.
pub const FAILURES: &str = "sinew.edge.failures";
/// The calling service.
pub const SOURCE: &str = "source";
/// The called service.
pub const DESTINATION: &str = "destination";
/// `outbound` (reported by the caller) or `inbound` (by the callee).
pub const DIRECTION: &str = "direction";
/// The resource attribute naming the reporting service (OpenTelemetry's
/// semantic conventions).
pub const SERVICE_NAME: &str = "service.name";
/// The resource attribute naming the reporting process (its xDS node id).
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// The instrumentation scope of the metrics.
pub const SCOPE: &str = "sinew";

/// The histogram bounds, in seconds.
pub fn latency_bounds_seconds() -> Vec<f64> {
    super::edges::LATENCY_BOUNDS_MICROS
        .iter()
        .map(|&micros| micros as f64 / 1e6)
        .collect()
}
