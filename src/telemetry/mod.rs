//! Seeing the mesh: trace context, spans, golden metrics, the per-request
//! decision report, and the per-edge aggregates pushed to the control
//! plane.
//!
//! [`report`] is the per-request decision report every mesh client's
//! response carries, and its short form for the `sinew-debug` header.
//!
//! [`edges`] keeps the golden metrics of each edge (source service →
//! destination service) in process, lock-free on the request path, for
//! whoever takes them (the push to the control plane, a test).

pub mod edges;
pub mod report;
