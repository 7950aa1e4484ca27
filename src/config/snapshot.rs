use super::changes::{EndpointChanges, EndpointOp};
use super::validate::{
    Fields, Localities, checked_address, checked_cluster, checked_endpoint, checked_route,
};
use super::{ClusterConfig, EndpointConfig, FaultConfig, Health, Locality, MeshConfig};
use crate::addr_hash::AddrMap;
use crate::cow_list::CowList;
use crate::error::ConfigError;
use crate::retry::RetryConfig;
use http::{HeaderName, Method, Request};
use regex::Regex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A validated, immutable configuration with a version.
///
/// Built once per configuration change, off the request path, and shared
/// behind an `Arc`; requests only read it. A change to one cluster's
/// endpoints ([`Snapshot::with_endpoint_changes`]) makes a new snapshot
/// that shares everything else with this one.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    services: Arc<[Service]>,
    service_index: Arc<HashMap<String, usize>>,
    clusters: HashMap<String, Arc<Cluster>>,
    /// The configuration as given, without the clusters' endpoints (they
    /// live once, parsed, in `clusters`).
    config: Arc<MeshConfig>,
}

impl Snapshot {
    /// Validates `config` and compiles it (regular expressions, header
    /// names, addresses, split weights). The first invalid field is
    /// reported with its path; nothing is built then.
    pub fn build(mut config: MeshConfig, version: u64) -> Result<Self, ConfigError> {
        let mut clusters = HashMap::with_capacity(config.clusters.len());
        for (name, cluster) in &mut config.clusters {
            let at = Fields::root("clusters").key(name);
            let given = ClusterConfig {
                endpoints: std::mem::take(&mut cluster.endpoints),
                ..cluster.clone()
            };
            clusters.insert(name.clone(), Arc::new(checked_cluster(&at, name, given)?));
        }
        let mut services = Vec::with_capacity(config.services.len());
        let mut service_index = HashMap::with_capacity(config.services.len());
        for (name, service) in &config.services {
            let at = Fields::root("services").key(name);
            at.check_name(name)?;
            if service.routes.is_empty() && service.inbound.is_none() {
                return Err(at.field("routes").error("must have at least one route"));
            }
            if let Some(inbound) = &service.inbound {
                inbound
                    .validate()
                    .map_err(|e| e.within(&format!("services.{name}.inbound")))?;
            }
            // Compiled once per configuration version, off the request path.
            #[cfg(feature = "authz")]
            let authorization = match &service.inbound {
                Some(inbound) if !inbound.authorization.is_empty() => Some(Arc::new(
                    super::compile_policies("authorization", &inbound.authorization)
                        .map_err(|e| e.within(&format!("services.{name}.inbound")))?,
                )),
                _ => None,
            };
            let routes = service
                .routes
                .iter()
                .enumerate()
                .map(|(i, route)| checked_route(&at.field("routes").index(i), route, &clusters))
                .collect::<Result<_, _>>()?;
            service_index.insert(name.clone(), services.len());
            services.push(Service {
                name: name.clone(),
                routes,
                inbound: service.inbound.clone(),
                debug_header: service.debug_header,
                #[cfg(feature = "authz")]
                authorization,
            });
        }
        Ok(Self {
            version,
            services: services.into(),
            service_index: Arc::new(service_index),
            clusters,
            config: Arc::new(config),
        })
    }

