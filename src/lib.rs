//! Sinew is a proxyless service mesh for Rust: what a sidecar proxy does on
//! the request path, done in-process as [tower] layers.
//!
//! [`mesh::Mesh`] assembles both halves from the layers below: a client
//! stack around the application's hyper or tonic client
//! (`mesh.client_layer("svc")`, `mesh.http_client`, `mesh.grpc_channel`)
//! and a server stack in front of its hyper or tonic server
//! (`mesh.serve`, `mesh.server("svc")`). Each layer is a tower [`Layer`]
//! usable alone with any `Service<http::Request<B>>`, understands HTTP and
//! gRPC (outcomes are classified by `grpc-status`, in headers or trailers),
//! validates its configuration with errors that name the field, and is
//! testable under `tokio::time::pause()`.
//!
//! | module | what it does | feature |
//! |---|---|---|
//! | [`timeout`] | overall and per-attempt timeouts, merged with inherited deadlines | `timeout` |
//! | [`deadline`] | deadline propagation (`grpc-timeout`, `sinew-timeout-ms`) and enforcement | always |
//! | [`retry`] | retries with budget, backoff, body replay, idempotency rules; hedging | `retry` |
//! | [`breaker`] | circuit breaking: consecutive or rate trips, exact half-open probes | `breaker` |
//! | [`limit`] | concurrency limit with bounded queue, token bucket, load shedding, adaptive limit | `limit` |
//! | [`respond`] | refusals as 503/429/504 (or gRPC codes) on servers | always |
//! | [`classify`] | what counts as a failure, and what may be retried; classifiers by name | always |
//! | `balance` | pickers, and `BalanceLayer` over a changing `EndpointSet` | `balance` |
//! | `tls` | SPIFFE identities, X.509-SVID checks, rustls configs that follow rotation | `tls` |
//! | `mesh` | the `Mesh`: configuration, routing, the client and server stacks | `mesh`, `server`, `grpc` |
//! | [`telemetry`] | trace context (W3C, B3), spans, request metrics, per-edge golden metrics, OTLP span export (`otlp`) | `telemetry`, `otlp` |
//!
//! A client stack, outermost first:
//!
//! ```
//! use std::time::Duration;
//! use sinew::breaker::{BreakerConfig, BreakerLayer};
//! use sinew::deadline::PropagateDeadlineLayer;
//! use sinew::retry::{RetryConfig, RetryLayer};
//! use sinew::timeout::{TimeoutConfig, TimeoutLayer};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), sinew::error::ConfigError> {
//! let stack = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(TimeoutConfig::after(Duration::from_secs(2)))?) // all attempts
//!     .layer(RetryLayer::new(RetryConfig::default())?)
//!     .layer(TimeoutLayer::new(TimeoutConfig::after(Duration::from_millis(500)))?) // each attempt
//!     .layer(BreakerLayer::new(BreakerConfig::default())?)
//!     .layer(PropagateDeadlineLayer::new());
//! # let _ = stack;
//! # Ok(()) }
//! ```
//!
//! Layers return [`error::BoxError`]; find out what happened by
//! downcasting to the error types each module documents.
//!
//! [tower]: https://docs.rs/tower
//! [`Layer`]: tower::Layer

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// tower's accessors for a middleware's `inner` service of type `S`.
macro_rules! inner_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
pub(crate) use inner_accessors;

#[cfg(feature = "config")]
mod addr_hash;
#[cfg(feature = "authz")]
pub mod authz;
#[cfg(feature = "balance")]
pub mod balance;
pub mod bounds;
pub mod classify;
mod clock;
#[cfg(feature = "config")]
pub mod config;
#[cfg(feature = "config")]
mod cow_list;
pub mod deadline;
pub mod error;
pub mod grpc;
#[cfg(feature = "mesh")]
pub mod mesh;
pub mod respond;
#[cfg(feature = "telemetry")]
pub mod telemetry;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(any(feature = "breaker", feature = "retry"))]
mod window;
#[cfg(feature = "xds")]
pub mod xds;

#[cfg(feature = "breaker")]
pub mod breaker;
#[cfg(feature = "limit")]
pub mod limit;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "timeout")]
pub mod timeout;

#[cfg(test)]
mod test_metrics;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
