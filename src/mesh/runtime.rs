//! What requests use besides the snapshot: per cluster, the endpoints'
//! loads and outlier state, a picker over those that take traffic, and the
//! cluster's thresholds.
//!
//! A whole new snapshot makes a whole new routing, carrying over the state
//! of endpoints that stay. A change to one cluster's endpoints makes a new
//! runtime for that cluster alone, and costs about the size of the change
//! (not of the cluster) when the cluster's endpoints all take traffic and
//! its picker can take the change (see [`Picker::changed`]); otherwise its
//! picker is rebuilt.

use super::cluster_metrics::{EndpointGauges, EndpointState};
use super::fault::Faults;
use super::locality::{Candidate, select};
use super::outlier::{Detector, EndpointOutlier, Outliers, Result_ as OutlierResult};
use super::route::ClusterOverloaded;
use super::thresholds::{ClusterPermit, Limits};
use crate::balance::{
    EndpointLoad, HashKey, Picker, PickerChange, PickerEndpoint, hash_key, shared_authority,
};
use crate::breaker::BreakerLayer;
use crate::classify::{Classifiers, SharedClassifier, StatusClassifier};
use crate::config::{
    Cluster, Endpoint, EndpointOp, Health, LbPolicy, Locality, LocalityLbConfig, Protocol, Route,
    Snapshot,
};
use crate::cow_list::CowList;
use crate::retry::RetryLayer;
use crate::timeout::{TimeoutConfig, TimeoutLayer};
use arc_swap::ArcSwap;
use http::uri::Authority;
use http::{HeaderName, Request};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(super) struct Routing {
    pub(super) snapshot: Arc<Snapshot>,
    clusters: HashMap<String, Arc<ClusterRuntime>>,
    /// Per service (in snapshot order), per route: what the route's
    /// requests share at run time.
    routes: Arc<[Vec<RouteRuntime>]>,
}

/// What a route's requests share at run time.
#[derive(Debug)]
pub(super) struct RouteRuntime {
    /// The route's timeout.
    pub(super) timeout: Option<TimeoutLayer>,
    /// The retry layer, whose budget the route's requests share.
    pub(super) retry: Option<RetryLayer<SharedClassifier>>,
    /// The classifier the retry layer was made with.
    retry_classifier: Option<SharedClassifier>,
    /// Fault injection, with its count of faults in progress.
    pub(super) faults: Option<Faults>,
}

impl RouteRuntime {
    /// The state of route `i` of a service, carried over from the route
    /// that had the same policy before (the same place first, then any of
    /// the service's), so that an update keeping a policy keeps its retry
    /// budget and its count of active faults: a control plane that pushes
    /// often must not reset the budget that bounds retries.
    fn new(
        service: &str,
        route: &Route,
        i: usize,
        before: Option<&[RouteRuntime]>,
        classifiers: &Classifiers,
    ) -> Self {
        let before = before.unwrap_or_default();
        let same_place_first = before.get(i).into_iter().chain(before);
        // Checked against the registry before the snapshot was built.
        let classifier = classifiers
            .select(route.classifier())
            .unwrap_or_else(default_classifier);
        let retry = route.retry().and_then(|config| {
            let kept = same_place_first
                .clone()
                .filter(|r| same_classifier(r.retry_classifier.as_ref(), &classifier))
                .filter_map(|r| r.retry.as_ref())
                .find(|layer| layer.config() == config);
            // Validated with the snapshot: building cannot fail.
            // A new layer counts under its service and route (its index:
            // routes have no names); a kept one, under those it was made
            // for, the same place first.
            kept.cloned().or_else(|| {
                RetryLayer::with_classifier(config.clone(), classifier.clone())
                    .ok()
                    .map(|layer| {
                        layer.with_metric_labels([
                            ("service", service.to_owned()),
                            ("route", i.to_string()),
                        ])
                    })
            })
        });
        let timeout = route
            .timeout()
            .and_then(|t| TimeoutLayer::new(TimeoutConfig::after(t)).ok());
        let faults = route.fault().map(|config| {
            let kept = same_place_first
                .filter_map(|r| r.faults.as_ref())
                .find(|faults| faults.config() == config);
            kept.cloned().unwrap_or_else(|| Faults::new(config.clone()))
        });
        Self {
            timeout,
            retry_classifier: retry.as_ref().map(|_| classifier),
            retry,
            faults,
        }
    }
}