    /// The version given to [`Snapshot::build`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.service_index(name).map(|i| &self.services[i])
    }

    #[cfg_attr(not(feature = "mesh"), allow(dead_code))]
    pub(crate) fn service_index(&self, name: &str) -> Option<usize> {
        self.service_index.get(name).copied()
    }

    #[cfg_attr(not(feature = "mesh"), allow(dead_code))]
    pub(crate) fn services_in_order(&self) -> &[Service] {
        &self.services
    }

    /// A cluster by name.
    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// The configuration the snapshot was built from, without the
    /// clusters' endpoints (see [`Cluster::endpoints`], or
    /// [`Snapshot::to_config`] for the whole).
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// The whole configuration in force, endpoints included, as a
    /// [`MeshConfig`] (for dumps and for editing). Costs a copy of every
    /// endpoint.
    pub fn to_config(&self) -> MeshConfig {
        let mut config = MeshConfig::clone(&self.config);
        for (name, cluster) in &mut config.clusters {
            if let Some(built) = self.clusters.get(name) {
                cluster.endpoints = built.endpoints.iter().map(Endpoint::to_config).collect();
            }
        }
        config
    }

    /// A snapshot with `changes` applied to the endpoints of `cluster`,
    /// sharing everything else with this one. Costs about the size of the
    /// change, not of the cluster: a one-endpoint change to a
    /// 100,000-endpoint cluster takes microseconds. Invalid changes are
    /// rejected with the field's path (`clusters.<name>.upsert[0].weight`)
    /// and nothing changes.
    ///
    /// ```
    /// use sinew::config::{EndpointChanges, EndpointConfig, MeshConfig, Snapshot};
    ///
    /// let config = MeshConfig::from_yaml(
    ///     "clusters:\n  pool:\n    endpoints: [{ address: \"10.0.0.1:80\" }]\n",
    /// )?;
    /// let first = Snapshot::build(config, 1)?;
    /// let changes = EndpointChanges {
    ///     upsert: vec![EndpointConfig::new("10.0.0.2:80")],
    ///     remove: vec!["10.0.0.1:80".into()],
    /// };
    /// let second = first.with_endpoint_changes("pool", &changes, 2)?;
    /// let pool = second.cluster("pool").unwrap();
    /// assert_eq!(pool.endpoints().len(), 1);
    /// assert_eq!(pool.endpoints().iter().next().unwrap().address.to_string(), "10.0.0.2:80");
    /// # Ok::<(), sinew::error::ConfigError>(())
    /// ```
    pub fn with_endpoint_changes(
        &self,
        cluster: &str,
        changes: &EndpointChanges,
        version: u64,
    ) -> Result<Self, ConfigError> {
        self.changed(cluster, changes, version).map(|(s, _)| s)
    }

    /// [`Snapshot::with_endpoint_changes`], also returning what happened to
    /// the list of endpoints, in order, so that state kept beside it can
    /// follow.
    pub(crate) fn changed(
        &self,
        name: &str,
        changes: &EndpointChanges,
        version: u64,
    ) -> Result<(Self, Vec<EndpointOp>), ConfigError> {
        let at = Fields::root("clusters").key(name);
        let Some(old) = self.clusters.get(name) else {
            return Err(at.error("no such cluster"));
        };
        let mut removed = HashSet::with_capacity(changes.remove.len());
        for (i, address) in changes.remove.iter().enumerate() {
            removed.insert(checked_address(&at.field("remove").index(i), address)?);
        }
        let mut upserts = Vec::with_capacity(changes.upsert.len());
        let mut localities = Localities::default();
        let mut seen = HashMap::with_capacity(changes.upsert.len());
        for (i, e) in changes.upsert.iter().enumerate() {
            let at = at.field("upsert").index(i);
            let endpoint = checked_endpoint(&at, e.clone(), &mut localities)?;
            if removed.contains(&endpoint.address) {
                return Err(at.field("address").error("is also in `remove`"));
            }
            if let Some(first) = seen.insert(endpoint.address, i) {
                return Err(at
                    .field("address")
                    .error(format!("duplicate of upsert[{first}]")));
            }
            upserts.push(endpoint);
        }
        let removed: Vec<SocketAddr> = changes
            .remove
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let (cluster, ops) = old.with_ops(&removed, upserts);
        Ok((self.with_cluster(name, cluster, version), ops))
    }

    /// A snapshot in which cluster `name` has exactly `endpoints` (distinct
    /// addresses, which the caller checked): what a discovery source's
    /// whole assignment says. A change of a few
    /// endpoints is applied as such (the ops are returned); a larger one
    /// makes the cluster's list anew (`None`), one pass over it.
    #[cfg_attr(not(feature = "xds"), allow(dead_code))]
    pub(crate) fn with_endpoints(
        &self,
        name: &str,
        endpoints: &[Endpoint],
        version: u64,
    ) -> Result<(Self, Option<Vec<EndpointOp>>), ConfigError> {
        let at = Fields::root("clusters").key(name);
        let Some(old) = self.clusters.get(name) else {
            return Err(at.error("no such cluster"));
        };
        // The source checked that addresses are distinct (a discovery
        // client must, to NACK a bad assignment); weights are checked here.
        if let Some((i, _)) = endpoints
            .iter()
            .enumerate()
            .find(|(_, e)| !(1..=super::validate::MAX_WEIGHT).contains(&e.weight))
        {
            return Err(at
                .field("endpoints")
                .index(i)
                .field("weight")
                .error(format!(
                    "must be between 1 and {}",
                    super::validate::MAX_WEIGHT
                )));
        }
        let mut current = crate::addr_hash::addr_map::<&Endpoint>(old.endpoints.len());
        current.extend(old.endpoints.iter().map(|e| (e.address, e)));
        let mut upserts = Vec::new();
        for e in endpoints {
            if current.remove(&e.address) != Some(e) {
                upserts.push(e.clone());
                if upserts.len() > LARGE_CHANGE {
                    break;
                }
            }
        }
        if upserts.len() + current.len() > LARGE_CHANGE || upserts.len() > LARGE_CHANGE {
            let cluster = Cluster::new(name.to_owned(), old.config.clone(), endpoints.to_vec());
            return Ok((self.with_cluster(name, cluster, version), None));
        }
        let removed: Vec<SocketAddr> = current.into_keys().collect();
        let (cluster, ops) = old.with_ops(&removed, upserts);
        Ok((self.with_cluster(name, cluster, version), Some(ops)))
    }

    /// This snapshot with one cluster replaced.
    fn with_cluster(&self, name: &str, cluster: Cluster, version: u64) -> Self {
        let mut clusters = self.clusters.clone();
        clusters.insert(name.to_owned(), Arc::new(cluster));
        Self {
            version,
            services: self.services.clone(),
            service_index: self.service_index.clone(),
            clusters,
            config: self.config.clone(),
        }
    }
}

