//! SPIFFE IDs and trust domains, parsed and validated per the SPIFFE ID
//! specification.

use std::fmt;
use std::str::FromStr;

/// The longest SPIFFE ID the specification allows, in bytes.
const MAX_ID_LEN: usize = 2048;
/// The longest trust domain name allowed, in bytes (a DNS name's limit).
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A SPIFFE trust domain: the authority part of a SPIFFE ID, such as
/// `example.org`.
///
/// Only lowercase letters, digits, `.`, `-` and `_` are allowed.
///
/// ```
/// use sinew::tls::TrustDomain;
///
/// let td: TrustDomain = "prod.example.org".parse().unwrap();
/// assert_eq!(td.as_str(), "prod.example.org");
/// assert!("Prod.example.org".parse::<TrustDomain>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Validates `name` as a trust domain.
    ///
    /// ```
    /// use sinew::tls::TrustDomain;
    ///
    /// assert!(TrustDomain::new("cluster.local").is_ok());
    /// assert_eq!(
    ///     TrustDomain::new("a:8443").unwrap_err().to_string(),
    ///     "invalid SPIFFE ID: the trust domain has a character other than a-z, 0-9, '.', '-', '_': ':'"
    /// );
    /// ```
    pub fn new(name: impl Into<String>) -> Result<Self, SpiffeIdError> {
        let name = name.into();
        check_trust_domain(&name)?;
        Ok(Self(name))
    }

    /// The trust domain's name.
    ///
    /// ```
    /// # use sinew::tls::TrustDomain;
    /// assert_eq!(TrustDomain::new("td").unwrap().as_str(), "td");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself, `spiffe://<name>`.
    ///
    /// ```
    /// # use sinew::tls::TrustDomain;
    /// let td = TrustDomain::new("example.org").unwrap();
    /// assert_eq!(td.id().to_string(), "spiffe://example.org");
    /// ```
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A SPIFFE ID: `spiffe://<trust-domain>/<path>`.
///
/// Sinew names a workload `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`
/// by default (see [`SpiffeId::workload`]), the scheme Istio and SPIRE's
/// Kubernetes registrar use, so that identities line up across meshes.
///
/// Parsing follows the SPIFFE ID specification: scheme `spiffe`, a
/// trust domain of lowercase letters, digits, `.`, `-` and `_`, path
/// segments of letters, digits, `.`, `-` and `_` that are neither empty
/// nor `.` nor `..`, no trailing slash, no query, fragment, port or user
/// info, at most 2048 bytes.
///
/// ```
/// use sinew::tls::SpiffeId;
///
/// let id: SpiffeId = "spiffe://example.org/ns/shop/sa/cart".parse().unwrap();
/// assert_eq!(id.trust_domain().as_str(), "example.org");
/// assert_eq!(id.path(), "/ns/shop/sa/cart");
/// assert_eq!(id.to_string(), "spiffe://example.org/ns/shop/sa/cart");
///
/// let err = "spiffe://example.org/ns//sa/cart".parse::<SpiffeId>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid SPIFFE ID: the path has an empty segment");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty, or `/`-prefixed segments.
    path: String,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    ///
    /// ```
    /// use sinew::tls::{SpiffeId, SpiffeIdError};
    ///
    /// assert!(SpiffeId::new("spiffe://example.org/web").is_ok());
    /// assert_eq!(
    ///     SpiffeId::new("https://example.org/web").unwrap_err(),
    ///     SpiffeIdError::WrongScheme
    /// );
    /// ```
    pub fn new(id: &str) -> Result<Self, SpiffeIdError> {
        if id.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if id.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(id.len()));
        }
        let rest = match id.split_once("://") {
            Some(("spiffe", rest)) => rest,
            _ => return Err(SpiffeIdError::WrongScheme),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(SpiffeIdError::UserInfo);
        }
        if authority.contains(':') {
            return Err(SpiffeIdError::Port);
        }
        if authority.contains('?') || path.contains('?') {
            return Err(SpiffeIdError::Query);
        }
        if authority.contains('#') || path.contains('#') {
            return Err(SpiffeIdError::Fragment);
        }
        check_trust_domain(authority)?;
        check_path(path)?;
        Ok(Self {
            trust_domain: TrustDomain(authority.to_owned()),
            path: path.to_owned(),
        })
    }

    /// Sinew's default workload identity:
    /// `spiffe://<trust_domain>/ns/<namespace>/sa/<service>`.
    ///
    /// `namespace` and `service` must each be a valid path segment
    /// (letters, digits, `.`, `-`, `_`; not `.` or `..`).
    ///
    /// ```
    /// use sinew::tls::{SpiffeId, TrustDomain};
    ///
    /// let td = TrustDomain::new("cluster.local").unwrap();
    /// let id = SpiffeId::workload(&td, "shop", "cart").unwrap();
    /// assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/cart");
    /// assert!(SpiffeId::workload(&td, "shop", "a/b").is_err());
    /// ```
    pub fn workload(
        trust_domain: &TrustDomain,
        namespace: &str,
        service: &str,
    ) -> Result<Self, SpiffeIdError> {
        let path = format!("/ns/{namespace}/sa/{service}");
        check_path(&path)?;
        // Four segments, all checked: a `/` inside either name would have
        // added a fifth.
        if path.split('/').count() != 5 {
            return Err(SpiffeIdError::BadPathCharacter('/'));
        }
        let id = Self {
            trust_domain: trust_domain.clone(),
            path,
        };
        let len = id.to_string().len();
        if len > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong(len));
        }
        Ok(id)
    }

    /// The trust domain.
    ///
    /// ```
    /// # use sinew::tls::SpiffeId;
    /// let id = SpiffeId::new("spiffe://td/x").unwrap();
    /// assert_eq!(id.trust_domain().as_str(), "td");
    /// ```
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, empty or starting with `/`.
    ///
    /// ```
    /// # use sinew::tls::SpiffeId;
    /// assert_eq!(SpiffeId::new("spiffe://td/x/y").unwrap().path(), "/x/y");
    /// assert_eq!(SpiffeId::new("spiffe://td").unwrap().path(), "");
    /// ```
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// What is wrong with a SPIFFE ID or trust domain.
///
/// ```
/// use sinew::tls::{SpiffeId, SpiffeIdError};
///
/// assert_eq!(SpiffeId::new("spiffe://td/a/").unwrap_err(), SpiffeIdError::TrailingSlash);
/// assert_eq!(SpiffeId::new("spiffe://td:1/a").unwrap_err(), SpiffeIdError::Port);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpiffeIdError {
    /// The ID is empty.
    Empty,
    /// Longer than 2048 bytes (the length).
    TooLong(usize),
    /// The scheme is not `spiffe://`.
    WrongScheme,
    /// The trust domain is missing.
    MissingTrustDomain,
    /// The trust domain is longer than 255 bytes.
    TrustDomainTooLong(usize),
    /// The trust domain has a character other than `a-z`, `0-9`, `.`, `-`, `_`.
    BadTrustDomainCharacter(char),
    /// The authority has user info (`user@`).
    UserInfo,
    /// The authority has a port.
    Port,
    /// The ID has a query (`?`).
    Query,
    /// The ID has a fragment (`#`).
    Fragment,
    /// A path segment is empty (`//`).
    EmptySegment,
    /// A path segment is `.` or `..`.
    DotSegment,
    /// The path ends with `/`.
    TrailingSlash,
    /// A path segment has a character other than letters, digits, `.`, `-`, `_`.
    BadPathCharacter(char),
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid SPIFFE ID: ")?;
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong(len) => write!(f, "{len} bytes, more than the 2048 allowed"),
            Self::WrongScheme => f.write_str("the scheme is not spiffe://"),
            Self::MissingTrustDomain => f.write_str("the trust domain is missing"),
            Self::TrustDomainTooLong(len) => {
                write!(
                    f,
                    "the trust domain has {len} bytes, more than the 255 allowed"
                )
            }
            Self::BadTrustDomainCharacter(c) => write!(
                f,
                "the trust domain has a character other than a-z, 0-9, '.', '-', '_': {c:?}"
            ),
            Self::UserInfo => f.write_str("it has user info (user@)"),
            Self::Port => f.write_str("it has a port"),
            Self::Query => f.write_str("it has a query (?)"),
            Self::Fragment => f.write_str("it has a fragment (#)"),
            Self::EmptySegment => f.write_str("the path has an empty segment"),
            Self::DotSegment => f.write_str("the path has a '.' or '..' segment"),
            Self::TrailingSlash => f.write_str("the path ends with '/'"),
            Self::BadPathCharacter(c) => write!(
                f,
                "the path has a character other than letters, digits, '.', '-', '_': {c:?}"
            ),
        }
    }
}

