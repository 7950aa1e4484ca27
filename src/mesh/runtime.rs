//! What requests use besides the snapshot: per cluster, the endpoints in
//! service with their loads and outlier state, and a picker over those not
//! ejected. Rebuilt with each snapshot; the state of endpoints that stay is
//! carried over.

use super::locality::{Candidate, select};
use super::outlier::{Detector, EndpointOutlier, Result_ as OutlierResult};
use super::route::ClusterOverloaded;
use crate::balance::{EndpointLoad, Picker, PickerEndpoint, hash_key};
use crate::config::{
    Health, LbPolicy, Locality, LocalityLbConfig, Protocol, Snapshot, ThresholdsConfig,
};
use crate::retry::RetryLayer;
use arc_swap::ArcSwap;
use http::{HeaderName, Request};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// The endpoints' outlier state, in the same order.
    outliers: Vec<Arc<EndpointOutlier>>,
    /// Picks among the endpoints not ejected.
    picker: ArcSwap<Pick>,
    detector: Option<Detector>,
    /// When the next ejection ends (ms on the detector's clock).
    next_release: AtomicU64,
    rebuilding: Mutex<()>,
    lb: LbPolicy,
    hash_header: Option<HeaderName>,
    pub(super) protocol: Protocol,
    max_requests: u32,
    max_retries: u32,
    /// Retries in flight to the cluster.
    retries_inflight: Arc<AtomicU32>,
    placement: Placement,
    /// Requests in flight to the cluster (a new cluster runtime starts at
    /// zero: the threshold is per snapshot).
    inflight: Arc<AtomicU32>,
}

/// Where the caller is, and the cluster's locality settings.
#[derive(Debug)]
struct Placement {
    settings: LocalityLbConfig,
    local: Option<Locality>,
}

/// One unit of a cluster threshold, given back when dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a slot of `counter` if it is under `limit`.
fn take(counter: &Arc<AtomicU32>, limit: u32) -> Result<Slot, ()> {
    let before = counter.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(counter.clone());
    if before >= limit { Err(()) } else { Ok(slot) }
}

/// A request counted against its cluster's thresholds.
#[derive(Debug)]
pub(super) struct ClusterPermit {
    _request: Slot,
    _retry: Option<Slot>,
}