/// Past this many endpoints changed at once, a change indexes the cluster's
/// endpoints by address instead of scanning for each.
const LARGE_CHANGE: usize = 32;

/// A validated service.
#[derive(Debug)]
pub struct Service {
    name: String,
    routes: Vec<Route>,
    inbound: Option<super::InboundConfig>,
    debug_header: bool,
    /// The inbound block's authorization policies, compiled; `None` when
    /// it has none (the service is open).
    #[cfg(feature = "authz")]
    authorization: Option<Arc<crate::authz::CompiledPolicies>>,
}

impl Service {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first route that takes `request`, if any.
    pub fn route<B>(&self, request: &Request<B>) -> Option<&Route> {
        self.routes.iter().find(|route| route.matches(request))
    }

    /// The routes, in order of precedence.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The inbound half, validated, when the configuration sets one.
    pub fn inbound(&self) -> Option<&super::InboundConfig> {
        self.inbound.as_ref()
    }

    /// Whether callers may ask for the decision's short form in a response
    /// header (`debug_header` in the configuration).
    pub fn debug_header(&self) -> bool {
        self.debug_header
    }

    /// The inbound block's authorization policies, compiled when the
    /// snapshot was built; `None` when there are none.
    #[cfg(feature = "authz")]
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn authorization(&self) -> Option<&Arc<crate::authz::CompiledPolicies>> {
        self.authorization.as_ref()
    }
}

/// A validated route.
#[derive(Debug)]
pub struct Route {
    pub(super) path: Option<PathMatcher>,
    pub(super) method: Option<Method>,
    pub(super) headers: Vec<(HeaderName, ValueMatcher)>,
    /// Cluster names with their cumulative weights.
    pub(super) split: Vec<(Arc<str>, u64)>,
    pub(super) timeout: Option<Duration>,
    pub(super) retry: Option<RetryConfig>,
    pub(super) hash_header: Option<HeaderName>,
    pub(super) fault: Option<FaultConfig>,
    /// Why the route fails its requests, when it does.
    pub(super) fail: Option<Arc<str>>,
    /// The name of the classifier its retry policy uses, when not the
    /// default.
    pub(super) classifier: Option<Arc<str>>,
}

#[derive(Debug)]
pub(super) enum PathMatcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
pub(super) enum ValueMatcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present(bool),
}

