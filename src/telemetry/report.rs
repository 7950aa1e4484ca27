//! The per-request decision report: what the mesh decided for one request.
//!
//! Every response from a mesh client ([`Mesh::http_client`],
//! [`Mesh::client_layer`], and so `Mesh::grpc_channel`) carries a
//! [`DecisionReport`] in its extensions: the configuration version, the
//! service, the route, the cluster picked from the route's split, and each
//! attempt with its endpoint, why it was sent (first, retry after what,
//! hedge after which delay), when it started, how long it took, what the
//! breaker and the cluster's thresholds decided, and how it ended.
//!
//! ```no_run
//! use sinew::telemetry::report::DecisionReport;
//! # async fn f(mesh: sinew::mesh::Mesh) -> Result<(), sinew::error::BoxError> {
//! use tower::ServiceExt;
//! let client = mesh.http_client::<http_body_util::Empty<bytes::Bytes>>("reviews");
//! let response = client.oneshot(http::Request::get("/r/1").body(Default::default())?).await?;
//! if let Some(report) = response.extensions().get::<DecisionReport>() {
//!     println!("{report}");
//! }
//! # Ok(()) }
//! ```
//!
//! Errors do not carry the report: the mesh's errors are downcast by type
//! (`RouteError`, `BreakerOpen`, ...), and a wrapper would hide them. A
//! caller who wants the report of a failed request too puts a
//! [`ReportSink`] in the request's extensions; the mesh fills it in
//! whatever the outcome.
//!
//! The report is boxed and held in a thread-local slot while the request's
//! future is polled (the first attempt is kept inline; docs/adr/0017), and
//! each layer records only what it already holds (shared names, addresses,
//! indices, instants): no string is formatted on the request path. Outside a mesh client (the retry or breaker layer used
//! alone) nothing is recorded.
//!
//! [`Mesh::http_client`]: crate::mesh::Mesh::http_client
//! [`Mesh::client_layer`]: crate::mesh::Mesh::client_layer

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

mod display;
mod record;
mod scope;
mod short;
#[cfg(feature = "breaker")]
pub(crate) use record::breaker;
#[cfg_attr(not(feature = "mesh"), allow(unused_imports))]
pub(crate) use record::{AttemptGuard, ended, endpoint, hedging, refused, retrying};
use scope::record;
#[cfg_attr(not(feature = "mesh"), allow(unused_imports))]
pub(crate) use scope::{Outside, Recorded, active};
pub use short::{DEBUG_REQUEST_HEADER, DECISION_RESPONSE_HEADER};

/// What the mesh decided for one request. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct DecisionReport {
    service: Arc<str>,
    version: u64,
    route: usize,
    cluster: Arc<str>,
    timeout: Option<Duration>,
    started: Instant,
    elapsed: Option<Duration>,
    /// The first attempt, inline: most requests have no other.
    first: Option<AttemptReport>,
    rest: Vec<AttemptReport>,
}

impl DecisionReport {
    /// A report for a request of `service`, routed by the snapshot of
    /// `version` to its route number `route` and to `cluster`, starting now.
    pub fn new(
        service: Arc<str>,
        version: u64,
        route: usize,
        cluster: Arc<str>,
        timeout: Option<Duration>,
    ) -> Self {
        Self {
            service,
            version,
            route,
            cluster,
            timeout,
            started: crate::clock::now(),
            elapsed: None,
            first: None,
            rest: Vec::new(),
        }
    }

    /// The version of the configuration snapshot the request was routed by.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The mesh service called.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The route that took the request: its index among the service's
    /// routes (`services.<name>.routes[i]`; routes have no names).
    pub fn route(&self) -> usize {
        self.route
    }

    /// The cluster picked from the route's split.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The route's overall timeout, when it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// When the request entered the mesh client.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// How long the request took, to its response head or its error.
    pub fn elapsed(&self) -> Option<Duration> {
        self.elapsed
    }

    /// The attempts, in the order they were started.
    pub fn attempts(&self) -> impl Iterator<Item = &AttemptReport> + '_ {
        self.first.iter().chain(self.rest.iter())
    }

    /// How many attempts were started (or refused).
    pub fn attempt_count(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The attempt numbered `number` (1 for the first).
    pub fn attempt(&self, number: u32) -> Option<&AttemptReport> {
        self.attempts().find(|a| a.number == number)
    }

    /// The attempts, to change.
    fn attempts_mut(&mut self) -> impl Iterator<Item = &mut AttemptReport> + '_ {
        self.first.iter_mut().chain(self.rest.iter_mut())
    }

    /// The attempt numbered `number`, made when it is not there yet.
    fn attempt_mut(&mut self, number: u32) -> &mut AttemptReport {
        let started = self.started;
        let fresh = || AttemptReport::new(number, since(started));
        if self
            .first
            .as_ref()
            .is_none_or(|first| first.number == number)
        {
            return self.first.get_or_insert_with(fresh);
        }
        let i = match self.rest.iter().position(|a| a.number == number) {
            Some(i) => i,
            None => {
                self.rest.push(fresh());
                self.rest.len() - 1
            }
        };
        &mut self.rest[i]
    }

    /// Marks the end of the request.
    pub(crate) fn finish(&mut self) {
        self.elapsed = Some(since(self.started));
    }
}

