use super::{Classify, Outcome, errors::never_processed};
use crate::grpc::{Code, is_grpc};
use http::{HeaderMap, StatusCode};

/// The default classifier.
///
/// - HTTP: a status of 500 or more is a failure; 502, 503 and 504 are
///   retryable failures.
/// - gRPC: `grpc-status` decides. `UNKNOWN`, `DEADLINE_EXCEEDED`,
///   `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE` and `DATA_LOSS` are
///   failures; `UNAVAILABLE` is retryable. Other codes (`NOT_FOUND`,
///   `INVALID_ARGUMENT`, ...) describe the request, not the server's health,
///   and count as successes. A gRPC body that ends without trailers is a
///   retryable failure.
/// - Errors: see [`never_processed`](super::never_processed) for the ones
///   that prove the request was not processed; any other error is a
///   retryable failure (retried only for idempotent requests).
///
/// The sets can be changed with the builder methods:
///
/// ```
/// use http::StatusCode;
/// use sinew::classify::StatusClassifier;
/// use sinew::grpc::Code;
///
/// let classifier = StatusClassifier::default()
///     .retry_on_status(StatusCode::INTERNAL_SERVER_ERROR)
///     .retry_on_grpc(Code::RESOURCE_EXHAUSTED);
/// # let _ = classifier;
/// ```
#[derive(Clone, Debug)]
pub struct StatusClassifier {
    retryable_statuses: u128,
    failure_grpc: u32,
    retryable_grpc: u32,
    retry_errors: bool,
}

const fn grpc_bit(code: Code) -> u32 {
    1 << code.value()
}

fn status_bit(status: StatusCode) -> u128 {
    match status.as_u16().checked_sub(500) {
        Some(offset) if offset < 128 => 1 << offset,
        _ => 0,
    }
}

impl Default for StatusClassifier {
    fn default() -> Self {
        Self {
            retryable_statuses: status_bit(StatusCode::BAD_GATEWAY)
                | status_bit(StatusCode::SERVICE_UNAVAILABLE)
                | status_bit(StatusCode::GATEWAY_TIMEOUT),
            failure_grpc: grpc_bit(Code::UNKNOWN)
                | grpc_bit(Code::DEADLINE_EXCEEDED)
                | grpc_bit(Code::RESOURCE_EXHAUSTED)
                | grpc_bit(Code::INTERNAL)
                | grpc_bit(Code::UNAVAILABLE)
                | grpc_bit(Code::DATA_LOSS),
            retryable_grpc: grpc_bit(Code::UNAVAILABLE),
            retry_errors: true,
        }
    }
}

impl StatusClassifier {
    /// Also retries responses with this HTTP status (must be 500 or more).
    pub fn retry_on_status(mut self, status: StatusCode) -> Self {
        self.retryable_statuses |= status_bit(status);
        self
    }

    /// Stops retrying responses with this HTTP status.
    pub fn no_retry_on_status(mut self, status: StatusCode) -> Self {
        self.retryable_statuses &= !status_bit(status);
        self
    }

    /// Also treats this gRPC code as a retryable failure.
    pub fn retry_on_grpc(mut self, code: Code) -> Self {
        self.failure_grpc |= grpc_bit(code);
        self.retryable_grpc |= grpc_bit(code);
        self
    }

    /// Counts this gRPC code as a failure (without making it retryable).
    pub fn fail_on_grpc(mut self, code: Code) -> Self {
        self.failure_grpc |= grpc_bit(code);
        self
    }

    /// Whether transport errors that may have reached the server are
    /// retryable (for idempotent requests). Default: true.
    pub fn retry_errors(mut self, retry: bool) -> Self {
        self.retry_errors = retry;
        self
    }

    fn classify_grpc(&self, code: Code) -> Outcome {
        let bit = grpc_bit(code);
        if self.failure_grpc & bit == 0 {
            Outcome::Success
        } else {
            Outcome::Failure {
                retryable: self.retryable_grpc & bit != 0,
            }
        }
    }
}

impl Classify for StatusClassifier {
    fn classify_response(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
        if is_grpc(headers) {
            return Code::from_headers(headers).map(|code| self.classify_grpc(code));
        }
        if status.is_server_error() {
            Some(Outcome::Failure {
                retryable: self.retryable_statuses & status_bit(status) != 0,
            })
        } else {
            Some(Outcome::Success)
        }
    }

    fn classify_trailers(&self, trailers: Option<&HeaderMap>) -> Outcome {
        match trailers.and_then(Code::from_headers) {
            Some(code) => self.classify_grpc(code),
            None => Outcome::Failure { retryable: true },
        }
    }

    fn classify_error(&self, error: &(dyn std::error::Error + 'static)) -> Outcome {
        if never_processed(error) {
            Outcome::NotProcessed
        } else {
            Outcome::Failure {
                retryable: self.retry_errors,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn grpc_headers(code: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        if let Some(code) = code {
            headers.insert("grpc-status", HeaderValue::from_static(code));
        }
        headers
    }

    #[test]
    fn http_statuses() {
        let c = StatusClassifier::default();
        let h = HeaderMap::new();
        assert_eq!(
            c.classify_response(StatusCode::OK, &h),
            Some(Outcome::Success)
        );
        assert_eq!(
            c.classify_response(StatusCode::NOT_FOUND, &h),
            Some(Outcome::Success)
        );
        assert_eq!(
            c.classify_response(StatusCode::INTERNAL_SERVER_ERROR, &h),
            Some(Outcome::Failure { retryable: false })
        );
        assert_eq!(
            c.classify_response(StatusCode::SERVICE_UNAVAILABLE, &h),
            Some(Outcome::Failure { retryable: true })
        );
        let c = c.retry_on_status(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            c.classify_response(StatusCode::INTERNAL_SERVER_ERROR, &h),
            Some(Outcome::Failure { retryable: true })
        );
    }

    #[test]
    fn grpc_status_in_headers_or_trailers() {
        let c = StatusClassifier::default();
        assert_eq!(
            c.classify_response(StatusCode::OK, &grpc_headers(Some("14"))),
            Some(Outcome::Failure { retryable: true })
        );
        assert_eq!(
            c.classify_response(StatusCode::OK, &grpc_headers(Some("5"))),
            Some(Outcome::Success)
        );
        assert_eq!(
            c.classify_response(StatusCode::OK, &grpc_headers(None)),
            None
        );
        assert_eq!(
            c.classify_trailers(Some(&grpc_headers(Some("13")))),
            Outcome::Failure { retryable: false }
        );
        assert_eq!(
            c.classify_trailers(Some(&grpc_headers(Some("0")))),
            Outcome::Success
        );
        assert_eq!(
            c.classify_trailers(None),
            Outcome::Failure { retryable: true }
        );
    }
}