impl Route {
    /// Whether the route takes `request`.
    pub fn matches<B>(&self, request: &Request<B>) -> bool {
        if let Some(method) = &self.method
            && request.method() != method
        {
            return false;
        }
        if let Some(path) = &self.path {
            let actual = request.uri().path();
            let ok = match path {
                PathMatcher::Exact(p) => actual == p,
                PathMatcher::Prefix(p) => actual.starts_with(p.as_str()),
                PathMatcher::Regex(r) => r.is_match(actual),
            };
            if !ok {
                return false;
            }
        }
        self.headers.iter().all(|(name, matcher)| {
            let value = request.headers().get(name).and_then(|v| v.to_str().ok());
            match (matcher, value) {
                (ValueMatcher::Present(present), _) => {
                    request.headers().contains_key(name) == *present
                }
                (_, None) => false,
                (ValueMatcher::Exact(e), Some(v)) => v == e,
                (ValueMatcher::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
                (ValueMatcher::Regex(r), Some(v)) => r.is_match(v),
            }
        })
    }

    /// Why the route fails every request it takes, when it does (see
    /// [`RouteConfig::fail`](super::RouteConfig::fail)).
    pub fn fails(&self) -> Option<&str> {
        self.fail.as_deref()
    }

    /// The split: each cluster's name with its weight.
    pub fn split(&self) -> impl ExactSizeIterator<Item = (&str, u64)> + '_ {
        let mut below = 0;
        self.split.iter().map(move |(name, upto)| {
            let weight = upto - below;
            below = *upto;
            (&**name, weight)
        })
    }

    /// The sum of the split's weights.
    pub fn total_weight(&self) -> u64 {
        self.split.last().map_or(0, |(_, w)| *w)
    }

    /// The cluster for a roll in `0..total_weight()` (larger rolls wrap):
    /// each cluster gets a share of rolls equal to its weight.
    pub fn pick_cluster(&self, roll: u64) -> &str {
        self.pick(roll).map_or("", |(name, _)| name)
    }

    #[cfg_attr(not(feature = "mesh"), allow(dead_code))]
    pub(crate) fn cluster_arc(&self, roll: u64) -> Arc<str> {
        self.pick(roll)
            .map_or_else(|| Arc::from(""), |(name, _)| name.clone())
    }

    fn pick(&self, roll: u64) -> Option<&(Arc<str>, u64)> {
        let roll = roll % self.total_weight().max(1);
        let i = self.split.partition_point(|(_, upto)| *upto <= roll);
        self.split.get(i).or(self.split.last())
    }

    /// The route's overall timeout.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The route's retry (or hedging) policy.
    pub fn retry(&self) -> Option<&RetryConfig> {
        self.retry.as_ref()
    }

    /// The header whose value consistent hashing hashes for this route.
    pub fn hash_header(&self) -> Option<&HeaderName> {
        self.hash_header.as_ref()
    }

    /// The faults injected into this route's requests.
    pub fn fault(&self) -> Option<&FaultConfig> {
        self.fault.as_ref()
    }

    /// The name of the classifier the route's retry (or hedging) policy
    /// uses; `None` for the default (see
    /// [`RouteConfig::classifier`](super::RouteConfig::classifier)).
    pub fn classifier(&self) -> Option<&str> {
        self.classifier.as_deref()
    }
}

/// A validated cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    name: String,
    config: ClusterConfig,
    endpoints: Endpoints,
    /// A key per endpoint (see [`address_key`]), in the same order, so that
    /// finding an endpoint by address scans eight bytes per endpoint.
    keys: CowList<u64>,
}

