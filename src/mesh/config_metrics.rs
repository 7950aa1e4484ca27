//! Where configuration stands, through the `metrics` facade:
//!
//! - `sinew_config_version{source}`: the version of the snapshot in force;
//! - `sinew_config_rejected_total{source}`: configurations (and endpoint
//!   changes) the mesh refused, the last good one staying in force.
//!
//! `source` is where the mesh's configuration comes from: `static` (given
//! to the builder), `file` (a watched file) or `xds` (a control plane).
//! The discovery client counts the responses it NACKs itself
//! (`sinew_xds_responses_total{result="nack"}`): a response it ACKs whose
//! assembled configuration the mesh then refuses counts here.

use metrics::{Counter, Gauge};

/// The version in force.
pub(crate) const VERSION: &str = "sinew_config_version";
/// Configurations refused.
pub(crate) const REJECTED: &str = "sinew_config_rejected_total";

/// Where a mesh's configuration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    /// Given to the builder (and [`Mesh::apply`](super::Mesh::apply)).
    Static,
    /// A watched file.
    File,
    /// A control plane.
    #[cfg_attr(not(feature = "xds"), allow(dead_code))]
    Xds,
}

impl ConfigSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::File => "file",
            Self::Xds => "xds",
        }
    }
}

/// The handles of one mesh, registered when it is built.
#[derive(Debug)]
pub(crate) struct ConfigMetrics {
    version: Gauge,
    rejected: Counter,
}

impl ConfigMetrics {
    pub(crate) fn new(source: ConfigSource) -> Self {
        metrics::describe_gauge!(
            VERSION,
            "Version of the configuration snapshot in force, by source (static, file, xds)"
        );
        metrics::describe_counter!(
            REJECTED,
            "Configurations and endpoint changes refused (the last good one stays), by source"
        );
        Self {
            version: metrics::gauge!(VERSION, "source" => source.as_str()),
            rejected: metrics::counter!(REJECTED, "source" => source.as_str()),
        }
    }

    pub(crate) fn applied(&self, version: u64) {
        self.version.set(version as f64);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.increment(1);
    }
}
