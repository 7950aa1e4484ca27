//! The span and trace context of one attempt of an outbound request (a
//! first try, a retry or a hedge), made where the attempt gets its
//! endpoint: the client stack's balance step.

use super::context::{self, TraceContext};
use super::span;
use http::Request;
use tracing::Span;

/// Starts an attempt of `request`: its span, a child of the outbound
/// request's, and the `traceparent` it carries to the server (a fresh span
/// id per attempt). With the span disabled, the request's own context
/// passes through, if there is one.
pub(crate) fn start<B>(request: &mut Request<B>, attempt: u32, cluster: &str) -> Span {
    let span = span::attempt();
    let parent = context::current();
    let context = if span.is_disabled() {
        parent
    } else {
        let mut own = parent
            .as_ref()
            .map_or_else(TraceContext::new_root, TraceContext::child);
        // Described first: an exporter may start the span when linking.
        span::describe(&span, request);
        super::link(&span, parent.as_ref(), &mut own);
        span::ids(&span, &own, parent.as_ref());
        span.record("sinew.attempt", attempt);
        span.record("sinew.cluster", cluster);
        Some(own)
    };
    if let Some(context) = context {
        context.inject(request.headers_mut());
    }
    span
}

/// Records the endpoint the attempt was sent to.
pub(crate) fn endpoint(span: &Span, address: std::net::SocketAddr) {
    if span.is_disabled() {
        return;
    }
    span.record("sinew.endpoint", tracing::field::display(address));
    span.record("server.address", tracing::field::display(address.ip()));
    span.record("server.port", address.port());
}

/// Records the attempt's response head.
pub(crate) fn response(span: &Span, status: http::StatusCode, headers: &http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let success = !status.is_server_error()
        && crate::grpc::Code::from_headers(headers).is_none_or(|code| {
            use crate::grpc::Code;
            !matches!(
                code,
                Code::UNKNOWN
                    | Code::DEADLINE_EXCEEDED
                    | Code::RESOURCE_EXHAUSTED
                    | Code::INTERNAL
                    | Code::UNAVAILABLE
                    | Code::DATA_LOSS
            )
        });
    span::response(span, status, headers, success);
}
