//! The decision report's short form, returned in a response header to a
//! caller who asks for it, where the service's configuration allows it
//! (`services.<name>.debug_header: true`).

use super::{AttemptResult, DecisionReport};
use http::HeaderValue;
use http::header::HeaderName;
use std::fmt::Write;

/// The request header that asks for the short form: `sinew-debug: 1`.
/// Honoured only for services whose configuration sets `debug_header`;
/// elsewhere it is ignored, so that a caller cannot learn the mesh's
/// topology from it.
pub const DEBUG_REQUEST_HEADER: HeaderName = HeaderName::from_static("sinew-debug");

/// The response header that carries the short form, e.g.
/// `v=7; route=0; cluster=reviews-v2; attempts=10.0.0.5:8080:503:12,10.0.0.6:8080:200:3`
/// (each attempt as endpoint, status or outcome, milliseconds).
pub const DECISION_RESPONSE_HEADER: HeaderName = HeaderName::from_static("sinew-decision");

impl DecisionReport {
    /// The short form: version, route, cluster, and each attempt as
    /// `endpoint:status:ms` (`-` for no endpoint; an outcome word such as
    /// `cancelled`, `refused` or `per-try-timeout` in place of a status).
    pub fn short_form(&self) -> String {
        let mut out = String::with_capacity(64 + 32 * self.attempt_count());
        let _ = write!(
            out,
            "v={}; route={}; cluster={}; attempts=",
            self.version, self.route, self.cluster
        );
        for (i, a) in self.attempts().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match a.endpoint {
                Some(endpoint) => {
                    let _ = write!(out, "{endpoint}");
                }
                None => out.push('-'),
            }
            let _ = match a.result {
                AttemptResult::Status(s) => write!(out, ":{}", s.as_u16()),
                AttemptResult::Refused(_) => write!(out, ":refused"),
                other => write!(out, ":{other}"),
            };
            let ms = a.duration.map_or(0, |d| d.as_millis());
            let _ = write!(out, ":{ms}");
        }
        out
    }

    /// The short form as a header value (names that cannot go in a header
    /// are left out of it rather than failing the response).
    pub fn short_header(&self) -> Option<HeaderValue> {
        HeaderValue::try_from(self.short_form()).ok()
    }
}