impl Cluster {
    pub(super) fn new(name: String, config: ClusterConfig, endpoints: Vec<Endpoint>) -> Self {
        Self {
            name,
            keys: endpoints.iter().map(|e| address_key(e.address)).collect(),
            endpoints: Endpoints(endpoints.into_iter().collect()),
            config,
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its policies. The endpoints are in [`Cluster::endpoints`] (this
    /// copy's list is empty).
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Its endpoints, with parsed addresses.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// This cluster with `removed` taken out, then `upserts` put in (by
    /// address), and what happened to the list, in order.
    fn with_ops(&self, removed: &[SocketAddr], upserts: Vec<Endpoint>) -> (Self, Vec<EndpointOp>) {
        let mut cluster = self.clone();
        let mut ops = Vec::with_capacity(removed.len() + upserts.len());
        // A few changes scan for their endpoints (8 bytes per endpoint); a
        // large one indexes them first, so that it stays linear.
        let mut index: Option<AddrMap<usize>> = (removed.len() + upserts.len() > LARGE_CHANGE)
            .then(|| {
                let mut map = crate::addr_hash::addr_map(cluster.endpoints.len());
                map.extend(
                    cluster
                        .endpoints
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.address, i)),
                );
                map
            });
        let find = |cluster: &Cluster, index: &Option<AddrMap<usize>>, a| match index {
            Some(map) => map.get(&a).copied(),
            None => cluster.position(a),
        };
        for &address in removed {
            if let Some(i) = find(&cluster, &index, address) {
                cluster.swap_remove(i);
                if let Some(map) = &mut index {
                    map.remove(&address);
                    if let Some(moved) = cluster.endpoints.get(i) {
                        map.insert(moved.address, i);
                    }
                }
                ops.push(EndpointOp::Removed(i));
            }
        }
        for endpoint in upserts {
            match find(&cluster, &index, endpoint.address) {
                Some(i) => {
                    cluster.set(i, endpoint);
                    ops.push(EndpointOp::Replaced(i));
                }
                None => {
                    if let Some(map) = &mut index {
                        map.insert(endpoint.address, cluster.endpoints.len());
                    }
                    cluster.push(endpoint);
                    ops.push(EndpointOp::Added);
                }
            }
        }
        (cluster, ops)
    }

    fn position(&self, address: SocketAddr) -> Option<usize> {
        let key = address_key(address);
        self.keys.iter().enumerate().find_map(|(i, &k)| {
            (k == key && self.endpoints.get(i).is_some_and(|e| e.address == address)).then_some(i)
        })
    }

    fn set(&mut self, i: usize, endpoint: Endpoint) {
        self.keys.set(i, address_key(endpoint.address));
        self.endpoints.0.set(i, endpoint);
    }

    fn push(&mut self, endpoint: Endpoint) {
        self.keys.push(address_key(endpoint.address));
        self.endpoints.0.push(endpoint);
    }

    fn swap_remove(&mut self, i: usize) {
        self.keys.swap_remove(i);
        self.endpoints.0.swap_remove(i);
    }
}

/// An IPv4 address and port exactly; an IPv6 one hashed (a match is then
/// confirmed on the address itself).
fn address_key(address: SocketAddr) -> u64 {
    match address {
        SocketAddr::V4(v4) => (u64::from(v4.ip().to_bits()) << 16) | u64::from(v4.port()),
        SocketAddr::V6(v6) => {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            BuildHasherDefault::<DefaultHasher>::default().hash_one(v6) | 1 << 63
        }
    }
}

/// A cluster's endpoints. Versions of a cluster share the parts of this
/// list that did not change.
#[derive(Clone, Debug, Default)]
pub struct Endpoints(CowList<Endpoint>);

impl Endpoints {
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The endpoint at `index`.
    pub fn get(&self, index: usize) -> Option<&Endpoint> {
        self.0.get(index)
    }

    /// All of them. The order is the configuration's until endpoints are
    /// removed by a change, which moves the last one into the gap.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Endpoint> + Clone + '_ {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Endpoints {
    type Item = &'a Endpoint;
    type IntoIter = Box<dyn Iterator<Item = &'a Endpoint> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// A validated endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where it listens.
    pub address: SocketAddr,
    /// Weight among the cluster's endpoints.
    pub weight: u32,
    /// Where it runs (shared: a locality's endpoints hold one copy).
    pub locality: Arc<Locality>,
    /// Failover priority (0 first).
    pub priority: u32,
    /// Reported health.
    pub health: Health,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
}

impl Endpoint {
    /// The endpoint as configuration.
    pub fn to_config(&self) -> EndpointConfig {
        EndpointConfig {
            address: self.address.to_string(),
            weight: self.weight,
            locality: Locality::clone(&self.locality),
            priority: self.priority,
            health: self.health,
            metadata: self.metadata.clone(),
        }
    }
}
