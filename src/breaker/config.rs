use crate::error::{ConfigError, check};
use std::time::Duration;

/// Settings of [`BreakerLayer`](super::BreakerLayer).
///
/// The breaker trips when either condition holds (a condition set to
/// `None` is off; at least one must be on).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row. Default: 5.
    pub consecutive_failures: Option<u32>,
    /// Trip when the failure rate over a sliding window is too high.
    /// Default: 50% over 10 s, once 20 requests were seen.
    pub failure_rate: Option<FailureRateConfig>,
    /// How long the breaker stays open before letting probes through.
    /// Default: 5 s.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub open_for: Duration,
    /// Probes let through while half-open; that many successes close the
    /// breaker, one failure opens it again. Default: 1.
    pub half_open_probes: u32,
}

/// A failure-rate trip condition.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct FailureRateConfig {
    /// Failure ratio at or above which the breaker trips. Default: 0.5.
    /// Range: above 0, up to 1.
    pub threshold: f64,
    /// Length of the sliding window. Default: 10 s. Range: 100 ms to 1 h.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// Requests the window must hold before the rate counts. Default: 20.
    pub min_requests: u32,
}

impl Default for FailureRateConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            window: Duration::from_secs(10),
            min_requests: 20,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            failure_rate: Some(FailureRateConfig::default()),
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within("breaker"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        if self.consecutive_failures.is_none() && self.failure_rate.is_none() {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be set when failure_rate is not (the breaker could never trip)",
            ));
        }
        if let Some(n) = self.consecutive_failures {
            check::at_least("consecutive_failures", n, 1)?;
        }
        if let Some(rate) = &self.failure_rate {
            if !(rate.threshold > 0.0 && rate.threshold <= 1.0) {
                return Err(ConfigError::new(
                    "failure_rate.threshold",
                    "must be above 0 and at most 1",
                ));
            }
            if rate.window < Duration::from_millis(100) || rate.window > Duration::from_secs(3600) {
                return Err(ConfigError::new(
                    "failure_rate.window",
                    "must be between 100 ms and 1 h",
                ));
            }
            check::at_least("failure_rate.min_requests", rate.min_requests, 1)?;
        }
        check::duration("open_for", self.open_for)?;
        if !(1..=1000).contains(&self.half_open_probes) {
            return Err(ConfigError::new(
                "half_open_probes",
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bad_field() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        let bad = |c: BreakerConfig| c.validate().err().map(|e| e.to_string());
        assert_eq!(
            bad(BreakerConfig {
                half_open_probes: 0,
                ..BreakerConfig::default()
            })
            .as_deref(),
            Some("breaker.half_open_probes: must be between 1 and 1000")
        );
        assert_eq!(
            bad(BreakerConfig {
                failure_rate: Some(FailureRateConfig {
                    threshold: 1.5,
                    ..FailureRateConfig::default()
                }),
                ..BreakerConfig::default()
            })
            .as_deref(),
            Some("breaker.failure_rate.threshold: must be above 0 and at most 1")
        );
        assert!(
            bad(BreakerConfig {
                consecutive_failures: None,
                failure_rate: None,
                ..BreakerConfig::default()
            })
            .is_some_and(|m| m.starts_with("breaker.consecutive_failures"))
        );
    }
}
