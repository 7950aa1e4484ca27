//! Permissions and principals as RBAC trees (gRFC A41), and what they are
//! evaluated against.

use super::IpRange;
use http::HeaderMap;
use regex::Regex;
use std::net::SocketAddr;

/// What a request is evaluated as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a http::Method,
    /// The path without the query.
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
    /// The caller's SPIFFE ID, over mutual TLS.
    pub(crate) peer: Option<&'a str>,
    /// The caller's address (the TCP peer).
    pub(crate) source: Option<SocketAddr>,
    /// The server's address the request came to.
    pub(crate) destination: Option<SocketAddr>,
}

/// A string condition (RBAC's `StringMatcher`). Regexes are anchored.
#[derive(Debug, Clone)]
pub(crate) enum StringMatch {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Regex(Regex),
}

impl StringMatch {
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(s, false) => value == s,
            Self::Exact(s, true) => value.eq_ignore_ascii_case(s),
            Self::Prefix(s, false) => value.starts_with(s.as_str()),
            Self::Prefix(s, true) => value
                .get(..s.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s)),
            Self::Suffix(s, false) => value.ends_with(s.as_str()),
            Self::Suffix(s, true) => value
                .len()
                .checked_sub(s.len())
                .and_then(|at| value.get(at..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(s)),
            Self::Contains(s, false) => value.contains(s.as_str()),
            Self::Contains(s, true) => value.to_ascii_lowercase().contains(&s.to_ascii_lowercase()),
            Self::Regex(r) => r.is_match(value),
        }
    }
}

/// A header condition (RBAC's `HeaderMatcher`), `invert` applied.
#[derive(Debug, Clone)]
pub(crate) struct HeaderCondition {
    pub(crate) name: http::HeaderName,
    /// `None`: the header is present.
    pub(crate) value: Option<StringMatch>,
    pub(crate) invert: bool,
}

impl HeaderCondition {
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        let found = match (&self.value, values.next()) {
            (None, first) => first.is_some(),
            (Some(_), None) => false,
            (Some(matcher), Some(first)) => match values.next() {
                // One value, the common case: matched as it is.
                None => first.to_str().is_ok_and(|v| matcher.matches(v)),
                // Several values are matched joined by commas, as gRPC
                // and Envoy do.
                Some(second) => {
                    let mut joined = String::new();
                    for v in [first, second].into_iter().chain(values) {
                        if let Ok(v) = v.to_str() {
                            if !joined.is_empty() {
                                joined.push(',');
                            }
                            joined.push_str(v);
                        }
                    }
                    matcher.matches(&joined)
                }
            },
        };
        found != self.invert
    }
}

/// What a request is (RBAC's `Permission`).
#[derive(Debug, Clone)]
pub(crate) enum Permission {
    Any,
    And(Vec<Permission>),
    Or(Vec<Permission>),
    Not(Box<Permission>),
    Header(HeaderCondition),
    Method(http::Method),
    Path(StringMatch),
    DestinationIp(IpRange),
    DestinationPort(u16),
}

impl Permission {
    pub(crate) fn matches(&self, request: &RequestView<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::And(all) => all.iter().all(|p| p.matches(request)),
            Self::Or(any) => any.iter().any(|p| p.matches(request)),
            Self::Not(p) => !p.matches(request),
            Self::Header(h) => h.matches(request.headers),
            Self::Method(m) => request.method == m,
            Self::Path(s) => s.matches(request.path),
            Self::DestinationIp(range) => {
                request.destination.is_some_and(|a| range.contains(a.ip()))
            }
            Self::DestinationPort(port) => request.destination.is_some_and(|a| a.port() == *port),
        }
    }
}

/// Who sends the request (RBAC's `Principal`).
#[derive(Debug, Clone)]
pub(crate) enum Principal {
    Any,
    And(Vec<Principal>),
    Or(Vec<Principal>),
    Not(Box<Principal>),
    /// A caller with a verified certificate whose SPIFFE ID matches
    /// (`None`: any such caller).
    Authenticated(Option<StringMatch>),
    SourceIp(IpRange),
    Header(HeaderCondition),
    Path(StringMatch),
}

impl Principal {
    pub(crate) fn matches(&self, request: &RequestView<'_>) -> bool {
        match self {
            Self::Any => true,
            Self::And(all) => all.iter().all(|p| p.matches(request)),
            Self::Or(any) => any.iter().any(|p| p.matches(request)),
            Self::Not(p) => !p.matches(request),
            Self::Authenticated(None) => request.peer.is_some(),
            Self::Authenticated(Some(name)) => request.peer.is_some_and(|id| name.matches(id)),
            Self::SourceIp(range) => request.source.is_some_and(|a| range.contains(a.ip())),
            Self::Header(h) => h.matches(request.headers),
            Self::Path(s) => s.matches(request.path),
        }
    }
}
