//! Checks on the command line's values. Clap puts the flag's name in front
//! of each error: `invalid value 'x' for '--count <N>': ...`.

use std::time::Duration;

/// The default of `--max-body-bytes`: 4 MiB, tonic's own default for a
/// gRPC message.
pub(crate) const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// The longest `--wait`: a day. Longer waits overflow the clocks' arithmetic
/// and are never meant.
const MAX_WAIT_SECONDS: u64 = 24 * 60 * 60;

/// The most requests in flight at once: each is a task, and a typo with
/// more zeroes should not exhaust memory.
const MAX_CONCURRENCY: usize = 10_000;

/// Bytes given in hex.
#[derive(Clone, Debug)]
pub(crate) struct HexBytes(pub(crate) Vec<u8>);

/// Hex digits, two a byte, upper or lower case.
pub(crate) fn hex(text: &str) -> Result<HexBytes, String> {
    // Checked character by character first: slicing a string with non-ASCII
    // characters by byte pairs would split one.
    if let Some((at, c)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!("`{c}` (at {}) is not a hex digit", at + 1));
    }
    if !text.len().is_multiple_of(2) {
        return Err("an even number of hex digits is needed".to_owned());
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                .ok_or_else(|| "not hex".to_owned())
        })
        .collect::<Result<_, _>>()
        .map(HexBytes)
}

/// A whole number, at least 1.
pub(crate) fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".to_owned()),
    }
}

/// A whole number from 1 to [`MAX_CONCURRENCY`].
pub(crate) fn concurrency(text: &str) -> Result<usize, String> {
    let n = at_least_one(text)?;
    if n > MAX_CONCURRENCY {
        return Err(format!("must be at most {MAX_CONCURRENCY}"));
    }
    Ok(n)
}

/// Whole seconds, from 1 to a day.
pub(crate) fn wait(text: &str) -> Result<Duration, String> {
    let seconds: u64 = text
        .parse()
        .map_err(|_| "not a whole number of seconds".to_owned())?;
    if !(1..=MAX_WAIT_SECONDS).contains(&seconds) {
        return Err(format!("must be from 1 to {MAX_WAIT_SECONDS} seconds"));
    }
    Ok(Duration::from_secs(seconds))
}

/// A CA trust domain, as the control plane checks it.
pub(crate) fn trust_domain(text: &str) -> Result<String, String> {
    sinew_control_plane::ca::TrustDomain::new(text).map(|td| td.as_str().to_owned())
}

/// A leaf lifetime such as `24h` or `90m`, within the CA's bounds.
pub(crate) fn leaf_ttl(text: &str) -> Result<Duration, String> {
    use sinew_control_plane::ca::{MAX_LEAF_TTL, MIN_LEAF_TTL};
    let ttl = humantime::parse_duration(text).map_err(|e| format!("not a duration ({e})"))?;
    if !(MIN_LEAF_TTL..=MAX_LEAF_TTL).contains(&ttl) {
        return Err("must be from 1m to 30d".to_owned());
    }
    Ok(ttl)
}

/// A control plane's address: `http://host:port` or `https://host:port`.
pub(crate) fn control_plane_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("not a URL ({e}); one like http://127.0.0.1:18000 is needed"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => Ok(text.to_owned()),
        _ => Err("an http:// or https:// URL with a host is needed".to_owned()),
    }
}

/// A service name that can stand as a request's host.
pub(crate) fn service(text: &str) -> Result<String, String> {
    match text.parse::<http::uri::Authority>() {
        Ok(authority) if authority.as_str() == text && !text.contains('@') => Ok(text.to_owned()),
        _ => Err("not a service name (letters, digits, `.`, `-`, `_` and a :port)".to_owned()),
    }
}

/// An HTTP request path, with its query if any.
pub(crate) fn request_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err("a path starts with `/`".to_owned());
    }
    text.parse::<http::uri::PathAndQuery>()
        .map(|_| text.to_owned())
        .map_err(|e| format!("not a request path: {e}"))
}

/// A gRPC method: `/package.Service/Method`.
pub(crate) fn grpc_method(text: &str) -> Result<http::uri::PathAndQuery, String> {
    let well_formed = text
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(service, method)| {
            !service.is_empty() && !method.is_empty() && !method.contains(['/', '?'])
        });
    if !well_formed {
        return Err("a method path like /package.Service/Method is needed".to_owned());
    }
    text.parse().map_err(|e| format!("not a method path: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_takes_pairs_of_digits_and_names_the_first_bad_character() {
        assert_eq!(hex("0a03FF").map(|h| h.0), Ok(vec![0x0a, 0x03, 0xff]));
        assert_eq!(hex("").map(|h| h.0), Ok(vec![]));
        assert_eq!(
            hex("aéb").map(|h| h.0),
            Err("`é` (at 2) is not a hex digit".to_owned())
        );
        assert_eq!(
            hex("abc").map(|h| h.0),
            Err("an even number of hex digits is needed".to_owned())
        );
        assert!(hex("+1").is_err());
    }

    #[test]
    fn numbers_waits_and_names_are_bounded() {
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("-1").is_err());
        assert!(concurrency("10001").is_err());
        assert_eq!(wait("2"), Ok(Duration::from_secs(2)));
        assert!(wait("0").is_err());
        assert!(wait("18446744073709551615").is_err());
        assert!(control_plane_url("http://127.0.0.1:18000").is_ok());
        assert!(control_plane_url("not a url").is_err());
        assert!(control_plane_url("127.0.0.1:18000").is_err());
        assert_eq!(leaf_ttl("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(leaf_ttl("1m"), Ok(Duration::from_secs(60)));
        assert!(leaf_ttl("59s").is_err());
        assert!(leaf_ttl("31d").is_err());
        assert!(leaf_ttl("soon").is_err());
        assert!(trust_domain("cluster.local").is_ok());
        assert!(trust_domain("Cluster").is_err());
        assert!(service("reviews").is_ok());
        assert!(service("reviews.default:8080").is_ok());
        assert!(service("a b").is_err());
        assert!(service("a/b").is_err());
        assert!(service("user@host").is_err());
        assert!(request_path("/a?b=1").is_ok());
        assert!(request_path("a").is_err());
        assert!(grpc_method("/a.B/C").is_ok());
        assert!(grpc_method("a.B/C").is_err());
        assert!(grpc_method("/a.B").is_err());
        assert!(grpc_method("/a.B/C/D").is_err());
    }
}
