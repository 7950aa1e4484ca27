use super::retry_on::RetryOn;
use crate::error::{ConfigError, check};
use std::time::Duration;

/// Settings of [`RetryLayer`](super::RetryLayer).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct RetryConfig {
    /// Attempts in all, the first included; 1 turns retries off.
    /// Default: 3. Range: 1 to 10.
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: BackoffConfig,
    /// How many retries the request volume pays for.
    pub budget: BudgetConfig,
    /// Largest request body kept for replay. Default: 64 KiB.
    pub max_replay_bytes: usize,
    /// A retry is not started with less than this left before the
    /// request's deadline. Default: 10 ms.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub min_attempt_time: Duration,
    /// Treat every request as idempotent (for a route whose requests are,
    /// whatever their method). Default: false.
    pub assume_idempotent: bool,
    /// Hedge idempotent requests instead of retrying them sequentially.
    /// Default: none.
    pub hedge: Option<HedgeConfig>,
    /// Which failures are retried. Default: the layer's
    /// [`Classify`](crate::classify::Classify) implementation decides (for
    /// the default classifier: HTTP 502, 503 and 504, gRPC `UNAVAILABLE`,
    /// and errors that may have reached the server).
    #[cfg_attr(feature = "config", serde(skip_serializing_if = "Option::is_none"))]
    pub retry_on: Option<RetryOn>,
    /// How long one attempt may wait for its response head. An attempt
    /// that takes longer is cancelled and counts as a retryable failure
    /// ([`AttemptTimedOut`](super::AttemptTimedOut)); the overall deadline
    /// still bounds the whole request. Default: none.
    #[cfg_attr(
        feature = "config",
        serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")
    )]
    pub per_try_timeout: Option<Duration>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: BackoffConfig::default(),
            budget: BudgetConfig::default(),
            max_replay_bytes: 64 * 1024,
            min_attempt_time: Duration::from_millis(10),
            assume_idempotent: false,
            hedge: None,
            retry_on: None,
            per_try_timeout: None,
        }
    }
}

/// Exponential backoff between attempts: the n-th retry waits
/// `min(base * 2^(n-1), max)` plus a random extra of up to `jitter` times
/// that.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BackoffConfig {
    /// First delay. Default: 25 ms.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub base: Duration,
    /// Longest delay. Default: 1 s.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub max: Duration,
    /// Random extra, as a fraction of the delay. Default: 1.0. Range: 0 to 100.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            max: Duration::from_secs(1),
            jitter: 1.0,
        }
    }
}

/// A retry budget: retries may add `ratio` of the requests seen over the
/// last `window`, plus `min_per_second` retries per second regardless.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct BudgetConfig {
    /// Retries allowed per request. Default: 0.2. Range: 0 to 1.
    pub ratio: f64,
    /// Retries allowed per second whatever the volume. Default: 10.
    pub min_per_second: u32,
    /// How far back requests count. Default: 10 s. Range: 1 to 60 s.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }
}

/// Hedging: start another attempt when none has answered after `delay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "config",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct HedgeConfig {
    /// Wait before each further attempt. Zero sends all attempts at once.
    #[cfg_attr(feature = "config", serde(with = "humantime_serde"))]
    pub delay: Duration,
    /// Attempts in all, the first included. Default: 2. Range: 2 to 10.
    #[cfg_attr(
        feature = "config",
        serde(default = "HedgeConfig::default_max_attempts")
    )]
    pub max_attempts: u32,
}

impl HedgeConfig {
    #[cfg(feature = "config")]
    fn default_max_attempts() -> u32 {
        2
    }

    /// Hedging with one extra attempt after `delay`.
    pub fn after(delay: Duration) -> Self {
        Self {
            delay,
            max_attempts: 2,
        }
    }
}

