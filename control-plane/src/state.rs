//! What the control plane serves: the mesh file's last good configuration
//! joined with the registry's live endpoints, turned into xDS resources
//! and published to every stream.
//!
//! A registration is admitted only when the mesh can take it: its cluster
//! with the new endpoint is validated (with the same code the clients
//! run) before the registry changes, so that nothing accepted can make a
//! later version invalid. A registry change re-encodes only its cluster;
//! a mesh file change rebuilds everything and is rejected, as a whole,
//! when the file with the registrations does not validate.

use crate::generate::server_listener::Endpoints;
use crate::generate::{CLUSTER, ENDPOINTS, Encoded, LISTENER, ROUTE, ResourceSet};
use crate::generate::{cluster_resources, resources_with, service_resources};
use crate::limits::Limits;
use crate::registry::{Invalid, Registration, Registry};
use serde::Serialize;
use sinew::config::{
    ClusterConfig, MeshConfig, RouteConfig, ServiceConfig, Snapshot, WeightedCluster,
};
use sinew::error::ConfigError;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// One published version of the mesh.
#[derive(Debug)]
pub struct Published {
    /// Increases with every change.
    pub version: u64,
    /// The services served: the mesh file's, and one per registered name
    /// the file does not know.
    pub services: BTreeMap<String, Arc<ServiceConfig>>,
    /// The clusters served, with their registered endpoints.
    pub clusters: BTreeMap<String, Arc<ClusterConfig>>,
    /// That configuration as xDS resources.
    pub resources: ResourceSet,
}

impl Published {
    /// The configuration served, as one mesh configuration.
    pub fn config(&self) -> MeshConfig {
        MeshConfig {
            services: self
                .services
                .iter()
                .map(|(n, s)| (n.clone(), (**s).clone()))
                .collect(),
            clusters: self
                .clusters
                .iter()
                .map(|(n, c)| (n.clone(), (**c).clone()))
                .collect(),
        }
    }
}

/// How the mesh file stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeshFileStatus {
    /// Versions of the file accepted so far (1 for the first).
    pub accepted: u64,
    /// The last rejected version's error, naming the field, until a
    /// later version is accepted.
    pub error: Option<String>,
    /// When the file was last read, changed or not, in milliseconds since
    /// the Unix epoch.
    pub checked_at_unix_ms: Option<u64>,
}

/// How publishing stands: a change that could not be published leaves
/// the previous version in force, and says so here until one is.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PublishStatus {
    /// Changes that could not be published, since the start.
    pub failures: u64,
    /// The last failure's error, until a later change is published.
    pub error: Option<String>,
}

/// Why a registration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A field is wrong, or the mesh cannot take it (`400`).
    Invalid(Invalid),
    /// A limit is reached (`429`).
    Full(Invalid),
}

/// The inputs and what was published from them.
#[derive(Debug)]
pub struct State {
    mesh: MeshConfig,
    pub(crate) mesh_status: MeshFileStatus,
    pub(crate) publish_status: PublishStatus,
    pub(crate) registry: Registry,
    limits: Limits,
    services: BTreeMap<String, Arc<ServiceConfig>>,
    clusters: BTreeMap<String, Arc<ClusterConfig>>,
    resources: ResourceSet,
    /// The endpoint addresses, for the server Listeners.
    endpoints: Endpoints,
    /// The certificate provider instance TLS contexts name.
    certificate_provider: String,
    publish: watch::Sender<Arc<Published>>,
}

