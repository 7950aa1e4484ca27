use super::validate::{Fields, checked_cluster, checked_route};
use super::{ClusterConfig, Health, Locality, MeshConfig};
use crate::error::ConfigError;
use crate::retry::RetryConfig;
use http::{HeaderName, Method, Request};
use regex::Regex;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A validated, immutable configuration with a version.
///
/// Built once per configuration change, off the request path, and shared
/// behind an `Arc`; requests only read it.
#[derive(Debug)]
pub struct Snapshot {
    version: u64,
    services: Vec<Service>,
    service_index: HashMap<String, usize>,
    clusters: HashMap<String, Arc<Cluster>>,
    config: MeshConfig,
}

impl Snapshot {
    /// Validates `config` and compiles it (regular expressions, header
    /// names, addresses, split weights). The first invalid field is
    /// reported with its path; nothing is built then.
    pub fn build(config: MeshConfig, version: u64) -> Result<Self, ConfigError> {
        let mut clusters = HashMap::with_capacity(config.clusters.len());
        for (name, cluster) in &config.clusters {
            let at = Fields::root("clusters").key(name);
            clusters.insert(name.clone(), Arc::new(checked_cluster(&at, name, cluster)?));
        }
        let mut services = Vec::with_capacity(config.services.len());
        let mut service_index = HashMap::with_capacity(config.services.len());
        for (name, service) in &config.services {
            let at = Fields::root("services").key(name);
            at.check_name(name)?;
            if service.routes.is_empty() {
                return Err(at.field("routes").error("must have at least one route"));
            }
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
            });
        }
        Ok(Self {
            version,
            services,
            service_index,
            clusters,
            config,
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

    /// The configuration the snapshot was built from.
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }
}

/// A validated service.
#[derive(Debug)]
pub struct Service {
    name: String,
    routes: Vec<Route>,
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
        if let Some(method) = &self.method {
            if request.method() != method {
                return false;
            }
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
}

/// A validated cluster.
#[derive(Debug)]
pub struct Cluster {
    pub(super) name: String,
    pub(super) config: ClusterConfig,
    pub(super) endpoints: Vec<Endpoint>,
}

impl Cluster {
    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its policies. The endpoints are in [`Cluster::endpoints`] (this
    /// copy's list is empty); the configuration as given is in
    /// [`Snapshot::config`].
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Its endpoints, with parsed addresses.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
}

/// A validated endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where it listens.
    pub address: SocketAddr,
    /// Weight among the cluster's endpoints.
    pub weight: u32,
    /// Where it runs.
    pub locality: Locality,
    /// Failover priority (0 first).
    pub priority: u32,
    /// Reported health.
    pub health: Health,
    /// Labels.
    pub metadata: BTreeMap<String, String>,
}
