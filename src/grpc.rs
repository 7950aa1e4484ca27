//! The small part of gRPC that HTTP-level layers need: recognising gRPC
//! traffic, reading `grpc-status`, and answering with a gRPC error.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// The `grpc-status` header (or trailer).
pub const GRPC_STATUS: &str = "grpc-status";
/// The `grpc-message` header (or trailer).
pub const GRPC_MESSAGE: &str = "grpc-message";

/// A gRPC status code, as carried in `grpc-status`.
///
/// ```
/// use sinew::grpc::Code;
/// assert_eq!(Code::from_header_value(b"14"), Some(Code::UNAVAILABLE));
/// assert!(Code::OK.is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(u8);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl Code {
            $($(#[$doc])* pub const $name: Code = Code($value);)*

            /// The code's canonical name, e.g. `UNAVAILABLE`.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($value => stringify!($name),)*
                    _ => "UNKNOWN",
                }
            }

            /// The code with this name, in any case, with `-` or `_`
            /// between words: `UNAVAILABLE`, `resource-exhausted` and
            /// `Deadline_Exceeded` are all understood.
            ///
            /// ```
            /// use sinew::grpc::Code;
            ///
            /// assert_eq!(Code::from_name("resource-exhausted"), Some(Code::RESOURCE_EXHAUSTED));
            /// assert_eq!(Code::from_name("nope"), None);
            /// ```
            pub fn from_name(name: &str) -> Option<Code> {
                let canonical = name.trim().to_ascii_uppercase().replace('-', "_");
                match canonical.as_str() {
                    $(stringify!($name) => Some(Code($value)),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    /// Not an error.
    OK = 0;
    /// The operation was cancelled, typically by the caller.
    CANCELLED = 1;
    /// Unknown error.
    UNKNOWN = 2;
    /// The client specified an invalid argument.
    INVALID_ARGUMENT = 3;
    /// The deadline expired before the operation could complete.
    DEADLINE_EXCEEDED = 4;
    /// Some requested entity was not found.
    NOT_FOUND = 5;
    /// The entity a client attempted to create already exists.
    ALREADY_EXISTS = 6;
    /// The caller does not have permission.
    PERMISSION_DENIED = 7;
    /// Some resource has been exhausted (quota, limits).
    RESOURCE_EXHAUSTED = 8;
    /// The system is not in a state required for the operation.
    FAILED_PRECONDITION = 9;
    /// The operation was aborted.
    ABORTED = 10;
    /// The operation was attempted past the valid range.
    OUT_OF_RANGE = 11;
    /// The operation is not implemented.
    UNIMPLEMENTED = 12;
    /// Internal error.
    INTERNAL = 13;
    /// The service is currently unavailable.
    UNAVAILABLE = 14;
    /// Unrecoverable data loss or corruption.
    DATA_LOSS = 15;
    /// The request lacks valid authentication credentials.
    UNAUTHENTICATED = 16;
}

impl Code {
    /// Parses the decimal value of a `grpc-status` header. Values outside
    /// the defined range are reported as [`Code::UNKNOWN`], as gRPC does.
    pub fn from_header_value(value: &[u8]) -> Option<Code> {
        if value.is_empty() || value.len() > 3 {
            return None;
        }
        let mut n: u16 = 0;
        for &b in value {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u16::from(b - b'0');
        }
        Some(if n <= 16 {
            Code(n as u8)
        } else {
            Code::UNKNOWN
        })
    }

    /// The numeric value of the code.
    pub const fn value(self) -> u8 {
        self.0
    }

    /// True for [`Code::OK`].
    pub fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// Reads `grpc-status` from a header (or trailer) map.
    pub fn from_headers(headers: &HeaderMap) -> Option<Code> {
        headers
            .get(GRPC_STATUS)
            .and_then(|v| Code::from_header_value(v.as_bytes()))
    }

    fn header_value(self) -> HeaderValue {
        const VALUES: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        HeaderValue::from_static(VALUES[usize::from(self.0.min(16))])
    }
}

/// True when the headers describe gRPC traffic (`content-type:
/// application/grpc`, with or without a `+proto` style suffix).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Builds a trailers-only gRPC error response: HTTP 200 with `grpc-status`
/// and `grpc-message` in the headers, and an empty body.
pub fn error_response<B: Default>(code: Code, message: &'static str) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS, code.header_value());
    headers.insert(GRPC_MESSAGE, HeaderValue::from_static(message));
    response
}

/// Builds the error response that fits the request: a gRPC trailers-only
/// response with `code` when the request is gRPC, otherwise an empty HTTP
/// response with `status`.
pub(crate) fn reject<B: Default>(
    grpc: bool,
    status: StatusCode,
    code: Code,
    message: &'static str,
) -> Response<B> {
    if grpc {
        error_response(code, message)
    } else {
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_values() {
        assert_eq!(Code::from_header_value(b"0"), Some(Code::OK));
        assert_eq!(Code::from_header_value(b"16"), Some(Code::UNAUTHENTICATED));
        assert_eq!(Code::from_header_value(b"99"), Some(Code::UNKNOWN));
        assert_eq!(Code::from_header_value(b""), None);
        assert_eq!(Code::from_header_value(b"1x"), None);
        assert_eq!(Code::from_header_value(b"1234"), None);
        assert_eq!(Code::UNAVAILABLE.name(), "UNAVAILABLE");
    }

    #[test]
    fn builds_trailers_only_errors() {
        let response: Response<()> = error_response(Code::DEADLINE_EXCEEDED, "deadline exceeded");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            Code::from_headers(response.headers()),
            Some(Code::DEADLINE_EXCEEDED)
        );
        assert!(is_grpc(response.headers()));
    }
}
