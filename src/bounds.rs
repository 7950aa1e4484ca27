//! The bounds every configured value keeps, so that no arithmetic on it can
//! overflow a clock or a counter, whatever a mesh file or a control plane
//! sends.
//!
//! Every duration a configuration holds (timeouts, backoff intervals,
//! ejection times, fault delays, ...) must be at most [`MAX_DURATION`]:
//! validation refuses a longer one with an error naming the field, and the
//! xDS client NACKs a resource that holds one. Durations that come from
//! elsewhere (a caller's own [`Deadline`](crate::deadline::Deadline), a
//! builder setting, a header) are clamped to it where they meet the clock.
//!
//! ```
//! use std::time::Duration;
//! use sinew::timeout::{TimeoutConfig, TimeoutLayer};
//!
//! let err = TimeoutLayer::new(TimeoutConfig::after(Duration::from_secs(u64::MAX))).unwrap_err();
//! assert_eq!(err.to_string(), "timeout.timeout: must be at most 365 days");
//! ```

use std::time::Duration;
use tokio::time::Instant;

/// The longest duration any configuration may hold: 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `start + duration`, with `duration` clamped to [`MAX_DURATION`]: an
/// instant that cannot overflow, for timers set from values that were not
/// validated.
#[inline]
pub(crate) fn later(start: Instant, duration: Duration) -> Instant {
    let duration = duration.min(MAX_DURATION);
    // Only a clock within a year of its end could refuse; stay put there
    // rather than panic.
    start.checked_add(duration).unwrap_or(start)
}

/// `duration` in whole milliseconds, clamped to [`MAX_DURATION`]: fits any
/// `u64` sum with another such value.
#[inline]
pub(crate) fn millis(duration: Duration) -> u64 {
    duration.min(MAX_DURATION).as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_what_would_overflow() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + MAX_DURATION);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(millis(Duration::MAX), MAX_DURATION.as_millis() as u64);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
    }
}
