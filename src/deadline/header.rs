use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// gRPC's deadline header.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Sinew's deadline header for plain HTTP: the remaining budget in whole
/// milliseconds.
pub const SINEW_TIMEOUT_MS: HeaderName = HeaderName::from_static("sinew-timeout-ms");

/// Parses a `grpc-timeout` value: 1 to 8 ASCII digits followed by one of
/// `H` (hours), `M` (minutes), `S` (seconds), `m`, `u` or `n`.
///
/// ```
/// use std::time::Duration;
/// use sinew::deadline::parse_grpc_timeout;
/// assert_eq!(parse_grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(b"250"), None);
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    let n = parse_digits(digits, 8)?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Encodes a budget as a `grpc-timeout` value, in the finest unit that fits
/// gRPC's 8-digit limit, rounding down.
///
/// ```
/// use std::time::Duration;
/// use sinew::deadline::encode_grpc_timeout;
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(1500)), "1500000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(3600)), "3600000m");
/// ```
pub fn encode_grpc_timeout(budget: Duration) -> HeaderValue {
    const MAX: u128 = 99_999_999;
    let (value, unit) = if budget.as_nanos() <= MAX {
        (budget.as_nanos(), 'n')
    } else if budget.as_micros() <= MAX {
        (budget.as_micros(), 'u')
    } else if budget.as_millis() <= MAX {
        (budget.as_millis(), 'm')
    } else if u128::from(budget.as_secs()) <= MAX {
        (u128::from(budget.as_secs()), 'S')
    } else if u128::from(budget.as_secs() / 60) <= MAX {
        (u128::from(budget.as_secs() / 60), 'M')
    } else {
        (u128::from((budget.as_secs() / 3600).min(99_999_999)), 'H')
    };
    header_value(format_args!("{value}{unit}"))
}

pub(crate) fn encode_millis(budget: Duration) -> HeaderValue {
    header_value(format_args!("{}", budget.as_millis()))
}

fn header_value(args: std::fmt::Arguments<'_>) -> HeaderValue {
    // Digits and a unit letter are always a valid header value.
    HeaderValue::try_from(args.to_string()).unwrap_or(HeaderValue::from_static("0"))
}

/// The budget a request carries in its headers: `grpc-timeout` first, then
/// `sinew-timeout-ms`. A malformed value is ignored, as gRPC does.
pub(crate) fn budget_from_headers(headers: &HeaderMap) -> Option<Duration> {
    if let Some(v) = headers.get(GRPC_TIMEOUT)
        && let Some(d) = parse_grpc_timeout(v.as_bytes())
    {
        return Some(d);
    }
    let v = headers.get(SINEW_TIMEOUT_MS)?;
    parse_digits(v.as_bytes(), 19).map(Duration::from_millis)
}

fn parse_digits(digits: &[u8], max_len: usize) -> Option<u64> {
    if digits.is_empty() || digits.len() > max_len {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(7),
            Duration::from_millis(1),
            Duration::from_millis(99_999),
            Duration::from_secs(86_400),
            Duration::from_secs(200_000_000),
        ] {
            let encoded = encode_grpc_timeout(d);
            let decoded = parse_grpc_timeout(encoded.as_bytes()).unwrap_or_default();
            assert!(decoded <= d, "{d:?} -> {encoded:?} -> {decoded:?}");
            assert!(encoded.len() <= 9);
        }
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"12x"), None);
        assert_eq!(parse_grpc_timeout(b"S"), None);
    }

    #[test]
    fn reads_either_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(budget_from_headers(&headers), None);
        headers.insert(SINEW_TIMEOUT_MS, HeaderValue::from_static("1200"));
        assert_eq!(
            budget_from_headers(&headers),
            Some(Duration::from_millis(1200))
        );
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("5S"));
        assert_eq!(budget_from_headers(&headers), Some(Duration::from_secs(5)));
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("bogus"));
        assert_eq!(
            budget_from_headers(&headers),
            Some(Duration::from_millis(1200))
        );
        headers.insert(SINEW_TIMEOUT_MS, HeaderValue::from_static("-1"));
        assert_eq!(budget_from_headers(&headers), None);
    }
}
