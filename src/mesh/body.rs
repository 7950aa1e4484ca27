//! Response bodies of the mesh's clients: the balance step's tracked body,
//! and the public body it becomes, with or without the cluster's breaker.

use super::outlier_report::OutlierReport;
use super::thresholds::ClusterPermit;
use crate::balance::InFlight;
use crate::breaker::BreakerBody;
use crate::classify::SharedClassifier;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project! {
    /// The body of a response from a mesh client ([`MeshClient`](super::MeshClient),
    /// [`HttpClient`](super::HttpClient), [`GrpcChannel`](super::GrpcChannel)):
    /// the inner client's body (hyper's by default), counted as in flight to
    /// its endpoint and its cluster until it ends, fails or is dropped. A
    /// streaming response thus holds its place under the cluster's
    /// `max_requests`, and its endpoint's load counts it. A gRPC response
    /// whose status comes in trailers reports it to outlier detection and to
    /// the cluster's breaker when they arrive.
    #[derive(Debug)]
    pub struct ResponseBody<B = Incoming> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<B> {
        /// An answer made here (an injected fault).
        Empty,
        Tracked { #[pin] body: Tracked<B> },
        Broken { #[pin] body: BreakerBody<Tracked<B>, SharedClassifier> },
    }
}

impl<B> ResponseBody<B> {
    /// An empty body, for answers that never reached an endpoint.
    pub(super) fn empty() -> Self {
        Self {
            inner: Inner::Empty,
        }
    }

    /// A body that went through no breaker.
    pub(super) fn tracked(body: Tracked<B>) -> Self {
        Self {
            inner: Inner::Tracked { body },
        }
    }

    /// A body the cluster's breaker follows to its trailers.
    pub(super) fn broken(body: BreakerBody<Tracked<B>, SharedClassifier>) -> Self {
        Self {
            inner: Inner::Broken { body },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().inner.project() {
            InnerProj::Empty => Poll::Ready(None),
            InnerProj::Tracked { body } => body.poll_frame(cx),
            InnerProj::Broken { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Tracked { body } => body.is_end_stream(),
            Inner::Broken { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Tracked { body } => body.size_hint(),
            Inner::Broken { body } => body.size_hint(),
        }
    }
}

/// What the balance step holds for a response until its body ends.
#[derive(Debug)]
struct Held {
    _permit: ClusterPermit,
    _in_flight: InFlight,
}

pin_project! {
    /// The balance step's body: the response counts against its endpoint
    /// and cluster until it ends, and owes outlier detection its verdict
    /// when that waits for trailers.
    #[derive(Debug)]
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        held: Option<Held>,
        report: Option<OutlierReport>,
    }
}

impl<B: Body> Tracked<B> {
    pub(super) fn new(
        inner: B,
        permit: ClusterPermit,
        in_flight: InFlight,
        report: Option<OutlierReport>,
    ) -> Self {
        let ended = inner.is_end_stream();
        let mut report = report;
        if ended && let Some(report) = &mut report {
            report.trailers(None);
        }
        Self {
            inner,
            held: (!ended).then_some(Held {
                _permit: permit,
                _in_flight: in_flight,
            }),
            report: report.filter(|_| !ended),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = crate::balance::has_ended(&*this.inner, &polled);
        if let Some(report) = this.report.as_mut() {
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
            *this.held = None;
            *this.report = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