impl RetryConfig {
    /// Checks the values, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_fields().map_err(|e| e.within("retry"))
    }

    fn validate_fields(&self) -> Result<(), ConfigError> {
        if !(1..=10).contains(&self.max_attempts) {
            return Err(ConfigError::new("max_attempts", "must be between 1 and 10"));
        }
        let b = &self.backoff;
        check::duration("backoff.base", b.base)?;
        if b.max < b.base {
            return Err(ConfigError::new(
                "backoff.max",
                "must not be less than backoff.base",
            ));
        }
        check::bounded_duration("backoff.max", b.max)?;
        check::between("backoff.jitter", b.jitter, 0.0, 100.0)?;
        check::bounded_duration("min_attempt_time", self.min_attempt_time)?;
        let budget = &self.budget;
        check::between("budget.ratio", budget.ratio, 0.0, 1.0)?;
        if budget.min_per_second > 1_000_000 {
            return Err(ConfigError::new(
                "budget.min_per_second",
                "must be at most 1000000",
            ));
        }
        if budget.window < Duration::from_secs(1) || budget.window > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "budget.window",
                "must be between 1 s and 60 s",
            ));
        }
        if let Some(hedge) = &self.hedge {
            if !(2..=10).contains(&hedge.max_attempts) {
                return Err(ConfigError::new(
                    "hedge.max_attempts",
                    "must be between 2 and 10",
                ));
            }
            check::bounded_duration("hedge.delay", hedge.delay)?;
        }
        if let Some(limit) = self.per_try_timeout {
            check::duration("per_try_timeout", limit)?;
        }
        if let Some(on) = &self.retry_on {
            on.validate().map_err(|e| e.within("retry_on"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(change: impl FnOnce(&mut RetryConfig)) -> Option<String> {
        let mut config = RetryConfig::default();
        change(&mut config);
        config.validate().err().map(|e| e.field().to_owned())
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(RetryConfig::default().validate(), Ok(()));
        let field = |f: fn(&mut RetryConfig)| field_of(f);
        assert_eq!(
            field(|c| c.max_attempts = 0).as_deref(),
            Some("retry.max_attempts")
        );
        assert_eq!(
            field(|c| c.backoff.max = Duration::from_millis(1)).as_deref(),
            Some("retry.backoff.max")
        );
        assert_eq!(
            field(|c| c.backoff.jitter = f64::NAN).as_deref(),
            Some("retry.backoff.jitter")
        );
        assert_eq!(
            field(|c| c.budget.ratio = -0.1).as_deref(),
            Some("retry.budget.ratio")
        );
        assert_eq!(
            field(|c| c.budget.window = Duration::from_secs(61)).as_deref(),
            Some("retry.budget.window")
        );
        let c = |c: &mut RetryConfig| {
            c.hedge = Some(HedgeConfig {
                delay: Duration::from_millis(5),
                max_attempts: 1,
            })
        };
        assert_eq!(field_of(c).as_deref(), Some("retry.hedge.max_attempts"));
        assert_eq!(
            field(|c| c.per_try_timeout = Some(Duration::ZERO)).as_deref(),
            Some("retry.per_try_timeout")
        );
        // Longer than any clock can add without overflowing.
        const FOREVER: Duration = Duration::from_secs(i64::MAX as u64);
        assert_eq!(
            field(|c| c.per_try_timeout = Some(FOREVER)).as_deref(),
            Some("retry.per_try_timeout")
        );
        assert_eq!(
            field(|c| {
                c.backoff.base = FOREVER;
                c.backoff.max = FOREVER;
            })
            .as_deref(),
            Some("retry.backoff.base")
        );
        assert_eq!(
            field(|c| c.backoff.max = FOREVER).as_deref(),
            Some("retry.backoff.max")
        );
        assert_eq!(
            field(|c| c.min_attempt_time = FOREVER).as_deref(),
            Some("retry.min_attempt_time")
        );
        assert_eq!(
            field(|c| c.hedge = Some(HedgeConfig {
                max_attempts: 2,
                delay: FOREVER
            }))
            .as_deref(),
            Some("retry.hedge.delay")
        );
        let c = |c: &mut RetryConfig| {
            c.retry_on = Some(RetryOn {
                statuses: vec![503, 200],
                ..RetryOn::default()
            })
        };
        assert_eq!(field_of(c).as_deref(), Some("retry.retry_on.statuses[1]"));
        let c = |c: &mut RetryConfig| {
            c.retry_on = Some(RetryOn {
                grpc: vec!["unavailable".into(), "sometimes".into()],
                ..RetryOn::default()
            })
        };
        assert_eq!(field_of(c).as_deref(), Some("retry.retry_on.grpc[1]"));
    }
}
