//! Request timeouts that become deadlines.
//!
//! [`TimeoutLayer`] bounds a request by the earlier of its own timeout and
//! any deadline it inherits (from an inbound request being handled, an
//! enclosing [`Deadline`](crate::deadline::Deadline) scope, or a request
//! extension). While the inner service runs, that bound is
//! [`Deadline::current`](crate::deadline::Deadline::current), so layers below
//! see how much time is left.
//!
//! The same layer gives both timeouts a client needs:
//!
//! - **overall**: above the retry layer, it bounds all attempts together;
//! - **per attempt**: below the retry layer, it bounds each attempt, and
//!   never extends past the overall deadline.
//!
//! ```
//! use std::time::Duration;
//! use sinew::timeout::{TimeoutConfig, TimeoutLayer};
//! use tower::ServiceBuilder;
//!
//! # fn wrap<S>(inner: S) -> impl Sized {
//! let overall = TimeoutLayer::new(TimeoutConfig::after(Duration::from_secs(2))).unwrap();
//! let per_attempt = TimeoutLayer::new(TimeoutConfig::after(Duration::from_millis(500))).unwrap();
//! ServiceBuilder::new()
//!     .layer(overall)
//!     // .layer(retry)
//!     .layer(per_attempt)
//!     .service(inner)
//! # }
//! ```
//!
//! A timeout is reported as [`Elapsed`]; an inherited deadline that fires
//! first is reported as [`DeadlineExceeded`](crate::deadline::DeadlineExceeded).

mod config;
mod error;
mod future;
mod layer;

pub use config::TimeoutConfig;
pub use error::Elapsed;
pub use future::ResponseFuture;
pub use layer::{Timeout, TimeoutLayer};