/// A picker, and which endpoint each of its indices stands for.
#[derive(Debug)]
struct Pick {
    picker: Picker,
    indices: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(super) struct EndpointRuntime {
    pub(super) index: usize,
    pub(super) address: SocketAddr,
    pub(super) load: Arc<EndpointLoad>,
    weight: u32,
    healthy: bool,
    priority: u32,
    locality: Locality,
}

impl Routing {
    pub(super) fn build(
        snapshot: Arc<Snapshot>,
        previous: Option<&Routing>,
        local: Option<&Locality>,
    ) -> Self {
        let mut clusters = HashMap::new();
        for name in snapshot.config().clusters.keys() {
            let Some(cluster) = snapshot.cluster(name) else {
                continue;
            };
            let old = previous.and_then(|p| p.clusters.get(name));
            let kept: HashMap<SocketAddr, (&Arc<EndpointLoad>, &Arc<EndpointOutlier>)> = old
                .map(|c| {
                    c.endpoints
                        .iter()
                        .zip(&c.outliers)
                        .map(|(e, o)| (e.address, (&e.load, o)))
                        .collect()
                })
                .unwrap_or_default();
            let endpoints: Vec<EndpointRuntime> = cluster
                .endpoints()
                .iter()
                .enumerate()
                .map(|(index, e)| EndpointRuntime {
                    index,
                    address: e.address,
                    load: kept
                        .get(&e.address)
                        .map_or_else(|| Arc::new(EndpointLoad::default()), |(l, _)| Arc::clone(l)),
                    weight: e.weight,
                    healthy: e.health == Health::Healthy,
                    priority: e.priority,
                    locality: e.locality.clone(),
                })
                .collect();
            let outliers: Vec<Arc<EndpointOutlier>> = cluster
                .endpoints()
                .iter()
                .map(|e| {
                    kept.get(&e.address)
                        .map_or_else(Arc::default, |(_, o)| Arc::clone(o))
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
                Arc::new(ClusterRuntime::new(
                    name,
                    endpoints,
                    outliers,
                    cluster
                        .config()
                        .outlier_detection
                        .clone()
                        .map(Detector::new),
                    lb.clone(),
                    hash_header,
                    cluster.config().protocol,
                    cluster.config().thresholds,
                    Placement {
                        settings: cluster.config().locality_lb,
                        local: local.cloned(),
                    },
                )),
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
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        endpoints: Vec<EndpointRuntime>,
        outliers: Vec<Arc<EndpointOutlier>>,
        detector: Option<Detector>,
        lb: LbPolicy,
        hash_header: Option<HeaderName>,
        protocol: Protocol,
        thresholds: ThresholdsConfig,
        placement: Placement,
    ) -> Self {
        let cluster = Self {
            name: name.to_owned(),
            picker: ArcSwap::from_pointee(Pick {
                picker: Picker::build(&lb, &[]),
                indices: Vec::new(),
            }),
            endpoints,
            outliers,
            detector,
            next_release: AtomicU64::new(u64::MAX),
            rebuilding: Mutex::new(()),
            lb,
            hash_header,
            protocol,
            max_requests: thresholds.max_requests,
            max_retries: thresholds.max_retries,
            retries_inflight: Arc::default(),
            inflight: Arc::default(),
            placement,
        };
        cluster.rebuild(cluster.detector.as_ref().map_or(0, Detector::now_ms));
        cluster
    }

    /// The endpoint for `request`, or `None` when the cluster has none in
    /// service.
    pub(super) fn pick<B>(&self, request: &Request<B>) -> Option<&EndpointRuntime> {
        if let Some(detector) = &self.detector {
            let now = detector.now_ms();
            if now >= self.next_release.load(Ordering::Relaxed)
                && detector.release(&self.outliers, now)
            {
                self.rebuild(now);
            }
        }
        let hash = match &self.hash_header {
            Some(name) => request.headers().get(name).map(|v| hash_key(v.as_bytes())),
            None => request.extensions().get::<HashKey>().map(|k| k.0),
        };
        let pick = self.picker.load();
        let i = pick.picker.pick(hash)?;
        pick.indices.get(i).and_then(|&i| self.endpoints.get(i))
    }

    /// Counts a request against `max_requests` (and a retry against
    /// `max_retries` too), or refuses it.
    pub(super) fn admit(&self, retry: bool) -> Result<ClusterPermit, ClusterOverloaded> {
        let retries = if retry {
            Some(
                take(&self.retries_inflight, self.max_retries)
                    .map_err(|()| self.overloaded("max_retries", self.max_retries))?,
            )
        } else {
            None
        };
        let request = take(&self.inflight, self.max_requests)
            .map_err(|()| self.overloaded("max_requests", self.max_requests))?;
        Ok(ClusterPermit {
            _request: request,
            _retry: retries,
        })
    }

    fn overloaded(&self, threshold: &'static str, limit: u32) -> ClusterOverloaded {
        ClusterOverloaded {
            cluster: self.name.clone(),
            threshold,
            limit,
        }
    }

    /// Feeds a response's result to outlier detection.
    pub(super) fn record(&self, endpoint: usize, result: OutlierResult) {
        let (Some(detector), Some(outlier)) = (&self.detector, self.outliers.get(endpoint)) else {
            return;
        };
        if detector.record(&self.outliers, outlier, result) {
            self.rebuild(detector.now_ms());
        }
    }

    /// Rebuilds the picker over the endpoints that take traffic (see
    /// [`select`]), and notes when the next ejection ends.
    fn rebuild(&self, now: u64) {
        let Ok(_only_one) = self.rebuilding.try_lock() else {
            return;
        };
        let candidates: Vec<Candidate<'_>> = self
            .endpoints
            .iter()
            .zip(&self.outliers)
            .map(|(e, o)| Candidate {
                priority: e.priority,
                locality: &e.locality,
                available: e.healthy && !o.is_ejected(now),
            })
            .collect();
        let indices = select(
            &candidates,
            &self.placement.settings,
            self.placement.local.as_ref(),
        );
        let chosen: Vec<PickerEndpoint> = indices
            .iter()
            .map(|&i| {
                let e = &self.endpoints[i];
                PickerEndpoint {
                    address: e.address,
                    weight: e.weight,
                    load: e.load.clone(),
                }
            })
            .collect();
        let next = self
            .outliers
            .iter()
            .filter_map(|o| o.ejected_until())
            .min()
            .unwrap_or(u64::MAX);
        self.next_release.store(next, Ordering::Relaxed);
        self.picker.store(Arc::new(Pick {
            picker: Picker::build(&self.lb, &chosen),
            indices,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshConfig;

    #[test]
    fn thresholds_bound_requests_and_retries_separately() {
        let config = MeshConfig::from_yaml(
            "clusters:\n  pool:\n    thresholds: { max_requests: 3, max_retries: 1 }\n    endpoints: [{ address: \"127.0.0.1:1\" }]\n",
        )
        .and_then(|c| Snapshot::build(c, 1))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let routing = Routing::build(Arc::new(config), None, None);
        let Some(pool) = routing.cluster("pool") else {
            unreachable!("the pool cluster exists")
        };
        let first = pool.admit(false);
        let retry = pool.admit(true);
        assert!(first.is_ok() && retry.is_ok());
        let second_retry = pool.admit(true).err().map(|e| e.threshold);
        assert_eq!(second_retry, Some("max_retries"));
        let third = pool.admit(false);
        assert!(third.is_ok());
        assert_eq!(
            pool.admit(false).err().map(|e| e.threshold),
            Some("max_requests")
        );
        drop(retry);
        let again = pool.admit(true);
        assert!(again.is_ok(), "a slot of each is free again");
        assert_eq!(
            pool.admit(false).err().map(|e| e.threshold),
            Some("max_requests")
        );
        drop((first, third, again));
        assert!(pool.admit(true).is_ok());
    }
}
