//! Times as the CA keeps them (unix seconds), and the clock it reads.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The CA's clock: the system's, or one a test moves.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system clock.
pub(crate) fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// `time` in unix seconds (0 before the epoch).
pub(crate) fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix seconds as the date type certificates are built with.
pub(crate) fn datetime(seconds: u64) -> time::OffsetDateTime {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}
