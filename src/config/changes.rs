use super::EndpointConfig;
use serde::{Deserialize, Serialize};

/// A change to one cluster's endpoints: endpoints to add or replace
/// (matched by address) and addresses to remove. Applied with
/// [`Snapshot::with_endpoint_changes`](super::Snapshot::with_endpoint_changes)
/// or [`Mesh::update_endpoints`](crate::mesh::Mesh::update_endpoints), at a
/// cost that follows the size of the change rather than of the cluster.
///
/// Removals apply first. Removing an address the cluster does not have is
/// not an error (the change may already be in force); naming an address in
/// both lists is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointChanges {
    /// Endpoints to add, or to replace when the cluster has their address.
    pub upsert: Vec<EndpointConfig>,
    /// Addresses (`ip:port`) of endpoints to remove.
    pub remove: Vec<String>,
}

impl EndpointChanges {
    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// What one step of a change did to the list of endpoints, so that lists
/// kept beside it can do the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndpointOp {
    /// The endpoint at this index was replaced.
    Replaced(usize),
    /// An endpoint was pushed at the end.
    Added,
    /// The endpoint at this index was removed, the last taking its place.
    Removed(usize),
}
