//! Trace context: W3C `traceparent` / `tracestate` read and written, B3
//! (`b3` and `X-B3-*`) read, and the context of the span a task is in.
//!
//! Parsing is strict (W3C Trace Context, level 1): a header that does not
//! follow the specification is ignored, and the request starts a new
//! trace. It is never an error: a caller's broken header must not fail its
//! request.
//!
//! ```
//! use sinew::telemetry::context::TraceContext;
//!
//! let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let parent = TraceContext::parse_traceparent(header).unwrap();
//! assert!(parent.sampled());
//! assert_eq!(parent.to_traceparent(), header);
//!
//! let child = parent.child();
//! assert_eq!(child.trace_id, parent.trace_id);
//! assert_ne!(child.span_id, parent.span_id);
//!
//! // All-zero ids, wrong lengths, upper case: ignored.
//! assert!(TraceContext::parse_traceparent(
//!     "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
//! ).is_none());
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;

// Names made once: looking a header up by `&str` parses the name on every
// call.
const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);
const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);
const B3_NAME: HeaderName = HeaderName::from_static(B3);
const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";
/// The single B3 header.
pub const B3: &str = "b3";

/// A 16-byte trace id; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A random trace id.
    pub fn random() -> Self {
        let mut id = fastrand::u128(1..).to_be_bytes();
        // Keep it non-zero even if the generator's range changes.
        id[15] |= (id == [0; 16]) as u8;
        Self(id)
    }
}

impl SpanId {
    /// A random span id.
    pub fn random() -> Self {
        Self(fastrand::u64(1..).to_be_bytes())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// The context of one span: its trace, its own id, its flags and the
/// vendors' `tracestate`, carried as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
    /// The `tracestate` header, when the caller sent a valid one.
    pub state: Option<HeaderValue>,
}

impl TraceContext {
    /// The root of a new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            flags: 1,
            state: None,
        }
    }

    /// A child span of this one: same trace, flags and state, a new id.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// Whether the trace is sampled (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Parses a W3C `traceparent` value, strictly: version `00` with
    /// exactly four fields, or a later version (`ff` excepted) with at
    /// least the four fields of version `00`; lowercase hex only; neither
    /// id all zeros.
    pub fn parse_traceparent(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        if version == 0xff || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        // Version 00 is exactly 55 characters; a later version may add
        // fields after a `-`.
        if (version == 0 && bytes.len() != 55) || (bytes.len() > 55 && bytes[55] != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(&bytes[3..35], &mut trace_id)?;
        let mut span_id = [0u8; 8];
        hex_into(&bytes[36..52], &mut span_id)?;
        let flags = hex_byte(&bytes[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            // Only the sampled flag is defined; unknown bits are not
            // passed on (the specification's advice for version 00).
            flags: flags & 1,
            state: None,
        })
    }

    /// The `traceparent` value (version `00`).
    pub fn to_traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id.0);
        out.push('-');
        push_hex(&mut out, &self.span_id.0);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        out
    }

    /// Reads a B3 context: the single `b3` header
    /// (`{trace}-{span}[-{sampled}[-{parent}]]`) or the multi-header form
    /// (`X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`, `X-B3-Flags`). A
    /// 64-bit trace id is widened with zeros on the left, as B3 says.
    pub fn parse_b3(headers: &HeaderMap) -> Option<Self> {
        if let Some(single) = headers.get(B3_NAME).and_then(|v| v.to_str().ok()) {
            let mut parts = single.split('-');
            let trace = parts.next()?;
            let span = parts.next()?;
            let sampled = parts.next();
            return b3_context(trace, span, sampled, None);
        }
        let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        b3_context(
            text(B3_TRACE_ID)?,
            text(B3_SPAN_ID)?,
            text(B3_SAMPLED),
            text(B3_FLAGS),
        )
    }

    /// The caller's context: `traceparent` (with its `tracestate`) when
    /// valid, else B3, else none.
    pub fn extract(headers: &HeaderMap) -> Option<Self> {
        if headers.is_empty() {
            return None;
        }
        let mut values = headers.get_all(TRACEPARENT_NAME).iter();
        if let Some(first) = values.next() {
            // Two traceparent headers are invalid: ignore both.
            let parsed = match values.next() {
                None => first.to_str().ok().and_then(Self::parse_traceparent),
                Some(_) => None,
            };
            if let Some(mut context) = parsed {
                context.state = tracestate(headers);
                return Some(context);
            }
        }
        Self::parse_b3(headers)
    }

    /// Writes `traceparent` (and `tracestate`, when there is one) into
    /// `headers`, replacing what was there.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Ok(value) = HeaderValue::from_str(&self.to_traceparent()) {
            headers.insert(TRACEPARENT_NAME, value);
        }
        match &self.state {
            Some(state) => {
                headers.insert(TRACESTATE_NAME, state.clone());
            }
            None => {
                headers.remove(TRACESTATE_NAME);
            }
        }
    }
}

