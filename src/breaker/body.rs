use super::state::Ticket;
use crate::classify::{Classify, Outcome};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// A response body that reports a gRPC outcome to the breaker when its
    /// trailers arrive. For responses already classified by their head it
    /// only passes frames through.
    pub struct BreakerBody<B, C> {
        #[pin]
        inner: B,
        ticket: Option<Ticket<C>>,
    }
}

impl<B, C> BreakerBody<B, C> {
    pub(super) fn new(inner: B, ticket: Option<Ticket<C>>) -> Self {
        Self { inner, ticket }
    }

    /// Unwraps the inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B, C> Body for BreakerBody<B, C>
where
    B: Body,
    C: Classify,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(ticket) = this.ticket.take() {
            let classifier = &ticket.core().classifier;
            let outcome = match &frame {
                Some(Ok(frame)) => frame
                    .trailers_ref()
                    .map(|trailers| classifier.classify_trailers(Some(trailers))),
                // The server saw the request: a body that breaks mid-way
                // is a failure, whatever the error.
                Some(Err(_)) => Some(Outcome::Failure { retryable: false }),
                None => Some(classifier.classify_trailers(None)),
            };
            match outcome {
                Some(outcome) => ticket.record(outcome),
                None => *this.ticket = Some(ticket),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, C> std::fmt::Debug for BreakerBody<B, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerBody")
            .field("pending", &self.ticket.is_some())
            .finish()
    }
}
