//! What one attempt tells outlier detection about its endpoint, told once.
//!
//! The outcome comes from the same [`Classify`] machinery the retry layer
//! uses: the response head for HTTP (and gRPC answered trailers-only), the
//! trailers for other gRPC responses, so a gRPC `UNAVAILABLE` in trailers
//! is a failure although its HTTP status is 200. Errors (connect failures,
//! resets) originate here. So does a timeout: an attempt dropped unfinished
//! after a deadline the mesh set (the route's timeout or its per-try
//! timeout) passed is a local-origin failure, as Envoy counts its
//! timeouts, so that an endpoint that hangs is ejected. An attempt dropped
//! otherwise (a hedge that lost the race, a caller that gave up, a
//! caller's own deadline, which a remote client can make as short as it
//! likes) says nothing about the endpoint and is not counted.

use super::outlier::{EndpointOutlier, Result_};
use super::runtime::ClusterRuntime;
use crate::classify::{Classify, Outcome};
use crate::deadline::Deadline;
use crate::grpc::Code;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;

/// An attempt's report, owed until [`OutlierReport::record`] or a drop.
#[derive(Debug)]
pub(super) struct OutlierReport {
    cluster: Arc<ClusterRuntime>,
    endpoint: Arc<EndpointOutlier>,
    deadline: Option<Deadline>,
    /// The head's HTTP status, for a verdict deferred to trailers.
    status: StatusCode,
    done: bool,
}

impl OutlierReport {
    pub(super) fn new(
        cluster: Arc<ClusterRuntime>,
        endpoint: Arc<EndpointOutlier>,
        deadline: Option<Deadline>,
    ) -> Self {
        Self {
            cluster,
            endpoint,
            deadline,
            status: StatusCode::OK,
            done: false,
        }
    }

    fn record(&mut self, result: Result_) {
        if !self.done {
            self.done = true;
            self.cluster.record(&self.endpoint, result);
        }
    }

    /// An error instead of a response, or while its body streamed.
    pub(super) fn failed(&mut self) {
        self.record(Result_::LocalFailure);
    }

    /// The attempt never reached the endpoint for a reason of the
    /// caller's (its budget ran out in the cluster's queue): nothing to
    /// say about the endpoint.
    pub(super) fn withdraw(mut self) {
        self.done = true;
    }

    /// Reports from the response head; returns `self` when the verdict
    /// waits for the trailers.
    pub(super) fn head(mut self, status: StatusCode, headers: &HeaderMap) -> Option<Self> {
        match self.cluster.classifier().classify_response(status, headers) {
            Some(outcome) => {
                self.record(result(outcome, status, headers));
                None
            }
            None => {
                self.status = status;
                Some(self)
            }
        }
    }

    /// Reports from the trailers (`None`: the body ended without any).
    pub(super) fn trailers(&mut self, trailers: Option<&HeaderMap>) {
        let outcome = self.cluster.classifier().classify_trailers(trailers);
        let empty = HeaderMap::new();
        self.record(result(outcome, self.status, trailers.unwrap_or(&empty)));
    }
}

impl Drop for OutlierReport {
    fn drop(&mut self) {
        if !self.done && self.deadline.is_some_and(Deadline::is_expired) {
            self.record(Result_::LocalFailure);
        }
    }
}

/// An outcome as outlier detection counts it. A gRPC code counts as the
/// HTTP status Envoy maps it to, so `UNAVAILABLE` (503) and
/// `DEADLINE_EXCEEDED` (504) are gateway failures.
fn result(outcome: Outcome, status: StatusCode, headers: &HeaderMap) -> Result_ {
    match outcome {
        Outcome::Success => Result_::Success,
        Outcome::NotProcessed => Result_::LocalFailure,
        Outcome::Failure { .. } => {
            let gateway = match Code::from_headers(headers) {
                Some(code) => matches!(code, Code::UNAVAILABLE | Code::DEADLINE_EXCEEDED),
                None => matches!(status.as_u16(), 502..=504),
            };
            Result_::ServerError { gateway }
        }
    }
}
