//! How much telemetry the control plane keeps, and how large an export
//! may be.

use sinew::error::ConfigError;
use std::time::Duration;

/// The rolling window of pushed edge metrics and the intake's limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryOptions {
    /// How far back the window reaches. Default: 5 min.
    pub window: Duration,
    /// The width of one bucket of the window. Default: 10 s.
    pub bucket: Duration,
    /// How many edges (source, destination, direction) are kept; past it,
    /// the edge updated longest ago is dropped (and counted). Default:
    /// 1024.
    pub max_edges: usize,
    /// The largest OTLP export accepted, in bytes (`RESOURCE_EXHAUSTED`
    /// past it). Default: 1 MiB.
    pub max_export_bytes: usize,
    /// The most data points one export may carry. Default: 4096.
    pub max_data_points: usize,
}

impl Default for TelemetryOptions {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            bucket: Duration::from_secs(10),
            max_edges: 1024,
            max_export_bytes: 1 << 20,
            max_data_points: 4096,
        }
    }
}

/// At most this many buckets per edge: bounds an edge's memory whatever
/// the window and bucket.
const MAX_BUCKETS: u128 = 360;

impl TelemetryOptions {
    /// Checks the options, naming the field at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bucket < Duration::from_millis(100) {
            return Err(ConfigError::new(
                "telemetry.bucket",
                "must be at least 100 ms",
            ));
        }
        if self.window < self.bucket {
            return Err(ConfigError::new(
                "telemetry.window",
                "must be at least one bucket",
            ));
        }
        if self.window.as_nanos() / self.bucket.as_nanos() > MAX_BUCKETS {
            return Err(ConfigError::new(
                "telemetry.window",
                format!("holds more than {MAX_BUCKETS} buckets: widen telemetry.bucket"),
            ));
        }
        if !(1..=100_000).contains(&self.max_edges) {
            return Err(ConfigError::new(
                "telemetry.max_edges",
                "must be between 1 and 100000",
            ));
        }
        if !(1024..=(64 << 20)).contains(&self.max_export_bytes) {
            return Err(ConfigError::new(
                "telemetry.max_export_bytes",
                "must be between 1 KiB and 64 MiB",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_data_points) {
            return Err(ConfigError::new(
                "telemetry.max_data_points",
                "must be between 1 and 1000000",
            ));
        }
        Ok(())
    }

    /// How many buckets the window holds.
    pub(crate) fn buckets(&self) -> u64 {
        (self.window.as_nanos() / self.bucket.as_nanos()).max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_options_name_their_field() {
        assert!(TelemetryOptions::default().validate().is_ok());
        let field = |o: TelemetryOptions| o.validate().err().map(|e| e.field().to_owned());
        let tiny = TelemetryOptions {
            bucket: Duration::from_millis(1),
            ..Default::default()
        };
        assert_eq!(field(tiny).as_deref(), Some("telemetry.bucket"));
        let long = TelemetryOptions {
            window: Duration::from_secs(3600 * 24),
            ..Default::default()
        };
        assert_eq!(field(long).as_deref(), Some("telemetry.window"));
        let none = TelemetryOptions {
            max_edges: 0,
            ..Default::default()
        };
        assert_eq!(field(none).as_deref(), Some("telemetry.max_edges"));
    }
}