impl std::error::Error for SpiffeIdError {}

fn check_trust_domain(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong(name.len()));
    }
    match name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(c) => Err(SpiffeIdError::BadTrustDomainCharacter(c)),
        None => Ok(()),
    }
}

/// `path` is empty or `/`-prefixed.
fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        // `spiffe://td/` is a trailing slash too, not an empty segment.
        return Err(SpiffeIdError::TrailingSlash);
    }
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(SpiffeIdError::BadPathCharacter(c));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(id: &str) -> SpiffeIdError {
        match SpiffeId::new(id) {
            Ok(ok) => panic!("{id} parsed as {ok}"),
            Err(e) => e,
        }
    }

    #[test]
    fn valid_ids_round_trip() {
        for id in [
            "spiffe://example.org",
            "spiffe://example.org/a",
            "spiffe://a-b_c.9/Path.With-All_Chars/0",
            "spiffe://td/ns/default/sa/web",
        ] {
            assert_eq!(SpiffeId::new(id).unwrap().to_string(), id);
        }
    }

    #[test]
    fn each_rule_names_what_is_wrong() {
        use SpiffeIdError::*;
        assert_eq!(err(""), Empty);
        assert_eq!(err("http://td/a"), WrongScheme);
        assert_eq!(err("SPIFFE://td/a"), WrongScheme);
        assert_eq!(err("spiffe:/td/a"), WrongScheme);
        assert_eq!(err("spiffe:///a"), MissingTrustDomain);
        assert_eq!(err("spiffe://TD/a"), BadTrustDomainCharacter('T'));
        assert_eq!(err("spiffe://t d/a"), BadTrustDomainCharacter(' '));
        assert_eq!(err("spiffe://u@td/a"), UserInfo);
        assert_eq!(err("spiffe://td:443/a"), Port);
        assert_eq!(err("spiffe://td/a?x=1"), Query);
        assert_eq!(err("spiffe://td/a#f"), Fragment);
        assert_eq!(err("spiffe://td/a//b"), EmptySegment);
        assert_eq!(err("spiffe://td/a/./b"), DotSegment);
        assert_eq!(err("spiffe://td/a/.."), DotSegment);
        assert_eq!(err("spiffe://td/a/"), TrailingSlash);
        assert_eq!(err("spiffe://td/"), TrailingSlash);
        assert_eq!(err("spiffe://td/a%20b"), BadPathCharacter('%'));
        assert_eq!(err("spiffe://td/é"), BadPathCharacter('é'));
    }

    #[test]
    fn length_limits() {
        let long = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN));
        assert_eq!(err(&long), SpiffeIdError::TooLong(long.len()));
        let exactly = format!("spiffe://td/{}", "a".repeat(MAX_ID_LEN - 12));
        assert_eq!(exactly.len(), MAX_ID_LEN);
        assert!(SpiffeId::new(&exactly).is_ok());
        let td = "a".repeat(256);
        assert_eq!(
            TrustDomain::new(td).unwrap_err(),
            SpiffeIdError::TrustDomainTooLong(256)
        );
    }

    #[test]
    fn workload_ids_are_checked() {
        let td = TrustDomain::new("td").unwrap();
        assert_eq!(
            SpiffeId::workload(&td, "ns1", "svc").unwrap().to_string(),
            "spiffe://td/ns/ns1/sa/svc"
        );
        assert_eq!(
            SpiffeId::workload(&td, "", "svc").unwrap_err(),
            SpiffeIdError::EmptySegment
        );
        assert_eq!(
            SpiffeId::workload(&td, "..", "svc").unwrap_err(),
            SpiffeIdError::DotSegment
        );
        assert_eq!(
            SpiffeId::workload(&td, "a/b", "svc").unwrap_err(),
            SpiffeIdError::BadPathCharacter('/')
        );
        assert_eq!(
            SpiffeId::workload(&td, "ns", "x?y").unwrap_err(),
            SpiffeIdError::BadPathCharacter('?')
        );
    }
}
