//! What requests use besides the snapshot: per cluster, the endpoints in
//! service with their loads, and a picker. Rebuilt with each snapshot;
//! loads of endpoints that stay are carried over.

use crate::balance::{EndpointLoad, Picker, PickerEndpoint, hash_key};
use crate::config::{Health, LbPolicy, Protocol, Snapshot};
use crate::retry::RetryLayer;
use http::{HeaderName, Request};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A request's key for consistent hashing, for clusters whose `lb` hashes
/// an application key. Insert it into the request's extensions, made with
/// [`hash_key`](crate::balance::hash_key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashKey(pub u64);

#[derive(Debug)]
pub(super) struct Routing {
    pub(super) snapshot: Arc<Snapshot>,
    clusters: HashMap<String, Arc<ClusterRuntime>>,
    /// Per service (in snapshot order), per route: its retry layer, whose
    /// budget the route's requests share.
    retries: Vec<Vec<Option<RetryLayer>>>,
}

#[derive(Debug)]
pub(super) struct ClusterRuntime {
    pub(super) name: String,
    endpoints: Vec<EndpointRuntime>,
    picker: Picker,
    hash_header: Option<HeaderName>,
    pub(super) protocol: Protocol,
}

#[derive(Clone, Debug)]
pub(super) struct EndpointRuntime {
    pub(super) address: SocketAddr,
    pub(super) load: Arc<EndpointLoad>,
}

impl Routing {
    pub(super) fn build(snapshot: Arc<Snapshot>, previous: Option<&Routing>) -> Self {
        let mut clusters = HashMap::new();
        for name in snapshot.config().clusters.keys() {
            let Some(cluster) = snapshot.cluster(name) else {
                continue;
            };
            let old = previous.and_then(|p| p.clusters.get(name));
            let loads: HashMap<SocketAddr, &Arc<EndpointLoad>> = old
                .map(|c| c.endpoints.iter().map(|e| (e.address, &e.load)).collect())
                .unwrap_or_default();
            let all = cluster.endpoints();
            let healthy = all.iter().filter(|e| e.health == Health::Healthy).count();
            // Envoy's panic threshold: with too few healthy endpoints, use
            // them all rather than overload the few.
            let panic = healthy * 100
                < all.len() * cluster.config().locality_lb.panic_threshold_percent as usize;
            let in_service: Vec<_> = all
                .iter()
                .filter(|e| panic || e.health == Health::Healthy)
                .collect();
            let endpoints: Vec<EndpointRuntime> = in_service
                .iter()
                .map(|e| EndpointRuntime {
                    address: e.address,
                    load: loads
                        .get(&e.address)
                        .map_or_else(|| Arc::new(EndpointLoad::default()), |l| Arc::clone(l)),
                })
                .collect();
            let picker_endpoints: Vec<PickerEndpoint> = in_service
                .iter()
                .zip(&endpoints)
                .map(|(e, r)| PickerEndpoint {
                    address: e.address,
                    weight: e.weight,
                    load: r.load.clone(),
                })
                .collect();
            let lb = &cluster.config().lb;
            let hash_header = match lb {
                LbPolicy::RingHash { header, .. } | LbPolicy::Maglev { header } => header
                    .as_deref()
                    .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
                _ => None,
            };
            clusters.insert(
                name.clone(),
                Arc::new(ClusterRuntime {
                    name: name.clone(),
                    picker: Picker::build(lb, &picker_endpoints),
                    endpoints,
                    hash_header,
                    protocol: cluster.config().protocol,
                }),
            );
        }
        let retries = snapshot
            .services_in_order()
            .iter()
            .map(|service| {
                service
                    .routes()
                    .iter()
                    // Validated with the snapshot: building cannot fail.
                    .map(|route| route.retry().and_then(|c| RetryLayer::new(c.clone()).ok()))
                    .collect()
            })
            .collect();
        Self {
            snapshot,
            clusters,
            retries,
        }
    }

    pub(super) fn cluster(&self, name: &str) -> Option<&Arc<ClusterRuntime>> {
        self.clusters.get(name)
    }

    /// The retry layer of a route, by (service, route) index.
    pub(super) fn retry_layer(&self, (service, route): (usize, usize)) -> Option<&RetryLayer> {
        self.retries.get(service)?.get(route)?.as_ref()
    }
}

impl ClusterRuntime {
    /// The endpoint for `request`, or `None` when the cluster has none in
    /// service.
    pub(super) fn pick<B>(&self, request: &Request<B>) -> Option<&EndpointRuntime> {
        let hash = match &self.hash_header {
            Some(name) => request.headers().get(name).map(|v| hash_key(v.as_bytes())),
            None => request.extensions().get::<HashKey>().map(|k| k.0),
        };
        self.picker.pick(hash).and_then(|i| self.endpoints.get(i))
    }
}
