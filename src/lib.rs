//! x
pub mod classify;
pub mod deadline;
pub mod error;
pub mod grpc;
#[cfg(feature = "timeout")]
pub mod timeout;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "breaker")]
pub mod breaker;