fn same_classifier(kept: Option<&SharedClassifier>, new: &SharedClassifier) -> bool {
    kept.is_some_and(|kept| Arc::ptr_eq(kept, new))
}

impl Routing {
    pub(super) fn build(
        snapshot: Arc<Snapshot>,
        previous: Option<&Routing>,
        local: Option<&Locality>,
        classifiers: &Classifiers,
    ) -> Self {
        let mut clusters = HashMap::new();
        for name in snapshot.config().clusters.keys() {
            let Some(cluster) = snapshot.cluster(name) else {
                continue;
            };
            let old = previous.and_then(|p| p.clusters.get(name));
            let classifier = classifiers
                .select(cluster.config().classifier.as_deref())
                .unwrap_or_else(default_classifier);
            let runtime =
                ClusterRuntime::new(cluster.clone(), old.map(|o| &**o), local, classifier);
            clusters.insert(name.clone(), Arc::new(runtime));
        }
        // The previous routes by service, found by name once.
        let before: HashMap<&str, &[RouteRuntime]> = previous
            .map(|p| {
                p.snapshot
                    .services_in_order()
                    .iter()
                    .zip(p.routes.iter())
                    .map(|(service, routes)| (service.name(), routes.as_slice()))
                    .collect()
            })
            .unwrap_or_default();
        let routes = snapshot
            .services_in_order()
            .iter()
            .map(|service| {
                let before = before.get(service.name()).copied();
                service
                    .routes()
                    .iter()
                    .enumerate()
                    .map(|(i, route)| {
                        RouteRuntime::new(service.name(), route, i, before, classifiers)
                    })
                    .collect()
            })
            .collect();
        // A cluster the new snapshot drops has no endpoints any more.
        for (name, old) in previous.iter().flat_map(|p| &p.clusters) {
            if !clusters.contains_key(name) {
                old.endpoint_gauges.clear();
            }
        }
        Self {
            snapshot,
            clusters,
            routes,
        }
    }

    /// This routing after `ops` changed the endpoints of cluster `name`;
    /// `snapshot` already holds the changed cluster.
    /// With `ops` `None`, the cluster's endpoints were replaced whole: its
    /// runtime is made anew, keeping the state of endpoints that stay.
    pub(super) fn with_changes(
        &self,
        snapshot: Arc<Snapshot>,
        name: &str,
        ops: Option<&[EndpointOp]>,
    ) -> Self {
        let mut clusters = self.clusters.clone();
        if let (Some(old), Some(cluster)) = (self.clusters.get(name), snapshot.cluster(name)) {
            let runtime = match ops {
                Some(ops) => old.changed(cluster.clone(), ops),
                None => ClusterRuntime::new(
                    cluster.clone(),
                    Some(old),
                    old.placement.local.as_ref(),
                    old.classifier.clone(),
                ),
            };
            clusters.insert(name.to_owned(), Arc::new(runtime));
        }
        Self {
            snapshot,
            clusters,
            routes: self.routes.clone(),
        }
    }

    pub(super) fn cluster(&self, name: &str) -> Option<&Arc<ClusterRuntime>> {
        self.clusters.get(name)
    }

    /// The run-time state of a route, by (service, route) index.
    pub(super) fn route(&self, (service, route): (usize, usize)) -> Option<&RouteRuntime> {
        self.routes.get(service)?.get(route)
    }
}

/// Past this many endpoint changes at once, the picker is rebuilt rather
/// than changed one endpoint at a time.
const LARGE_CHANGE: usize = 32;

