//! The `tracing` spans of requests and attempts, with OpenTelemetry's
//! HTTP and RPC semantic-convention field names.
//!
//! A span is made by a `tracing` macro, so that a span below the enabled
//! level costs a callsite check and nothing else: every field that needs
//! formatting is recorded only when [`Span::is_disabled`] is false.

use super::context::TraceContext;
use super::edges::Direction;
use http::{HeaderMap, Method, Request};
use tracing::Span;
use tracing::field::Empty;

/// The target of Sinew's request and attempt spans (filter on it).
pub const TARGET: &str = "sinew::telemetry";

/// A new span for a whole request, on `direction`'s side: `otel.kind`
/// `server` inbound, `internal` outbound (its attempts are the `client`
/// spans, as OpenTelemetry's HTTP conventions want one client span per
/// attempt).
pub(crate) fn request(direction: Direction) -> Span {
    let kind = match direction {
        Direction::Inbound => "server",
        Direction::Outbound => "internal",
    };
    tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = Empty,
        otel.kind = kind,
        otel.status_code = Empty,
        http.request.method = Empty,
        http.response.status_code = Empty,
        url.path = Empty,
        http.route = Empty,
        server.address = Empty,
        rpc.system = Empty,
        rpc.service = Empty,
        rpc.method = Empty,
        rpc.grpc.status_code = Empty,
        sinew.direction = direction.as_str(),
        sinew.service = Empty,
        sinew.route = Empty,
        sinew.cluster = Empty,
        sinew.outcome = Empty,
        sinew.peer_identity = Empty,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    )
}

/// A new span for one attempt of an outbound request (`otel.kind`
/// `client`).
#[cfg(feature = "mesh")]
pub(crate) fn attempt() -> Span {
    tracing::info_span!(
        target: TARGET,
        "attempt",
        otel.name = Empty,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = Empty,
        http.response.status_code = Empty,
        url.path = Empty,
        server.address = Empty,
        server.port = Empty,
        rpc.system = Empty,
        rpc.service = Empty,
        rpc.method = Empty,
        rpc.grpc.status_code = Empty,
        sinew.cluster = Empty,
        sinew.endpoint = Empty,
        sinew.attempt = Empty,
        sinew.outcome = Empty,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    )
}

/// Records what the request says about itself on an enabled span: its
/// method, path, gRPC service and method, and the name OpenTelemetry
/// gives such a span (`{method}` for HTTP, `{service}/{method}` for gRPC).
pub(crate) fn describe<B>(span: &Span, request: &Request<B>) {
    if span.is_disabled() {
        return;
    }
    let method = request.method();
    let path = request.uri().path();
    span.record("http.request.method", method_name(method));
    span.record("url.path", path);
    if crate::grpc::is_grpc(request.headers()) {
        span.record("rpc.system", "grpc");
        let name = path.trim_start_matches('/');
        if let Some((service, rpc)) = name.split_once('/') {
            span.record("rpc.service", service);
            span.record("rpc.method", rpc);
        }
        span.record("otel.name", name);
    } else {
        span.record("otel.name", method_name(method));
    }
}

/// The method as OpenTelemetry names it: `_OTHER` for one outside the
/// standard set (a bounded value).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// Records the span's trace ids on an enabled span, for logs to quote.
pub(crate) fn ids(span: &Span, context: &TraceContext, parent: Option<&TraceContext>) {
    if span.is_disabled() {
        return;
    }
    span.record("trace_id", tracing::field::display(context.trace_id));
    span.record("span_id", tracing::field::display(context.span_id));
    if let Some(parent) = parent {
        span.record("parent_span_id", tracing::field::display(parent.span_id));
    }
}

/// Records the response head on an enabled span.
pub(crate) fn response(span: &Span, status: http::StatusCode, headers: &HeaderMap, success: bool) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status.as_u16());
    if let Some(code) = crate::grpc::Code::from_headers(headers) {
        span.record("rpc.grpc.status_code", code.value());
    }
    outcome(span, success);
}

/// Records the outcome (`success` or `failure`) on an enabled span, and
/// OpenTelemetry's status for a failure.
pub(crate) fn outcome(span: &Span, success: bool) {
    if span.is_disabled() {
        return;
    }
    if success {
        span.record("sinew.outcome", "success");
    } else {
        span.record("sinew.outcome", "failure");
        span.record("otel.status_code", "ERROR");
    }
}

/// Records an error instead of a response on an enabled span.
/// Records on an enabled span that the caller gave up on the request.
pub(crate) fn cancelled(span: &Span) {
    if span.is_disabled() {
        return;
    }
    span.record("sinew.outcome", "cancelled");
    span.record("otel.status_code", "ERROR");
}

pub(crate) fn error(span: &Span, error: &dyn std::fmt::Display) {
    if span.is_disabled() {
        return;
    }
    span.record("sinew.outcome", "error");
    span.record("otel.status_code", "ERROR");
    tracing::debug!(target: TARGET, parent: span, error = %error, "request failed");
}
