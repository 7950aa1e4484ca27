use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One endpoint of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `ip:port`.
    pub address: String,
    /// Weight among the cluster's endpoints. Default: 1. Range: 1 to 1000000.
    #[serde(default = "one")]
    pub weight: u32,
    /// Where the endpoint runs.
    #[serde(default)]
    pub locality: Locality,
    /// Failover priority: 0 is used first. Default: 0.
    #[serde(default)]
    pub priority: u32,
    /// Health as reported by the source. Default: healthy.
    #[serde(default)]
    pub health: Health,
    /// Free-form labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl EndpointConfig {
    /// An endpoint at `address` (`ip:port`) with every other field at its
    /// default.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            weight: 1,
            locality: Locality::default(),
            priority: 0,
            health: Health::default(),
            metadata: BTreeMap::new(),
        }
    }
}

fn one() -> u32 {
    1
}

/// A region and zone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Locality {
    /// The region, e.g. `eu-west`.
    pub region: String,
    /// The zone, e.g. `eu-west-1a`.
    pub zone: String,
}

/// Health reported for an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Takes traffic.
    #[default]
    Healthy,
    /// Takes no new traffic; requests in flight finish.
    Draining,
    /// Takes no traffic.
    Unhealthy,
}