#[derive(Debug)]
pub(super) struct ClusterRuntime {
    pub(super) name: String,
    /// The snapshot's cluster: endpoints' addresses, weights, health,
    /// localities; policies.
    cluster: Arc<Cluster>,
    /// The endpoints' loads, in the cluster's endpoint order.
    loads: CowList<Arc<EndpointLoad>>,
    /// The endpoints' addresses as URI authorities, in the same order:
    /// made once per endpoint, where formatting the address per request
    /// would allocate.
    authorities: CowList<Option<Authority>>,
    /// The endpoints' outlier state, in the same order.
    outliers: Outliers,
    /// Picks among the endpoints that take traffic.
    picker: ArcSwap<Pick>,
    detector: Option<Arc<Detector>>,
    /// When the next ejection ends (ms on the detector's clock).
    next_release: AtomicU64,
    rebuilding: Mutex<()>,
    hash_header: Option<HeaderName>,
    pub(super) protocol: Protocol,
    limits: Arc<Limits>,
    placement: Placement,
    /// Judges outcomes for outlier detection and the breaker.
    classifier: SharedClassifier,
    /// The cluster's breaker, shared by its requests.
    breaker: Option<BreakerLayer<SharedClassifier>>,
    /// `sinew_endpoints` of the cluster, set at each change of its
    /// endpoints or their states.
    endpoint_gauges: Arc<EndpointGauges>,
}

/// The classifier of policies that name none.
pub(super) fn default_classifier() -> SharedClassifier {
    Arc::new(StatusClassifier::default())
}

/// Where the caller is, and the cluster's locality settings.
#[derive(Clone, Debug)]
struct Placement {
    settings: LocalityLbConfig,
    local: Option<Locality>,
}

impl Placement {
    /// Whether zone preference can narrow the endpoints to an endpoint
    /// at `locality`'s disadvantage.
    fn excludes(&self, locality: &Locality) -> bool {
        self.settings.prefer_local_zone && self.local.as_ref().is_some_and(|l| l != locality)
    }
}

/// A picker, and which endpoint each of its indices stands for.
#[derive(Debug)]
struct Pick {
    picker: Picker,
    /// `None` when the picker's indices are the endpoints' own.
    indices: Option<Vec<u32>>,
    /// Set when every endpoint takes traffic, all at this priority, none
    /// held back by zone preference: a change whose endpoints are healthy
    /// and match keeps it so, and can go to the picker alone.
    open_at: Option<u32>,
    /// The detector's count of ejection changes this pick reflects.
    epoch: u64,
}

/// An endpoint and its state, as [`ClusterRuntime::endpoint_view`] sees it.
pub(super) struct EndpointView<'a> {
    pub(super) endpoint: &'a Endpoint,
    pub(super) ejected: bool,
    pub(super) in_rotation: bool,
}

/// The endpoint picked for one attempt.
#[derive(Clone, Debug)]
pub(super) struct Picked {
    pub(super) address: SocketAddr,
    /// `address` as a URI authority (`None` only if it could not be made).
    pub(super) authority: Option<Authority>,
    pub(super) load: Arc<EndpointLoad>,
    pub(super) outlier: Arc<EndpointOutlier>,
}

