//! The resilience layers through real hyper and tonic clients and servers
//! on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

mod breaker;
mod deadline;
mod grpc;
mod limit;
mod retry;
mod support;
mod timeout;
