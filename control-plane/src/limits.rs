//! The bounds that keep one client, or many, from wedging the control
//! plane or exhausting its memory.

use std::time::Duration;

/// The largest gRPC message either side of an ADS stream sends or
/// accepts: Sinew's discovery client accepts the same, so a response the
/// control plane may send is never one the client refuses.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Every limit, each with a default that suits a mesh of some thousands
/// of instances.
///
/// ```
/// use sinew_control_plane::{ControlPlane, Limits};
///
/// let builder = ControlPlane::builder().limits(Limits {
///     max_leases: 50_000,
///     ..Limits::default()
/// });
/// # drop(builder);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Leases in the whole registry; one more registration is refused
    /// with `429`. Default: 100,000.
    pub max_leases: usize,
    /// Leases in one cluster. Default: 10,000.
    pub max_leases_per_cluster: usize,
    /// ADS connections at once; a connection over it is closed at
    /// once. Default: 10,000.
    pub max_ads_connections: usize,
    /// Concurrent ADS streams on one connection (HTTP/2's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`). Default: 4.
    pub max_streams_per_connection: u32,
    /// Resource names in one discovery request; a request with more ends
    /// its stream with `INVALID_ARGUMENT`. Default: 10,000.
    pub max_resource_names: usize,
    /// Bytes of a client's `node.id` (and user agent) kept and shown;
    /// longer ones are truncated. Default: 256.
    pub max_node_id_bytes: usize,
    /// Bytes of a NACK's message kept and logged; longer ones are
    /// truncated. Default: 1024.
    pub max_nack_message_bytes: usize,
    /// The largest ADS message sent or accepted. Default:
    /// [`DEFAULT_MAX_MESSAGE_BYTES`] (64 MiB), what Sinew's discovery
    /// client accepts.
    pub max_message_bytes: usize,
    /// Admin API connections at once; one over it is closed at once.
    /// Default: 256.
    pub max_admin_connections: usize,
    /// How long an admin API client may take to send a request's headers,
    /// and then its body. Default: 10 s.
    pub admin_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_leases: 100_000,
            max_leases_per_cluster: 10_000,
            max_ads_connections: 10_000,
            max_streams_per_connection: 4,
            max_resource_names: 10_000,
            max_node_id_bytes: 256,
            max_nack_message_bytes: 1024,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_admin_connections: 256,
            admin_read_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Checks that every limit lets something through: a zero (or an
    /// admin read timeout of zero or over a day) would refuse everything.
    /// The error names the field, e.g. `limits.max_message_bytes`.
    pub fn validate(&self) -> Result<(), sinew::error::ConfigError> {
        let counts = [
            ("max_leases", self.max_leases),
            ("max_leases_per_cluster", self.max_leases_per_cluster),
            ("max_ads_connections", self.max_ads_connections),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection as usize,
            ),
            ("max_resource_names", self.max_resource_names),
            ("max_node_id_bytes", self.max_node_id_bytes),
            ("max_nack_message_bytes", self.max_nack_message_bytes),
            ("max_message_bytes", self.max_message_bytes),
            ("max_admin_connections", self.max_admin_connections),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(sinew::error::ConfigError::new(
                    format!("limits.{field}"),
                    "must be at least 1",
                ));
            }
        }
        if self.admin_read_timeout.is_zero()
            || self.admin_read_timeout > Duration::from_secs(86_400)
        {
            return Err(sinew::error::ConfigError::new(
                "limits.admin_read_timeout",
                "must be from 1 ms to a day",
            ));
        }
        Ok(())
    }
}

/// `text` cut to at most `max` bytes, on a character boundary, marked
/// when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_limit_that_refuses_everything_is_named() {
        assert_eq!(super::Limits::default().validate(), Ok(()));
        let zero = super::Limits {
            max_message_bytes: 0,
            ..super::Limits::default()
        };
        assert_eq!(
            zero.validate().map_err(|e| e.to_string()),
            Err("limits.max_message_bytes: must be at least 1".to_owned())
        );
    }

    use super::truncate;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 2), "ab… (4 bytes)");
        // 'é' is two bytes: the cut falls before it, not inside it.
        assert_eq!(truncate("aé", 2), "a… (3 bytes)");
    }
}