impl ClusterRuntime {
    /// A runtime for `cluster`, keeping the state `previous` held for
    /// endpoints that stay.
    fn new(
        cluster: Arc<Cluster>,
        previous: Option<&ClusterRuntime>,
        local: Option<&Locality>,
        classifier: SharedClassifier,
    ) -> Self {
        let mut kept = crate::addr_hash::addr_map::<usize>(previous.map_or(0, |p| p.loads.len()));
        if let Some(p) = previous {
            kept.extend(
                p.cluster
                    .endpoints()
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.address, i)),
            );
        }
        let mut loads = CowList::default();
        let mut outliers: Outliers = CowList::default();
        let mut authorities = CowList::default();
        for e in cluster.endpoints().iter() {
            let old = previous.and_then(|p| Some((p, *kept.get(&e.address)?)));
            authorities.push(
                old.and_then(|(p, i)| p.authorities.get(i).cloned())
                    .unwrap_or_else(|| shared_authority(e.address)),
            );
            loads.push(
                old.and_then(|(p, i)| p.loads.get(i).cloned())
                    .unwrap_or_default(),
            );
            outliers.push(
                old.and_then(|(p, i)| p.outliers.get(i).cloned())
                    .unwrap_or_default(),
            );
        }
        let config = cluster.config();
        let detector = config.outlier_detection.clone().map(|c| {
            let before = previous.and_then(|p| p.detector.as_deref());
            Arc::new(Detector::following(c, before, &outliers, cluster.name()))
        });
        let hash_header = match &config.lb {
            LbPolicy::RingHash { header, .. } | LbPolicy::Maglev { header } => header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            _ => None,
        };
        let limits = match previous {
            Some(p) if p.limits.thresholds() == config.thresholds => p.limits.clone(),
            _ => Arc::new(Limits::new(config.thresholds)),
        };
        // The breaker's state (open, its window) outlives updates that keep
        // its settings and classifier.
        let breaker = config.breaker.as_ref().and_then(|settings| {
            let kept = previous.filter(|p| {
                p.cluster.config().breaker.as_ref() == Some(settings)
                    && Arc::ptr_eq(&p.classifier, &classifier)
            });
            match kept.and_then(|p| p.breaker.clone()) {
                Some(breaker) => Some(breaker),
                // Validated with the snapshot: building cannot fail.
                None => BreakerLayer::with_classifier(*settings, classifier.clone())
                    .ok()
                    .map(|b| b.with_metric_labels([("cluster", cluster.name().to_owned())])),
            }
        });
        let endpoint_gauges = previous.map_or_else(
            || Arc::new(EndpointGauges::new(cluster.name())),
            |p| p.endpoint_gauges.clone(),
        );
        let runtime = Self {
            name: cluster.name().to_owned(),
            endpoint_gauges,
            picker: ArcSwap::from_pointee(Pick {
                picker: Picker::build(&config.lb, &[]),
                indices: None,
                open_at: None,
                epoch: 0,
            }),
            loads,
            authorities,
            outliers,
            detector,
            next_release: AtomicU64::new(u64::MAX),
            rebuilding: Mutex::new(()),
            hash_header,
            protocol: config.protocol,
            limits,
            placement: Placement {
                settings: config.locality_lb,
                local: local.cloned(),
            },
            classifier,
            breaker,
            cluster,
        };
        runtime.rebuild();
        runtime
    }

    /// This runtime after `ops` changed the endpoints: `cluster` is the
    /// changed cluster. Removals come first in `ops`, so the index of each
    /// replaced or added endpoint is its index in `cluster`.
    fn changed(&self, cluster: Arc<Cluster>, ops: &[EndpointOp]) -> Self {
        let mut loads = self.loads.clone();
        let mut authorities = self.authorities.clone();
        let mut outliers = self.outliers.clone();
        let current = self.picker.load_full();
        // A large change goes to a rebuilt picker: one pass over the
        // endpoints costs less than many single changes.
        let mut open_at = current
            .open_at
            .filter(|_| current.indices.is_none() && ops.len() <= LARGE_CHANGE);
        let mut picker: Option<Picker> = None;
        for op in ops {
            let (change_at, endpoint) = match *op {
                EndpointOp::Removed(i) => {
                    if let (Some(outlier), Some(detector)) =
                        (outliers.swap_remove(i), &self.detector)
                    {
                        detector.forget(&outlier);
                    }
                    loads.swap_remove(i);
                    authorities.swap_remove(i);
                    (i, None)
                }
                EndpointOp::Replaced(i) => (i, cluster.endpoints().get(i)),
                EndpointOp::Added => {
                    loads.push(Arc::default());
                    outliers.push(Arc::default());
                    authorities.push(
                        cluster
                            .endpoints()
                            .get(loads.len() - 1)
                            .and_then(|e| shared_authority(e.address)),
                    );
                    (loads.len() - 1, cluster.endpoints().get(loads.len() - 1))
                }
            };
            let Some(priority) = open_at else {
                continue;
            };
            if endpoint.is_some_and(|e| !self.takes_traffic_at(e, priority)) {
                open_at = None;
                continue;
            }
            let entry = endpoint.and_then(|e| {
                Some(PickerEndpoint {
                    address: e.address,
                    weight: e.weight,
                    load: loads.get(change_at)?.clone(),
                })
            });
            let change = match (op, &entry) {
                (EndpointOp::Removed(i), _) => PickerChange::Removed(*i),
                (EndpointOp::Replaced(i), Some(e)) => PickerChange::Replaced(*i, e),
                (EndpointOp::Added, Some(e)) => PickerChange::Added(e),
                _ => {
                    open_at = None;
                    continue;
                }
            };
            picker = picker.as_ref().unwrap_or(&current.picker).changed(&change);
            if picker.is_none() {
                open_at = None;
            }
        }
        let pick = match (open_at, picker) {
            (Some(priority), Some(picker)) => Arc::new(Pick {
                picker,
                indices: None,
                open_at: Some(priority),
                epoch: current.epoch,
            }),
            // Nothing changed the endpoints: the pick stands.
            (Some(_), None) if ops.is_empty() => current,
            _ => Arc::new(Pick {
                picker: Picker::build(&LbPolicy::Random, &[]),
                indices: None,
                open_at: None,
                epoch: u64::MAX,
            }),
        };
        let rebuild = pick.open_at.is_none();
        let runtime = Self {
            name: self.name.clone(),
            cluster,
            loads,
            authorities,
            outliers,
            picker: ArcSwap::new(pick),
            detector: self.detector.clone(),
            next_release: AtomicU64::new(self.next_release.load(Ordering::Relaxed)),
            rebuilding: Mutex::new(()),
            hash_header: self.hash_header.clone(),
            protocol: self.protocol,
            limits: self.limits.clone(),
            placement: self.placement.clone(),
            classifier: self.classifier.clone(),
            breaker: self.breaker.clone(),
            endpoint_gauges: self.endpoint_gauges.clone(),
        };
        if rebuild {
            runtime.rebuild();
        } else {
            // The change kept every endpoint taking traffic.
            runtime.endpoint_gauges.all_healthy(runtime.loads.len());
        }
        runtime
    }

    /// Whether `endpoint` takes traffic in a cluster whose endpoints all
    /// do, at `priority`.
    fn takes_traffic_at(&self, endpoint: &Endpoint, priority: u32) -> bool {
        endpoint.health == Health::Healthy
            && endpoint.priority == priority
            && !self.placement.excludes(&endpoint.locality)
    }

    /// The endpoint for `request`, or `None` when the cluster has none in
    /// service.
    pub(super) fn pick<B>(&self, request: &Request<B>) -> Option<Picked> {
        if let Some(detector) = &self.detector {
            let now = detector.now_ms();
            if now >= self.next_release.load(Ordering::Relaxed)
                && detector.release(&self.outliers, now)
            {
                self.rebuild();
            }
        }
        let hash = self
            .hash_header
            .as_ref()
            .and_then(|name| request.headers().get(name))
            .map(|v| hash_key(v.as_bytes()))
            .or_else(|| request.extensions().get::<HashKey>().map(|k| k.0));
        let pick = self.picker.load();
        let i = pick.picker.pick(hash)?;
        let i = match &pick.indices {
            None => i,
            Some(indices) => *indices.get(i)? as usize,
        };
        Some(Picked {
            address: self.cluster.endpoints().get(i)?.address,
            authority: self.authorities.get(i).cloned().flatten(),
            load: self.loads.get(i)?.clone(),
            outlier: self.outliers.get(i)?.clone(),
        })
    }

    /// Each endpoint with its state now, for [`Mesh::explain`](super::Mesh::explain).
    pub(super) fn endpoint_view(&self) -> Vec<EndpointView<'_>> {
        let now = self.detector.as_ref().map(|d| d.now_ms());
        let pick = self.picker.load();
        self.cluster
            .endpoints()
            .iter()
            .zip(self.outliers.iter())
            .enumerate()
            .map(|(i, (endpoint, outlier))| EndpointView {
                endpoint,
                ejected: now.is_some_and(|now| outlier.is_ejected(now)),
                in_rotation: pick
                    .indices
                    .as_ref()
                    .is_none_or(|chosen| chosen.contains(&(i as u32))),
            })
            .collect()
    }

    /// Whether the cluster's endpoints may only be spoken to over mutual
    /// TLS.
    pub(super) fn requires_mtls(&self) -> bool {
        self.cluster.config().requires_mtls()
    }

    /// The classifier of the cluster's outcomes (outlier detection, the
    /// breaker).
    pub(super) fn classifier(&self) -> &SharedClassifier {
        &self.classifier
    }

    /// The cluster's breaker, if it has one.
    pub(super) fn breaker(&self) -> Option<&BreakerLayer<SharedClassifier>> {
        self.breaker.as_ref()
    }

    /// Counts a request against the cluster's thresholds (and a retry
    /// against `max_retries` too), waiting in line when `max_requests` are
    /// in flight, or refuses it.
    pub(super) async fn admit(&self, retry: bool) -> Result<ClusterPermit, ClusterOverloaded> {
        self.limits
            .admit(retry)
            .await
            .map_err(|(threshold, limit)| ClusterOverloaded {
                cluster: self.name.clone(),
                threshold,
                limit,
            })
    }

    /// Feeds a response's result to outlier detection.
    pub(super) fn record(&self, endpoint: &EndpointOutlier, result: OutlierResult) {
        let Some(detector) = &self.detector else {
            return;
        };
        // An ejection made through an older runtime of the cluster (one a
        // request still held) shows in the epoch.
        if detector.record(&self.outliers, endpoint, result)
            || self.picker.load().epoch != detector.epoch()
        {
            self.rebuild();
        }
    }

    /// Rebuilds the picker over the endpoints that take traffic (see
    /// [`select`]), and notes when the next ejection ends.
    fn rebuild(&self) {
        let Ok(_only_one) = self.rebuilding.try_lock() else {
            return;
        };
        let epoch = self.detector.as_ref().map_or(0, |d| d.epoch());
        let now = self.detector.as_ref().map_or(0, |d| d.now_ms());
        let endpoints = self.cluster.endpoints();
        // The endpoints' states are counted in the same pass.
        let mut states = EndpointState::counter();
        let candidates: Vec<Candidate<'_>> = endpoints
            .iter()
            .zip(self.outliers.iter())
            .map(|(e, o)| {
                let ejected = o.is_ejected(now);
                states.add(EndpointState::of(e.health, ejected));
                Candidate {
                    priority: e.priority,
                    locality: &e.locality,
                    available: e.health == Health::Healthy && !ejected,
                }
            })
            .collect();
        self.endpoint_gauges.show(&states);
        let chosen = select(
            &candidates,
            &self.placement.settings,
            self.placement.local.as_ref(),
        );
        let first = endpoints.get(0).map_or(0, |e| e.priority);
        let open = candidates.iter().all(|c| c.available)
            && endpoints
                .iter()
                .all(|e| e.priority == first && !self.placement.excludes(&e.locality));
        let entries: Vec<PickerEndpoint> = chosen
            .iter()
            .filter_map(|&i| {
                Some(PickerEndpoint {
                    address: endpoints.get(i)?.address,
                    weight: endpoints.get(i)?.weight,
                    load: self.loads.get(i)?.clone(),
                })
            })
            .collect();
        let next = self
            .outliers
            .iter()
            .filter_map(|o| o.ejected_until())
            .min()
            .unwrap_or(u64::MAX);
        self.next_release.store(next, Ordering::Relaxed);
        let identity = chosen.len() == endpoints.len();
        self.picker.store(Arc::new(Pick {
            picker: Picker::build(&self.cluster.config().lb, &entries),
            indices: (!identity).then(|| chosen.iter().map(|&i| i as u32).collect()),
            open_at: open.then_some(first),
            epoch,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EndpointChanges, EndpointConfig, MeshConfig};

    fn routing(yaml: &str) -> Routing {
        let snapshot = MeshConfig::from_yaml(yaml)
            .and_then(|c| Snapshot::build(c, 1))
            .unwrap_or_else(|e| unreachable!("{e}"));
        Routing::build(Arc::new(snapshot), None, None, &Classifiers::default())
    }

    fn change(routing: &Routing, changes: &EndpointChanges) -> Routing {
        let (snapshot, ops) = routing
            .snapshot
            .changed("pool", changes, 2)
            .unwrap_or_else(|e| unreachable!("{e}"));
        routing.with_changes(Arc::new(snapshot), "pool", Some(&ops))
    }

    /// The endpoints `n` picks reached, each checked to carry its own
    /// address as its authority.
    fn picks(routing: &Routing, n: usize) -> Vec<SocketAddr> {
        let pool = routing.cluster("pool").cloned();
        let request = Request::new(());
        let mut seen: Vec<SocketAddr> = (0..n)
            .filter_map(|_| pool.as_ref()?.pick(&request))
            .map(|p| {
                let authority = p.authority.map(|a| a.to_string());
                assert_eq!(authority, Some(p.address.to_string()));
                p.address
            })
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_change_keeps_the_state_of_endpoints_that_stay() {
        let before = routing(
            "clusters:\n  pool:\n    lb: { policy: round_robin }\n    endpoints: [{ address: \"127.0.0.1:1\" }, { address: \"127.0.0.1:2\" }, { address: \"127.0.0.1:3\" }]\n",
        );
        let old = before.cluster("pool").cloned();
        let load_of_3 = old
            .as_ref()
            .and_then(|c| c.loads.get(2).cloned())
            .unwrap_or_default();
        let _busy = load_of_3.start();
        let after = change(
            &before,
            &EndpointChanges {
                upsert: vec![EndpointConfig::new("127.0.0.1:4")],
                remove: vec!["127.0.0.1:1".into()],
            },
        );
        assert_eq!(
            picks(&after, 30),
            [
                addr("127.0.0.1:2"),
                addr("127.0.0.1:3"),
                addr("127.0.0.1:4")
            ]
        );
        let pool = after.cluster("pool").cloned();
        let moved = pool.as_ref().and_then(|c| {
            let i = c
                .cluster
                .endpoints()
                .iter()
                .position(|e| e.address == addr("127.0.0.1:3"))?;
            c.loads.get(i).cloned()
        });
        assert!(
            moved.is_some_and(|l| Arc::ptr_eq(&l, &load_of_3) && l.inflight() == 1),
            "the endpoint that stayed kept its load"
        );
        assert!(
            pool.is_some_and(|c| c.picker.load().open_at.is_some()),
            "taken without a rebuild"
        );
        assert_eq!(picks(&before, 30).len(), 3, "the old routing is untouched");
    }

    #[test]
    fn a_change_that_narrows_the_endpoints_rebuilds_the_picker() {
        let before = routing(
            "clusters:\n  pool:\n    endpoints: [{ address: \"127.0.0.1:1\" }, { address: \"127.0.0.1:2\" }, { address: \"127.0.0.1:3\" }, { address: \"127.0.0.1:4\" }]\n",
        );
        let mut draining = EndpointConfig::new("127.0.0.1:2");
        draining.health = Health::Draining;
        let mut standby = EndpointConfig::new("127.0.0.1:5");
        standby.priority = 1;
        let narrowed = change(
            &before,
            &EndpointChanges {
                upsert: vec![draining, standby],
                remove: vec![],
            },
        );
        let up = [
            addr("127.0.0.1:1"),
            addr("127.0.0.1:3"),
            addr("127.0.0.1:4"),
        ];
        assert_eq!(picks(&narrowed, 60), up, "no draining, no standby");
        let pool = narrowed.cluster("pool").cloned();
        assert!(pool.is_some_and(|c| c.picker.load().open_at.is_none()));

        // Two of three available at priority 0: under the failover
        // threshold (70%).
        let failed_over = change(
            &narrowed,
            &EndpointChanges {
                upsert: vec![],
                remove: vec!["127.0.0.1:1".into()],
            },
        );
        assert_eq!(picks(&failed_over, 60), [addr("127.0.0.1:5")]);
    }

    #[test]
    fn removing_every_endpoint_leaves_none_to_pick() {
        let before = routing("clusters:\n  pool:\n    endpoints: [{ address: \"127.0.0.1:1\" }]\n");
        let after = change(
            &before,
            &EndpointChanges {
                upsert: vec![],
                remove: vec!["127.0.0.1:1".into()],
            },
        );
        assert!(picks(&after, 5).is_empty());
        let again = change(
            &after,
            &EndpointChanges {
                upsert: vec![EndpointConfig::new("127.0.0.1:9")],
                remove: vec![],
            },
        );
        assert_eq!(picks(&again, 5), [addr("127.0.0.1:9")]);
    }

    #[test]
    fn an_update_that_keeps_a_policy_keeps_its_budget_and_active_faults() {
        let yaml = |retry_ratio: &str, other_route: &str| {
            format!(
                "services:\n  reviews:\n    routes:\n{other_route}      - split: [{{ cluster: pool }}]\n        retry: {{ budget: {{ ratio: {retry_ratio} }} }}\n        fault: {{ delay: {{ fixed: 1s, percent: 100 }}, max_active: 1 }}\nclusters:\n  pool:\n    endpoints: [{{ address: \"127.0.0.1:1\" }}]\n"
            )
        };
        // One registry, as a mesh holds: the same policy selects the same
        // classifier.
        let classifiers = Classifiers::default();
        let build = |yaml: &str, previous: Option<&Routing>| {
            let snapshot = MeshConfig::from_yaml(yaml)
                .and_then(|c| Snapshot::build(c, 2))
                .unwrap_or_else(|e| unreachable!("{e}"));
            Routing::build(Arc::new(snapshot), previous, None, &classifiers)
        };
        let first = build(&yaml("0.2", ""), None);
        let route =
            |r: &Routing, i: usize| -> (Option<RetryLayer<SharedClassifier>>, Option<Faults>) {
                let route = r.route((0, i));
                (
                    route.and_then(|r| r.retry.clone()),
                    route.and_then(|r| r.faults.clone()),
                )
            };
        let (retry, faults) = route(&first, 0);
        let held = faults.as_ref().and_then(Faults::draw);
        assert!(held.is_some(), "the one fault allowed is active");

        // The same policies, even moved behind a new route: the same
        // budget, and the active fault still counts.
        let moved =
            "      - match: { path: { prefix: /other } }\n        split: [{ cluster: pool }]\n";
        let second = build(&yaml("0.2", moved), Some(&first));
        let (kept, kept_faults) = route(&second, 1);
        let same = |a: &Option<RetryLayer<SharedClassifier>>,
                    b: &Option<RetryLayer<SharedClassifier>>| match (a, b) {
            (Some(a), Some(b)) => a.shares_state_with(b),
            _ => false,
        };
        assert!(same(&retry, &kept), "the budget is carried over");
        assert!(
            kept_faults.as_ref().and_then(Faults::draw).is_none(),
            "max_active still counts the fault in progress"
        );

        // A changed policy starts afresh.
        let third = build(&yaml("0.5", ""), Some(&second));
        let (fresh, _) = route(&third, 0);
        assert!(!same(&kept, &fresh));
        drop(held);
    }
}
