use super::outlier_report::OutlierReport;
use super::thresholds::ClusterPermit;
use crate::balance::InFlight;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of a response from a mesh client ([`HttpClient`](super::HttpClient),
/// [`GrpcChannel`](super::GrpcChannel)): hyper's body, counted as in flight
/// to its endpoint and its cluster until it ends, fails or is dropped. A
/// streaming response thus holds its place under the cluster's
/// `max_requests`, and its endpoint's load counts it. A gRPC response
/// whose status comes in trailers reports it to outlier detection when
/// they arrive.
#[derive(Debug)]
pub struct ResponseBody {
    /// `None` for an answer made here (an injected fault).
    inner: Option<Incoming>,
    held: Option<Held>,
    /// Outlier detection's verdict, when it waits for the trailers.
    report: Option<OutlierReport>,
}

#[derive(Debug)]
struct Held {
    _permit: ClusterPermit,
    _in_flight: InFlight,
}

impl ResponseBody {
    pub(super) fn new(
        inner: Incoming,
        permit: ClusterPermit,
        in_flight: InFlight,
        report: Option<OutlierReport>,
    ) -> Self {
        let held = Held {
            _permit: permit,
            _in_flight: in_flight,
        };
        let ended = inner.is_end_stream();
        let mut report = report;
        if ended && let Some(report) = &mut report {
            report.trailers(None);
        }
        Self {
            inner: Some(inner),
            held: (!ended).then_some(held),
            report: report.filter(|_| !ended),
        }
    }

    /// An empty body, for answers that never reached an endpoint.
    pub(super) fn empty() -> Self {
        Self {
            inner: None,
            held: None,
            report: None,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = &mut self.inner else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
            Poll::Pending => false,
        };
        if let Some(report) = &mut self.report {
            match &polled {
                Poll::Ready(Some(Err(_))) => report.failed(),
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                    report.trailers(frame.trailers_ref());
                }
                _ if ended => report.trailers(None),
                _ => {}
            }
        }
        if ended {
            self.held = None;
            self.report = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
