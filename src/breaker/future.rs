use super::body::BreakerBody;
use super::error::BreakerOpen;
use super::state::Ticket;
use crate::classify::Classify;
use crate::error::BoxError;
use http::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// Response future of [`Breaker`](super::Breaker).
    pub struct ResponseFuture<F, C> {
        #[pin]
        future: Option<F>,
        ticket: Option<Ticket<C>>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn admitted(future: F, ticket: Ticket<C>) -> Self {
        Self {
            future: Some(future),
            ticket: Some(ticket),
        }
    }

    pub(super) fn refused() -> Self {
        Self {
            future: None,
            ticket: None,
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    C: Classify,
{
    type Output = Result<Response<BreakerBody<B, C>>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(future) = this.future.as_pin_mut() else {
            return Poll::Ready(Err(BreakerOpen::new().into()));
        };
        let result = ready!(future.poll(cx));
        let Some(ticket) = this.ticket.take() else {
            return Poll::Ready(Err("breaker response future polled after completion".into()));
        };
        Poll::Ready(match result {
            Ok(response) => {
                let outcome = ticket
                    .core()
                    .classifier
                    .classify_response(response.status(), response.headers());
                let pending = match outcome {
                    Some(outcome) => {
                        ticket.record(outcome);
                        None
                    }
                    None => Some(ticket),
                };
                Ok(response.map(|body| BreakerBody::new(body, pending)))
            }
            Err(error) => {
                let error = error.into();
                // A request refused below for the caller's own reasons (its
                // budget spent, no endpoint, the cluster's thresholds) says
                // nothing of the service: the ticket is returned unused.
                if !crate::classify::refused_before_sending(error.as_ref()) {
                    let outcome = ticket.core().classifier.classify_error(error.as_ref());
                    ticket.record(outcome);
                }
                Err(error)
            }
        })
    }
}