/// The `tracestate` header, kept when it is one header line of at most
/// 512 characters and at most 32 members, as the specification allows.
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut values = headers.get_all(TRACESTATE_NAME).iter();
    let value = values.next()?;
    if values.next().is_some() || value.len() > 512 {
        return None;
    }
    let text = value.to_str().ok()?;
    let members = text.split(',').filter(|m| !m.trim().is_empty()).count();
    let well_formed = text
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .all(|m| {
            m.split_once('=')
                .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
        });
    (members <= 32 && well_formed).then(|| value.clone())
}

fn b3_context(
    trace: &str,
    span: &str,
    sampled: Option<&str>,
    flags: Option<&str>,
) -> Option<TraceContext> {
    let mut trace_id = [0u8; 16];
    match trace.len() {
        32 => hex_into(trace.as_bytes(), &mut trace_id)?,
        16 => hex_into(trace.as_bytes(), &mut trace_id[8..])?,
        _ => return None,
    }
    let mut span_id = [0u8; 8];
    if span.len() != 16 {
        return None;
    }
    hex_into(span.as_bytes(), &mut span_id)?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    // `d` (debug) and flags 1 mean sampled; a missing decision defers to
    // us: sampled, as our own new traces are.
    let sampled = match (sampled, flags) {
        (_, Some("1")) => true,
        (Some("1" | "d" | "true"), _) => true,
        (Some("0" | "false"), _) => false,
        (Some(_), _) => return None,
        (None, _) => true,
    };
    Some(TraceContext {
        trace_id: TraceId(trace_id),
        span_id: SpanId(span_id),
        flags: sampled as u8,
        state: None,
    })
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        // Lowercase only: W3C forbids uppercase hex.
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(hex_nibble(pair[0])? << 4 | hex_nibble(pair[1])?)
}

fn hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
}

tokio::task_local! {
    /// The context of the span the task is in: set by the telemetry layer
    /// around the service it wraps, read by what that service calls (an
    /// outbound request made while serving an inbound one, an attempt of
    /// an outbound request).
    static CURRENT: Option<TraceContext>;
}

/// The context of the telemetry span the current task is in, if any: the
/// parent of the outbound requests it makes.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

/// Runs `future` with `context` as the [`current`] one.
pub fn scope<F: std::future::Future>(
    context: Option<TraceContext>,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<Option<TraceContext>, F> {
    CURRENT.scope(context, future)
}

/// Runs `f` with `context` as the [`current`] one.
pub(crate) fn sync_scope<R>(context: Option<TraceContext>, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(context, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let parsed = TraceContext::parse_traceparent(VALID).unwrap();
        assert_eq!(parsed.to_traceparent(), VALID);
        assert_eq!(
            parsed.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parsed.span_id.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(TraceContext::parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn later_versions_are_read_by_their_first_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-next";
        let parsed = TraceContext::parse_traceparent(later).unwrap();
        // Unknown flags are dropped.
        assert_eq!(parsed.flags, 1);
    }

    #[test]
    fn b3_single_and_multi() {
        let mut headers = HeaderMap::new();
        headers.insert(
            B3,
            HeaderValue::from_static("463ac35c9f6413ad-a2fb4a1d1a96d312-0"),
        );
        let single = TraceContext::parse_b3(&headers).unwrap();
        assert_eq!(
            single.trace_id.to_string(),
            "0000000000000000463ac35c9f6413ad"
        );
        assert!(!single.sampled());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-b3-traceid",
            HeaderValue::from_static("463ac35c9f6413ad48485a3953bb6124"),
        );
        headers.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
        headers.insert("x-b3-sampled", HeaderValue::from_static("1"));
        let multi = TraceContext::parse_b3(&headers).unwrap();
        assert_eq!(multi.span_id.to_string(), "a2fb4a1d1a96d312");
        assert!(multi.sampled());
        headers.insert("x-b3-sampled", HeaderValue::from_static("maybe"));
        assert!(TraceContext::parse_b3(&headers).is_none());
    }

    #[test]
    fn tracestate_travels_with_a_valid_traceparent() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(
            TRACESTATE,
            HeaderValue::from_static("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7"),
        );
        let context = TraceContext::extract(&headers).unwrap();
        let mut out = HeaderMap::new();
        context.child().inject(&mut out);
        assert_eq!(out[TRACESTATE], headers[TRACESTATE]);
        headers.insert(TRACESTATE, HeaderValue::from_static("no-equals-sign"));
        assert!(TraceContext::extract(&headers).unwrap().state.is_none());
    }

    #[test]
    fn two_traceparents_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(TraceContext::extract(&headers).is_none());
    }
}