/// The time from `start` to now (a cached clock reading when the layers
/// share one).
fn since(start: Instant) -> Duration {
    crate::clock::now().saturating_duration_since(start)
}

/// One attempt of a request: a first try, a retry or a hedge.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptReport {
    /// 1 for the first attempt, 2 for the next, ...
    pub number: u32,
    /// Why it was sent.
    pub reason: AttemptReason,
    /// The endpoint it went to; `None` when it was refused before one was
    /// picked.
    pub endpoint: Option<SocketAddr>,
    /// When it started, from the start of the request.
    pub start: Duration,
    /// How long it took to its response head, its error, or its
    /// cancellation; `None` while it runs.
    pub duration: Option<Duration>,
    /// What the cluster's breaker decided; `None` when it has none.
    pub breaker: Option<BreakerDecision>,
    /// Whether it waited in line for a place under the cluster's
    /// `max_requests` threshold.
    pub queued: bool,
    /// How it ended.
    pub result: AttemptResult,
}

impl AttemptReport {
    fn new(number: u32, start: Duration) -> Self {
        Self {
            number,
            reason: AttemptReason::First,
            endpoint: None,
            start,
            duration: None,
            breaker: None,
            queued: false,
            result: AttemptResult::Pending,
        }
    }
}

/// Why an attempt was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptReason {
    /// The request's first attempt.
    First,
    /// A retry, after the previous attempt ended so.
    Retry {
        /// How the attempt before it failed.
        after: Cause,
    },
    /// A hedge: the attempts in flight had not answered after `delay`.
    Hedge {
        /// The route's hedging delay.
        delay: Duration,
    },
}

/// How an attempt failed, as the retry layer saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// A response with this HTTP status.
    Status(http::StatusCode),
    /// A trailers-only gRPC response with this `grpc-status`.
    Grpc(u16),
    /// An error of this class.
    Error(ErrorClass),
}

/// The class of an attempt's error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The retry policy's per-try timeout cut the attempt.
    PerTryTimeout,
    /// The request's deadline (the route's timeout or the caller's) passed.
    /// Attempts still running then end so too.
    DeadlineExceeded,
    /// Refused on the caller's side before sending (breaker, thresholds,
    /// no endpoint, mutual TLS unavailable).
    Refused,
    /// Never reached the server (connect error, refused stream, ...).
    NotProcessed,
    /// Anything else: the server may have seen the request.
    Other,
}

impl ErrorClass {
    /// The class of `error`.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        #[cfg(feature = "retry")]
        if error.is::<crate::retry::AttemptTimedOut>() {
            return Self::PerTryTimeout;
        }
        #[cfg(feature = "timeout")]
        if error.is::<crate::timeout::Elapsed>() {
            return Self::DeadlineExceeded;
        }
        if error.is::<crate::deadline::DeadlineExceeded>() {
            Self::DeadlineExceeded
        } else if crate::classify::refused_before_sending(error) {
            Self::Refused
        } else if crate::classify::never_processed(error) {
            Self::NotProcessed
        } else {
            Self::Other
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::PerTryTimeout => "per-try-timeout",
            Self::DeadlineExceeded => "deadline",
            Self::Refused => "refused",
            Self::NotProcessed => "not-processed",
            Self::Other => "error",
        }
    }
}

/// What the cluster's breaker decided for an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerDecision {
    /// Let through, in the state it was in then.
    #[cfg(feature = "breaker")]
    Admitted(crate::breaker::State),
    /// Refused: open, or half-open with every probe taken.
    Refused,
}

/// How an attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptResult {
    /// Still running (the request's future was dropped first, or the
    /// report was read before the end).
    Pending,
    /// A response head with this status.
    Status(http::StatusCode),
    /// An error of this class.
    Failed(ErrorClass),
    /// Refused before it was sent.
    Refused(Refusal),
    /// Cancelled: a hedge that lost, or cut by the per-try timeout.
    Cancelled,
}

/// Why an attempt was refused before being sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The cluster's breaker is open.
    BreakerOpen,
    /// A cluster threshold (`max_pending`, `max_retries`) was reached.
    Threshold {
        /// Its name.
        name: &'static str,
        /// Its value.
        limit: u32,
    },
    /// The cluster had no endpoint in service.
    NoEndpoint,
    /// The cluster requires mutual TLS and the mesh has no certificate.
    MtlsUnavailable,
}

/// A place where the mesh leaves the [`DecisionReport`] of a request,
/// failed or not. Put a clone in the request's extensions; read it once
/// the call returns.
///
/// ```
/// use sinew::telemetry::report::ReportSink;
/// let sink = ReportSink::default();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(sink.clone());
/// // ... send it through a mesh client, then:
/// let report = sink.take();
/// # assert!(report.is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReportSink(Arc<Mutex<Option<DecisionReport>>>);

impl ReportSink {
    /// The report left there, if any (taking it out).
    pub fn take(&self) -> Option<DecisionReport> {
        self.0.lock().ok().and_then(|mut r| r.take())
    }

    #[cfg_attr(not(feature = "mesh"), allow(dead_code))]
    pub(crate) fn put(&self, report: DecisionReport) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(report);
        }
    }
}
