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
    use super::truncate;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 2), "ab… (4 bytes)");
        // 'é' is two bytes: the cut falls before it, not inside it.
        assert_eq!(truncate("aé", 2), "a… (3 bytes)");
    }
}
