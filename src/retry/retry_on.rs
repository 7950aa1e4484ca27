use crate::classify::{Classify, Outcome};
use crate::error::ConfigError;
use crate::grpc::{Code, is_grpc};
use http::{HeaderMap, StatusCode};

/// Which failures a route retries, in place of the classifier's choice
/// (Envoy's `retry_on`, gRPC's `retryableStatusCodes`).
///
/// A failure that proves the request was never processed (connect error,
/// refused stream, local rejection) is retried whatever this says, as
/// retrying it cannot repeat a side effect. Whether a response is a
/// failure at all (for the statistics and the other layers) is still the
/// classifier's call; this only says which ones are worth another attempt.
///
/// ```
/// use sinew::retry::{RetryConfig, RetryOn};
///
/// let config = RetryConfig {
///     retry_on: Some(RetryOn {
///         statuses: vec![409, 503],
///         grpc: vec!["unavailable".into(), "resource-exhausted".into()],
///         errors: true,
///     }),
///     ..RetryConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RetryOn {
    /// HTTP statuses that are retried, from 400 to 599.
    pub statuses: Vec<u16>,
    /// gRPC status codes that are retried, by name (`UNAVAILABLE`,
    /// `resource-exhausted`, ...; see [`Code::from_name`]).
    pub grpc: Vec<String>,
    /// Retry errors after which the request may have reached the server:
    /// resets, broken connections, an attempt cut by `per_try_timeout`.
    /// Default: false. An attempt cut by `per_try_timeout` is also retried
    /// when `statuses` holds 504, as Envoy treats it as a gateway timeout.
    pub errors: bool,
}

impl RetryOn {
    /// Checks the statuses and code names, naming the entry that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rules().map(drop)
    }

    /// The conditions in the form the layer checks them in.
    pub(super) fn rules(&self) -> Result<Rules, ConfigError> {
        let mut statuses = [0u128; 2];
        for (i, &status) in self.statuses.iter().enumerate() {
            if !(400..=599).contains(&status) {
                return Err(ConfigError::new(
                    format!("statuses[{i}]"),
                    format!("{status} is not an HTTP status from 400 to 599"),
                ));
            }
            let bit = usize::from(status - 400);
            statuses[bit / 128] |= 1 << (bit % 128);
        }
        let mut grpc = 0u32;
        for (i, name) in self.grpc.iter().enumerate() {
            let Some(code) = Code::from_name(name) else {
                return Err(ConfigError::new(
                    format!("grpc[{i}]"),
                    format!("`{name}` is not a gRPC status code name"),
                ));
            };
            grpc |= 1 << code.value();
        }
        Ok(Rules {
            statuses,
            grpc,
            errors: self.errors,
        })
    }
}

/// [`RetryOn`] as bit sets, checked on every response.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rules {
    /// Bit `n` is status `400 + n`.
    statuses: [u128; 2],
    grpc: u32,
    errors: bool,
}

impl Rules {
    fn status(&self, status: StatusCode) -> bool {
        match status.as_u16().checked_sub(400) {
            Some(bit) if bit < 200 => {
                let bit = usize::from(bit);
                self.statuses[bit / 128] & (1 << (bit % 128)) != 0
            }
            _ => false,
        }
    }

    /// The outcome of a response head for the retry decision.
    pub(super) fn classify_response<C: Classify>(
        &self,
        classifier: &C,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Outcome {
        let retryable = if is_grpc(headers) {
            match Code::from_headers(headers) {
                Some(code) => self.grpc & (1 << code.value()) != 0,
                // Streaming, so committed.
                None => return Outcome::Success,
            }
        } else {
            self.status(status)
        };
        if retryable {
            return Outcome::Failure { retryable: true };
        }
        match classifier.classify_response(status, headers) {
            Some(Outcome::Failure { .. }) => Outcome::Failure { retryable: false },
            Some(other) => other,
            None => Outcome::Success,
        }
    }

    /// The outcome of an error for the retry decision.
    pub(super) fn classify_error<C: Classify>(
        &self,
        classifier: &C,
        error: &(dyn std::error::Error + 'static),
    ) -> Outcome {
        match classifier.classify_error(error) {
            Outcome::Failure { .. } => Outcome::Failure {
                retryable: self.errors
                    || (error.is::<super::AttemptTimedOut>()
                        && self.status(StatusCode::GATEWAY_TIMEOUT)),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::StatusClassifier;
    use http::HeaderValue;

    fn rules(on: RetryOn) -> Rules {
        on.rules().unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn statuses_codes_and_errors_decide_what_is_retried() {
        let c = StatusClassifier::default();
        let r = rules(RetryOn {
            statuses: vec![409, 500],
            grpc: vec!["Resource_Exhausted".into()],
            errors: false,
        });
        let none = HeaderMap::new();
        let http =
            |s: u16| r.classify_response(&c, StatusCode::from_u16(s).unwrap_or_default(), &none);
        assert_eq!(http(409), Outcome::Failure { retryable: true });
        assert_eq!(http(500), Outcome::Failure { retryable: true });
        // Still a failure for the classifier, no longer retried.
        assert_eq!(http(503), Outcome::Failure { retryable: false });
        assert_eq!(http(404), Outcome::Success);
        assert_eq!(http(200), Outcome::Success);

        let grpc = |code: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("application/grpc"));
            h.insert("grpc-status", HeaderValue::from_static(code));
            r.classify_response(&c, StatusCode::OK, &h)
        };
        assert_eq!(grpc("8"), Outcome::Failure { retryable: true });
        assert_eq!(grpc("14"), Outcome::Failure { retryable: false });
        assert_eq!(grpc("0"), Outcome::Success);

        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(
            r.classify_error(&c, &reset),
            Outcome::Failure { retryable: false }
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(r.classify_error(&c, &refused), Outcome::NotProcessed);
        let timed_out = super::super::AttemptTimedOut(std::time::Duration::from_millis(5));
        assert_eq!(
            r.classify_error(&c, &timed_out),
            Outcome::Failure { retryable: false }
        );
        let gateway = rules(RetryOn {
            statuses: vec![504],
            ..RetryOn::default()
        });
        assert_eq!(
            gateway.classify_error(&c, &timed_out),
            Outcome::Failure { retryable: true }
        );
        let errors = rules(RetryOn {
            errors: true,
            ..RetryOn::default()
        });
        assert_eq!(
            errors.classify_error(&c, &reset),
            Outcome::Failure { retryable: true }
        );
    }
}
