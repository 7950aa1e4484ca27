//! The typed mesh configuration, shared by every source of configuration.
//!
//! A [`MeshConfig`] names **services** (what callers ask for) and
//! **clusters** (groups of endpoints that serve them):
//!
//! - a service has ordered [`RouteConfig`]s; a route matches on path
//!   (exact, prefix, regex), method and headers, splits traffic by weight
//!   across clusters, and carries its timeout and retry (or hedging)
//!   policy, using the same [`RetryConfig`](crate::retry::RetryConfig) as
//!   the retry layer, the header that consistent hashing hashes, and the
//!   faults injected into its requests;
//! - a cluster has a load-balancing policy, thresholds, outlier detection,
//!   a protocol, the identities its endpoints may present, and endpoints with
//!   an address, a weight, a locality, a priority, a health status and
//!   metadata;
//! - a service's [`InboundConfig`] is what the processes serving it
//!   enforce: deadlines, limits, connection acceptance.
//!
//! Configuration is read from YAML or JSON ([`MeshConfig::from_yaml`],
//! [`MeshConfig::from_json`]) or built in code, then validated into an
//! immutable, versioned [`Snapshot`]. Every error names the path of the
//! field it rejects:
//!
//! ```
//! use sinew::config::{MeshConfig, Snapshot};
//!
//! let yaml = r#"
//! services:
//!   reviews:
//!     routes:
//!       - split: [{ cluster: reviews-v1 }]
//!         retry: { budget: { ratio: 1.5 } }
//! clusters:
//!   reviews-v1:
//!     endpoints: [{ address: "127.0.0.1:9001" }]
//! "#;
//! let config = MeshConfig::from_yaml(yaml).unwrap();
//! let err = Snapshot::build(config, 1).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "services.reviews.routes[0].retry.budget.ratio: must be between 0 and 1"
//! );
//! ```

mod authz;
#[cfg(feature = "authz")]
mod authz_check;
mod changes;
mod cluster;
mod endpoint;
mod fault;
mod files;
mod inbound;
mod parse;
mod route;
mod settled_file;
mod snapshot;
mod validate;

#[cfg(test)]
mod breaker_tests;
#[cfg(test)]
mod tests;

pub use authz::{AuthorizationPolicy, AuthorizationRule, PolicyAction, PrincipalMatch};
#[cfg(feature = "authz")]
pub(crate) use authz_check::compile_policies;
pub use changes::EndpointChanges;
#[cfg(feature = "mesh")]
pub(crate) use changes::EndpointOp;
pub use cluster::{
    ClusterConfig, FailurePercentageConfig, LbPolicy, LocalityLbConfig, OutlierDetectionConfig,
    Protocol, SuccessRateConfig, ThresholdsConfig,
};
pub use endpoint::{EndpointConfig, Health, Locality};
pub use fault::{FaultAbort, FaultConfig, FaultDelay};
pub(crate) use files::read_at_most;
pub use files::{MAX_FILE_BYTES, read_limited, write_private};
pub use inbound::{ConnectionsConfig, InboundConfig, MtlsMode};
pub use route::{HeaderMatch, PathMatch, RouteConfig, RouteMatch, ServiceConfig, WeightedCluster};
pub use settled_file::SettledFile;
pub use snapshot::{Cluster, Endpoint, Endpoints, Route, Service, Snapshot};
pub(crate) use validate::MAX_RING_SIZE;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole mesh: services by name and clusters by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshConfig {
    /// Services callers ask for, by name.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Clusters of endpoints, by name.
    pub clusters: BTreeMap<String, ClusterConfig>,
}
