//! Error types shared by every layer.

use std::fmt;

/// The boxed error every Sinew service returns.
///
/// Layers wrap their inner service's error in this box, as tower's own
/// middleware does. Callers find out what happened by downcasting: each
/// layer documents the concrete error types it produces (for example
/// [`crate::breaker::BreakerOpen`]).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An invalid configuration value.
///
/// The error names the path of the offending field, such as
/// `retry.budget.ratio`, and says what is wrong with it. Constructors that
/// validate configuration return this error instead of panicking.
///
/// ```
/// use sinew::retry::{RetryConfig, RetryLayer};
///
/// let mut config = RetryConfig::default();
/// config.budget.ratio = 1.5;
/// let err = RetryLayer::new(config).unwrap_err();
/// assert_eq!(err.field(), "retry.budget.ratio");
/// assert_eq!(err.to_string(), "retry.budget.ratio: must be between 0 and 1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: String,
    message: String,
}

impl ConfigError {
    /// Creates an error for `field` (a dotted path) with a message saying
    /// what is wrong.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The dotted path of the offending field, e.g. `breaker.half_open_probes`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with the value.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Puts `prefix` in front of the field path, so that a nested
    /// configuration can report the full path of the field it rejects.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Checks helpers shared by the configuration types.
pub(crate) mod check {
    // Each helper is used by some feature-gated layer.
    #![allow(dead_code)]

    use super::ConfigError;
    use std::time::Duration;

    pub(crate) fn positive_duration(field: &str, value: Duration) -> Result<(), ConfigError> {
        if value.is_zero() {
            return Err(ConfigError::new(field, "must be greater than zero"));
        }
        Ok(())
    }

    /// Refuses a duration longer than [`MAX_DURATION`](crate::bounds::MAX_DURATION).
    pub(crate) fn bounded_duration(field: &str, value: Duration) -> Result<(), ConfigError> {
        if value > crate::bounds::MAX_DURATION {
            return Err(ConfigError::new(field, "must be at most 365 days"));
        }
        Ok(())
    }

    /// A positive duration of at most [`MAX_DURATION`](crate::bounds::MAX_DURATION).
    pub(crate) fn duration(field: &str, value: Duration) -> Result<(), ConfigError> {
        positive_duration(field, value)?;
        bounded_duration(field, value)
    }

    pub(crate) fn at_least<T: PartialOrd + std::fmt::Display>(
        field: &str,
        value: T,
        min: T,
    ) -> Result<(), ConfigError> {
        if value < min {
            return Err(ConfigError::new(field, format!("must be at least {min}")));
        }
        Ok(())
    }

    pub(crate) fn between(field: &str, value: f64, min: f64, max: f64) -> Result<(), ConfigError> {
        if !(value >= min && value <= max) {
            return Err(ConfigError::new(
                field,
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(())
    }
}
