use crate::error::{ConfigError, check};
use std::time::Duration;

/// Settings of [`TimeoutLayer`](super::TimeoutLayer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct TimeoutConfig {
    /// How long a request may take. Default: 15 s (Envoy's route default).
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub timeout: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(15),
        }
    }
}

impl TimeoutConfig {
    /// A configuration with the given timeout.
    pub fn after(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::duration("timeout.timeout", self.timeout)
    }
}
