//! xDS scoping, in the spirit of Istio's Sidecar resource: a client whose
//! certificate names service `S` sees only the services the control plane
//! was told `S` may call (and the clusters their routes name), as if the
//! others did not exist. Services not listed in the scopes see everything.
//! Server Listeners (names that are not services) are never hidden.

use crate::generate::{CLUSTER, ENDPOINTS, LISTENER, ROUTE};
use crate::state::Published;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// For each client service, the services it may call.
pub(crate) type Scopes = Arc<BTreeMap<String, BTreeSet<String>>>;

/// What one scoped client may see of one published version.
#[derive(Debug)]
pub(crate) struct Visible {
    services: BTreeSet<String>,
    clusters: BTreeSet<String>,
}

impl Visible {
    /// What `may_call` makes visible in `published`.
    pub(crate) fn new(may_call: &BTreeSet<String>, published: &Published) -> Self {
        let clusters = may_call
            .iter()
            .filter_map(|s| published.services.get(s))
            .flat_map(|s| s.routes.iter())
            .flat_map(|r| r.split.iter().map(|w| w.cluster.clone()))
            .collect();
        Self {
            services: may_call.clone(),
            clusters,
        }
    }

    /// Whether resource `name` of `type_url` is hidden from the client.
    pub(crate) fn hides(&self, published: &Published, type_url: &str, name: &str) -> bool {
        match type_url {
            LISTENER | ROUTE => {
                published.services.contains_key(name) && !self.services.contains(name)
            }
            CLUSTER | ENDPOINTS => {
                published.clusters.contains_key(name) && !self.clusters.contains(name)
            }
            _ => false,
        }
    }
}