/// A cluster validated and encoded, with the service made for it.
#[derive(Debug)]
struct Ready {
    service: Option<ServiceConfig>,
    encoded: [(&'static str, Arc<Encoded>); 2],
    cluster: ClusterConfig,
}

/// The service made for a registered name the mesh file does not know.
fn service_for(name: &str) -> ServiceConfig {
    ServiceConfig {
        routes: vec![RouteConfig {
            split: vec![WeightedCluster {
                cluster: name.to_owned(),
                weight: 1,
            }],
            ..RouteConfig::default()
        }],
        inbound: None,
        debug_header: false,
    }
}

impl State {
    /// State starting from `mesh` (valid) and the registrations `stored`
    /// (from the registry store), each admitted as a new registration
    /// would be. Returns why any of them was dropped: a store holding
    /// something the mesh cannot take loses that, never the rest. TLS
    /// contexts name the certificate provider instance
    /// `certificate_provider`.
    pub fn new(
        mesh: MeshConfig,
        stored: Vec<(String, Registration)>,
        limits: Limits,
        certificate_provider: &str,
    ) -> (Self, watch::Receiver<Arc<Published>>, Vec<String>) {
        let first = Arc::new(Published {
            version: 0,
            services: BTreeMap::new(),
            clusters: BTreeMap::new(),
            resources: ResourceSet::new(),
        });
        let (publish, published) = watch::channel(first);
        let mut state = Self {
            mesh,
            mesh_status: MeshFileStatus {
                accepted: 1,
                error: None,
                checked_at_unix_ms: Some(crate::clients::unix_ms(SystemTime::now())),
            },
            publish_status: PublishStatus::default(),
            registry: Registry::default(),
            limits,
            services: BTreeMap::new(),
            clusters: BTreeMap::new(),
            resources: ResourceSet::new(),
            endpoints: Endpoints::default(),
            certificate_provider: certificate_provider.to_owned(),
            publish,
        };
        let mut dropped = Vec::new();
        let mut drop_lease = |id: &str, why: Invalid| {
            tracing::warn!(lease = %id, %why, "a stored registration is dropped");
            dropped.push(format!("lease {id}: {why}"));
        };
        // Fast: every lease checked alone, then the whole mesh validated
        // once. Only when that fails (a store written by an older version,
        // or edited) is each lease admitted in turn, cluster by cluster,
        // to find the ones the mesh cannot take.
        let mut admitted = Vec::new();
        for (id, registration) in stored {
            match registration.check() {
                Ok(checked) => {
                    let (total, in_cluster) = state.registry.counts(&checked.registration.name);
                    if total >= state.limits.max_leases
                        || in_cluster >= state.limits.max_leases_per_cluster
                    {
                        drop_lease(
                            &id,
                            Invalid {
                                field: "name",
                                message: "over the lease limits".to_owned(),
                            },
                        );
                        continue;
                    }
                    admitted.push((id.clone(), checked.registration.clone()));
                    state.registry.insert(id, checked);
                }
                Err(why) => drop_lease(&id, why),
            }
        }
        if let Err(error) = state.rebuild(state.mesh.clone()) {
            tracing::warn!(%error, "the stored registrations do not fit the mesh: admitting them one by one");
            state.registry = Registry::default();
            if let Err(error) = state.rebuild(state.mesh.clone()) {
                state.fail(format!("the mesh file: {error}"));
            }
            for (id, registration) in admitted {
                if let Err(Refusal::Invalid(why) | Refusal::Full(why)) =
                    state.admit(Some(id.clone()), registration, false)
                {
                    drop_lease(&id, why);
                }
            }
        }
        state.publish_now();
        (state, published, dropped)
    }

    /// The version in force.
    pub fn published(&self) -> Arc<Published> {
        self.publish.borrow().clone()
    }

    /// A new mesh file, already validated alone. Rejected, the previous
    /// file staying in force, when the file with the registrations does
    /// not validate.
    pub fn set_mesh(&mut self, mesh: MeshConfig) {
        match self.rebuild(mesh.clone()) {
            Ok(()) => {
                self.mesh = mesh;
                self.mesh_status.accepted += 1;
                self.mesh_status.error = None;
                self.publish_status.error = None;
                self.publish_now();
            }
            Err(error) => {
                let error = format!("with the registrations: {error}");
                self.fail(format!("mesh file: {error}"));
                self.reject_mesh(error);
            }
        }
    }

    /// A rejected mesh file: the previous one stays in force.
    pub fn reject_mesh(&mut self, error: String) {
        tracing::warn!(%error, "mesh file rejected; the previous one stays in force");
        self.mesh_status.error = Some(error);
    }

    fn fail(&mut self, error: String) {
        tracing::error!(%error, "not published; the previous version stays in force");
        metrics::counter!("sinew_control_plane_publish_failures_total").increment(1);
        self.publish_status.failures += 1;
        self.publish_status.error = Some(error);
    }

    /// Registers an instance once the mesh can take it: its lease id and
    /// TTL.
    pub fn register(&mut self, registration: Registration) -> Result<(String, Duration), Refusal> {
        self.admit(None, registration, true)
    }

    fn admit(
        &mut self,
        id: Option<String>,
        registration: Registration,
        publish: bool,
    ) -> Result<(String, Duration), Refusal> {
        let checked = registration.check().map_err(Refusal::Invalid)?;
        let name = checked.registration.name.clone();
        let replaces = self.registry.member(&name, &checked.addr).is_some();
        let (total, in_cluster) = self.registry.counts(&name);
        let full = |field: &'static str, message: String| Refusal::Full(Invalid { field, message });
        if !replaces && total >= self.limits.max_leases {
            return Err(full(
                "name",
                format!("the registry holds {total} leases, the most allowed"),
            ));
        }
        if !replaces && in_cluster >= self.limits.max_leases_per_cluster {
            return Err(full(
                "name",
                format!("cluster `{name}` holds {in_cluster} leases, the most allowed"),
            ));
        }
        let mut cluster = self.effective_cluster(&name, Some(&checked.addr));
        if !self.file_lists(&name, &checked.addr) {
            cluster.endpoints.push(checked.registration.endpoint());
        }
        let encoded = self.check_cluster(&name, cluster).map_err(|e| {
            let at = e.field();
            let field = if at.contains("locality") {
                "locality"
            } else if at.contains("metadata") {
                "metadata"
            } else if at.starts_with("services") {
                "name"
            } else {
                "address"
            };
            Refusal::Invalid(Invalid {
                field,
                message: format!("the mesh cannot take this instance: {e}"),
            })
        })?;
        if encoded.encoded[1].1.any.value.len() > self.limits.max_message_bytes {
            return Err(full(
                "name",
                format!(
                    "cluster `{name}`'s endpoints would exceed the largest xDS message ({} bytes)",
                    self.limits.max_message_bytes
                ),
            ));
        }
        let ttl = checked.ttl;
        let id = id.unwrap_or_else(Registry::new_id);
        self.registry.insert(id.clone(), checked);
        self.put_cluster(&name, encoded);
        if publish {
            self.publish_status.error = None;
            self.publish_now();
        }
        Ok((id, ttl))
    }

    fn file_lists(&self, name: &str, addr: &SocketAddr) -> bool {
        self.mesh.clusters.get(name).is_some_and(|c| {
            c.endpoints
                .iter()
                .any(|e| e.address.parse::<SocketAddr>().ok().as_ref() == Some(addr))
        })
    }

    /// Renews a lease; `None` when it is unknown or has expired.
    pub fn renew(&mut self, id: &str) -> Option<Duration> {
        self.registry.renew(id)
    }

    /// Ends a lease; false when it is unknown.
    pub fn deregister(&mut self, id: &str) -> bool {
        let Some(name) = self.registry.deregister(id) else {
            return false;
        };
        if self.refresh(&name) {
            self.publish_status.error = None;
        }
        self.publish_now();
        true
    }

    /// Ends the leases expired by `now`; true if any did.
    pub fn expire(&mut self, now: tokio::time::Instant) -> bool {
        let clusters = self.registry.expire(now);
        let mut refreshed = true;
        for name in &clusters {
            refreshed &= self.refresh(name);
        }
        if !clusters.is_empty() {
            if refreshed {
                self.publish_status.error = None;
            }
            self.publish_now();
        }
        !clusters.is_empty()
    }

    /// `name`'s cluster as the mesh file has it, with its registered
    /// endpoints (those the file already lists, or at `leaving`, not
    /// added).
    fn effective_cluster(&self, name: &str, leaving: Option<&SocketAddr>) -> ClusterConfig {
        let mut cluster = self.mesh.clusters.get(name).cloned().unwrap_or_default();
        let listed: HashSet<SocketAddr> = cluster
            .endpoints
            .iter()
            .filter_map(|e| e.address.parse().ok())
            .collect();
        for lease in self.registry.members(name) {
            if !listed.contains(&lease.addr) && Some(&lease.addr) != leaving {
                cluster.endpoints.push(lease.registration.endpoint());
            }
        }
        cluster
    }

    /// Validates `name`'s cluster (with the service made for it, if the
    /// file has none) and encodes it.
    fn check_cluster(&self, name: &str, cluster: ClusterConfig) -> Result<Ready, ConfigError> {
        let service = (!self.mesh.services.contains_key(name)).then(|| service_for(name));
        let mut alone = MeshConfig::default();
        if let Some(service) = &service {
            alone.services.insert(name.to_owned(), service.clone());
        }
        alone.clusters.insert(name.to_owned(), cluster.clone());
        Snapshot::build(alone, 0)?;
        let encoded = cluster_resources(name, &cluster, &self.certificate_provider);
        Ok(Ready {
            service,
            encoded,
            cluster,
        })
    }

    fn put_cluster(
        &mut self,
        name: &str,
        Ready {
            service,
            encoded,
            cluster,
        }: Ready,
    ) {
        if let Some(service) = service.filter(|_| !self.services.contains_key(name)) {
            for (type_url, e) in service_resources(name, &service) {
                self.resources
                    .entry(type_url)
                    .or_default()
                    .insert(name.to_owned(), e);
            }
            self.services.insert(name.to_owned(), Arc::new(service));
        }
        for (type_url, e) in encoded {
            self.resources
                .entry(type_url)
                .or_default()
                .insert(name.to_owned(), e);
        }
        let before = self.clusters.get(name).cloned();
        self.endpoints.update(
            name,
            before.as_deref(),
            Some(&cluster),
            &mut self.resources,
            &self.certificate_provider,
        );
        self.clusters.insert(name.to_owned(), Arc::new(cluster));
    }

    /// Re-derives `name`'s cluster after a registration left it: removed
    /// (with its made service) when neither the file nor a registration
    /// names it any more. False when it could not be.
    fn refresh(&mut self, name: &str) -> bool {
        let registered = self.registry.members(name).next().is_some();
        if !registered && !self.mesh.clusters.contains_key(name) {
            let before = self.clusters.remove(name);
            self.endpoints.update(
                name,
                before.as_deref(),
                None,
                &mut self.resources,
                &self.certificate_provider,
            );
            for type_url in [CLUSTER, ENDPOINTS] {
                if let Some(of_type) = self.resources.get_mut(type_url) {
                    of_type.remove(name);
                }
            }
            if !self.mesh.services.contains_key(name) {
                self.services.remove(name);
                for type_url in [LISTENER, ROUTE] {
                    if let Some(of_type) = self.resources.get_mut(type_url) {
                        of_type.remove(name);
                    }
                }
            }
            return true;
        }
        let cluster = self.effective_cluster(name, None);
        match self.check_cluster(name, cluster) {
            Ok(encoded) => {
                self.put_cluster(name, encoded);
                true
            }
            // An endpoint fewer does not make a valid cluster invalid;
            // should it, the previous cluster stays.
            Err(error) => {
                self.fail(format!("cluster `{name}`: {error}"));
                false
            }
        }
    }

    /// Everything again from `mesh` and the registrations, validated as
    /// one; nothing changes when it fails.
    fn rebuild(&mut self, mesh: MeshConfig) -> Result<(), ConfigError> {
        let mut config = mesh.clone();
        let previous = std::mem::replace(&mut self.mesh, mesh);
        let names: Vec<String> = self.registry.clusters().cloned().collect();
        for name in names {
            let cluster = self.effective_cluster(&name, None);
            config.clusters.insert(name.clone(), cluster);
            config
                .services
                .entry(name.clone())
                .or_insert_with(|| service_for(&name));
        }
        self.mesh = previous;
        Snapshot::build(config.clone(), 0)?;
        let set = resources_with(&config, &self.certificate_provider);
        let largest = set
            .values()
            .flat_map(|m| m.iter())
            .max_by_key(|(_, e)| e.any.value.len());
        if let Some((name, e)) =
            largest.filter(|(_, e)| e.any.value.len() > self.limits.max_message_bytes)
        {
            return Err(ConfigError::new(
                name.clone(),
                format!(
                    "its {} resource ({} bytes) exceeds the largest xDS message ({} bytes)",
                    crate::ads::short(&e.any.type_url),
                    e.any.value.len(),
                    self.limits.max_message_bytes
                ),
            ));
        }
        for type_url in [CLUSTER, LISTENER] {
            let size: usize = set
                .get(type_url)
                .map_or(0, |m| m.values().map(|e| e.any.value.len() + 64).sum());
            if size > self.limits.max_message_bytes {
                return Err(ConfigError::new(
                    "",
                    format!(
                        "the {} resources together exceed the largest xDS message ({} bytes)",
                        crate::ads::short(type_url),
                        self.limits.max_message_bytes
                    ),
                ));
            }
        }
        self.resources = set;
        self.endpoints = Endpoints::with_policies(&config.clusters, &config.services);
        self.services = config
            .services
            .into_iter()
            .map(|(n, s)| (n, Arc::new(s)))
            .collect();
        self.clusters = config
            .clusters
            .into_iter()
            .map(|(n, c)| (n, Arc::new(c)))
            .collect();
        Ok(())
    }

    /// Publishes the mesh as it now stands, when it differs from what is
    /// in force.
    fn publish_now(&mut self) {
        let current = self.publish.borrow().clone();
        let same = |a: &ResourceSet, b: &ResourceSet| {
            a.len() == b.len()
                && a.iter().zip(b).all(|((ta, ma), (tb, mb))| {
                    ta == tb
                        && ma.len() == mb.len()
                        && ma
                            .iter()
                            .zip(mb)
                            .all(|((na, ea), (nb, eb))| na == nb && ea.version == eb.version)
                })
        };
        if current.version > 0 && same(&current.resources, &self.resources) {
            return;
        }
        self.publish.send_replace(Arc::new(Published {
            version: current.version + 1,
            services: self.services.clone(),
            clusters: self.clusters.clone(),
            resources: self.resources.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::cluster_resources;
    use sinew::config::EndpointConfig;

    fn registration(port: u16) -> Registration {
        Registration {
            name: "c".to_owned(),
            address: format!("127.0.0.1:{port}"),
            locality: zone(port),
            metadata: Default::default(),
            ttl_seconds: None,
        }
    }

    /// A zone of its own per endpoint, with a long name: an assignment
    /// grows by some 250 bytes per endpoint.
    fn zone(port: u16) -> sinew::config::Locality {
        sinew::config::Locality {
            region: String::new(),
            zone: format!("{port:0>250}"),
        }
    }

    /// A store whose leases do not all fit: the first ones are served,
    /// the rest dropped, each with its reason.
    #[tokio::test]
    async fn a_store_that_does_not_fit_is_admitted_lease_by_lease() {
        let size = |n: u16| {
            let cluster = ClusterConfig {
                endpoints: (1..=n)
                    .map(|p| EndpointConfig {
                        locality: zone(p),
                        ..EndpointConfig::new(format!("127.0.0.1:{p}"))
                    })
                    .collect(),
                ..ClusterConfig::default()
            };
            cluster_resources("c", &cluster, "default")
                .iter()
                .map(|(_, e)| e.any.value.len())
                .collect::<Vec<_>>()
        };
        // Room for the cluster and an assignment of two endpoints, not
        // three.
        let limit = size(2).into_iter().max().unwrap_or(0) + 64;
        assert!(size(3)[1] > limit, "{:?} {limit}", size(3));
        let limits = Limits {
            max_message_bytes: limit,
            ..Limits::default()
        };
        let stored = (1..=3)
            .map(|p| (format!("l{p}"), registration(p)))
            .collect();
        let (state, published, dropped) =
            State::new(MeshConfig::default(), stored, limits, "default");
        assert_eq!(published.borrow().clusters["c"].endpoints.len(), 2);
        assert_eq!(state.registry.leases().count(), 2);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].starts_with("lease l3: name: "), "{dropped:?}");
    }
}
