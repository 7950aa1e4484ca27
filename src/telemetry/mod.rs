//! Seeing the mesh: trace context, spans, golden metrics, the per-request
//! decision report, and the per-edge aggregates pushed to the control
//! plane.
//!
//! [`edges`] keeps the golden metrics of each edge (source service →
//! destination service) in process, lock-free on the request path, for
//! whoever takes them (the push to the control plane, a test).

pub mod edges;
pub mod otlp_names;
#[cfg(feature = "xds")]
pub mod push;
