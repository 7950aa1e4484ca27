//! What the client knows: per resource, the last good value, its version,
//! whether the last update of it was accepted, and the connection. Pure
//! state, with no I/O, so that the protocol's rules are tested directly.

use super::resource::{
    ClusterResource, Kind, ListenerResource, ListenerRoutes, Resource, RouteTable,
};
use super::translate::decode;
use crate::config::{ClusterConfig, Endpoint, MeshConfig, RouteConfig, ServiceConfig, Snapshot};
use envoy_types::pb::google::protobuf::Any;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Where one resource stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Subscribed; nothing received yet.
    Requested,
    /// The last update was accepted.
    Acked,
    /// The last update was rejected; the value before it (if any) stays in
    /// use.
    Nacked,
    /// The control plane says it does not exist, or did not send it in
    /// time while connected. A value it had may stay in use (gRFC A88:
    /// see `has_value`).
    DoesNotExist,
}

/// One resource, as the client sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceStatus {
    /// Its type.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// The version of the value in use (empty when there is none).
    pub version: String,
    /// Where it stands.
    pub state: ResourceState,
    /// Why the last update was rejected, naming the field.
    pub error: Option<String>,
    /// Whether a value is in use.
    pub has_value: bool,
}

/// The connection to the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ConnectionState {
    /// Connecting to this server.
    Connecting {
        /// The server.
        server: String,
    },
    /// A stream is open to this server.
    Connected {
        /// The server.
        server: String,
    },
    /// The last attempt failed; the next one comes after a backoff.
    Disconnected {
        /// The last server tried.
        server: String,
        /// Why it failed.
        error: String,
    },
}

#[derive(Debug)]
struct Entry {
    value: Option<Resource>,
    version: String,
    state: ResourceState,
    error: Option<String>,
    /// When it was requested on the current stream, while it has no value:
    /// the does-not-exist timer (gRFC A57) runs only while connected.
    requested_at: Option<Instant>,
}

impl Entry {
    fn requested() -> Self {
        Self {
            value: None,
            version: String::new(),
            state: ResourceState::Requested,
            error: None,
            requested_at: None,
        }
    }
}

/// What a response did.
#[derive(Debug, Default)]
pub(super) struct Applied {
    /// The resources that changed value.
    pub(super) changed: Vec<(Kind, String)>,
    /// The NACK's message when something was rejected (each rejected
    /// resource with its field), `None` to ACK.
    pub(super) rejected: Option<String>,
}

/// The client's state.
#[derive(Debug)]
pub(super) struct State {
    /// The channel of the open ADS stream, which the telemetry push
    /// shares rather than opening a connection of its own.
    pub(super) channel: Option<tonic::transport::Channel>,
    entries: BTreeMap<(Kind, String), Entry>,
    services: BTreeSet<String>,
    /// The server Listeners (gRFC A36) subscribed, by resource name.
    server_listeners: BTreeSet<String>,
    /// Per type: the version last accepted and the nonce last seen.
    versions: HashMap<Kind, String>,
    nonces: HashMap<Kind, String>,
    pub(super) connection: ConnectionState,
    /// Set when the configuration in force came from the fail-static
    /// cache, with when the cache was written.
    pub(super) from_cache: Option<SystemTime>,
    /// How long the last response took from its arrival to in force.
    pub(super) last_apply: Option<Duration>,
    /// Responses received, on every stream.
    pub(super) responses: u64,
    /// Times the discovery task panicked and was restarted, with the last
    /// panic's message.
    pub(super) restarts: u64,
    pub(super) last_panic: Option<String>,
    /// Per service, the routes last put in force while it was ready.
    in_force: HashMap<String, Vec<RouteConfig>>,
    /// Set when, at the last assembly, some service was not ready (its
    /// earlier routes kept, or its first ones still incomplete): the next
    /// change, even of endpoints only, needs a whole assembly.
    pub(super) waiting: bool,
    /// The services whose configuration was in force, whole, at the last
    /// publication (after the mesh took the configuration): what requests
    /// waiting for a service go by. The cache's own answer (`serving`)
    /// runs ahead of the mesh between a response's arrival and its
    /// application.
    published: BTreeSet<String>,
    /// Whether the server in use lists `fail_on_data_errors` (gRFC A88):
    /// then a data error (a NACK, a Listener or Cluster left out of a
    /// response) drops the cached value; otherwise the value stays.
    fail_on_data_errors: bool,
    /// The application's classifiers: a resource naming another is
    /// refused.
    pub(super) classifiers: crate::classify::Classifiers,
}

impl State {
    pub(super) fn new(server: &str) -> Self {
        Self {
            channel: None,
            entries: BTreeMap::new(),
            services: BTreeSet::new(),
            server_listeners: BTreeSet::new(),
            versions: HashMap::new(),
            nonces: HashMap::new(),
            connection: ConnectionState::Connecting {
                server: server.to_owned(),
            },
            from_cache: None,
            last_apply: None,
            responses: 0,
            restarts: 0,
            last_panic: None,
            in_force: HashMap::new(),
            waiting: false,
            published: BTreeSet::new(),
            fail_on_data_errors: false,
            classifiers: crate::classify::Classifiers::default(),
        }
    }

    /// Records which services are serving, once what the cache holds is in
    /// force in the mesh; returns whether every watched service is.
    pub(super) fn publish(&mut self) -> bool {
        self.published = self
            .services
            .iter()
            .filter(|s| self.serving(s))
            .cloned()
            .collect();
        self.published.len() == self.services.len()
    }

    /// Whether `service` was serving at the last publication.
    pub(super) fn published(&self, service: &str) -> bool {
        self.published.contains(service)
    }

    /// Adds a target service (its Listener is subscribed); true if new.
    pub(super) fn watch(&mut self, service: &str) -> bool {
        self.services.insert(service.to_owned())
    }

    /// Adds a server Listener (gRFC A36) to subscribe to; true if new.
    pub(super) fn watch_server(&mut self, name: &str) -> bool {
        self.server_listeners.insert(name.to_owned())
    }

    /// The transport the server Listener `name` asks for, when one is in
    /// use. `None` while it has not arrived, does not exist, or was
    /// refused without a good value before it.
    pub(super) fn server_mtls(&self, name: &str) -> Option<crate::config::MtlsMode> {
        match self.value(Kind::Listener, name)? {
            Resource::ServerListener(server) => Some(server.mtls),
            _ => None,
        }
    }

    /// The policies of the server Listener `name`'s RBAC filters (gRFC
    /// A41; none: open), when one is in use. `None` while it has not
    /// arrived or does not exist (the local policies alone apply). A
    /// Listener refused with no good value before it denies every
    /// request: the control plane asked for policies Sinew could not
    /// read, and being open instead would fail open.
    pub(super) fn server_authorization(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<crate::authz::CompiledPolicies>> {
        let entry = self.entries.get(&(Kind::Listener, name.to_owned()))?;
        match &entry.value {
            Some(Resource::ServerListener(server)) => Some(server.authorization.clone()),
            Some(_) => None,
            None if entry.state == ResourceState::Nacked => {
                Some(crate::authz::CompiledPolicies::deny_all())
            }
            None => None,
        }
    }

    /// Whether the server Listener `name` is subscribed and nothing is
    /// known of it yet (no value, not found missing, not refused).
    pub(super) fn server_pending(&self, name: &str) -> bool {
        self.server_listeners.contains(name)
            && self
                .entries
                .get(&(Kind::Listener, name.to_owned()))
                .is_none_or(|e| e.value.is_none() && e.state == ResourceState::Requested)
    }

    /// Whether everything `service` needs has arrived (or is known not to
    /// exist): its Listener, route configuration, clusters and their
    /// assignments.
    pub(super) fn ready(&self, service: &str) -> bool {
        // Serving from the fail-static cache: what it holds stands in.
        if self.from_cache.is_some() {
            return true;
        }
        let settled = |kind: Kind, name: &str| {
            self.entries.get(&(kind, name.to_owned())).is_some_and(|e| {
                e.value.is_some()
                    || matches!(e.state, ResourceState::DoesNotExist | ResourceState::Nacked)
            })
        };
        if !settled(Kind::Listener, service) {
            return false;
        }
        let Some(table) = self.table_of(service) else {
            return self.missing(service).is_some();
        };
        table.clusters().all(|cluster| {
            settled(Kind::Cluster, cluster)
                && match self.cluster(cluster) {
                    Some(ClusterResource {
                        eds_name: Some(eds),
                        ..
                    }) => settled(Kind::Endpoints, eds),
                    _ => true,
                }
        })
    }

    /// Whether requests for `service` may go on: it is ready, or routes
    /// put in force while it was stay in force while newer ones wait for
    /// what they need.
    pub(super) fn serving(&self, service: &str) -> bool {
        self.in_force.contains_key(service) || self.ready(service)
    }

    /// Why `service` cannot be configured, when the control plane has
    /// said so: its Listener, or the route configuration it names, does
    /// not exist.
    pub(super) fn missing(&self, service: &str) -> Option<String> {
        // Without a value, a resource that does not exist or was rejected
        // cannot be used: requests fail at once, saying why, rather than
        // wait for the initial fetch timeout.
        let gone = |kind: Kind, name: &str| {
            let entry = self.entries.get(&(kind, name.to_owned()))?;
            match (&entry.value, entry.state) {
                (None, ResourceState::DoesNotExist) => Some(format!(
                    "the control plane has no {} `{name}`",
                    kind.api_name()
                )),
                (None, ResourceState::Nacked) => Some(format!(
                    "{} `{name}` was rejected: {}",
                    kind.api_name(),
                    entry.error.as_deref().unwrap_or("")
                )),
                _ => None,
            }
        };
        if let Some(why) = gone(Kind::Listener, service) {
            return Some(why);
        }
        if let Some(ListenerRoutes::Rds(route)) = self.listener(service).map(|l| &l.routes)
            && let Some(why) = gone(Kind::Route, route)
        {
            return Some(format!("{why} (named by Listener `{service}`)"));
        }
        None
    }

    fn value(&self, kind: Kind, name: &str) -> Option<&Resource> {
        self.entries.get(&(kind, name.to_owned()))?.value.as_ref()
    }

    fn listener(&self, service: &str) -> Option<&ListenerResource> {
        match self.value(Kind::Listener, service)? {
            Resource::Listener(listener) => Some(listener),
            _ => None,
        }
    }

    fn table_of(&self, service: &str) -> Option<&RouteTable> {
        match &self.listener(service)?.routes {
            ListenerRoutes::Inline(table) => Some(table),
            ListenerRoutes::Rds(name) => match self.value(Kind::Route, name)? {
                Resource::Route(table) => Some(table),
                _ => None,
            },
        }
    }

    fn cluster(&self, name: &str) -> Option<&ClusterResource> {
        match self.value(Kind::Cluster, name)? {
            Resource::Cluster(c) => Some(c),
            _ => None,
        }
    }

    /// The names each type should subscribe to, following the cascade
    /// from the watched services' Listeners.
    pub(super) fn wanted(&self) -> BTreeMap<Kind, BTreeSet<String>> {
        let mut wanted: BTreeMap<Kind, BTreeSet<String>> = Kind::ALL
            .into_iter()
            .map(|k| (k, BTreeSet::new()))
            .collect();
        wanted
            .entry(Kind::Listener)
            .or_default()
            .extend(self.server_listeners.iter().cloned());
        for service in &self.services {
            wanted
                .entry(Kind::Listener)
                .or_default()
                .insert(service.clone());
            if let Some(ListenerRoutes::Rds(name)) = self.listener(service).map(|l| &l.routes) {
                wanted.entry(Kind::Route).or_default().insert(name.clone());
            }
            if let Some(table) = self.table_of(service) {
                for cluster in table.clusters() {
                    wanted
                        .entry(Kind::Cluster)
                        .or_default()
                        .insert(cluster.to_owned());
                }
            }
        }
        let clusters = wanted.get(&Kind::Cluster).cloned().unwrap_or_default();
        for cluster in clusters {
            if let Some(ClusterResource {
                eds_name: Some(eds),
                ..
            }) = self.cluster(&cluster)
            {
                wanted
                    .entry(Kind::Endpoints)
                    .or_default()
                    .insert(eds.clone());
            }
        }
        wanted
    }

    /// Makes the entries follow `wanted`: new names are requested (their
    /// timer starts now when connected), names no longer wanted are
    /// forgotten. Returns the types whose set changed.
    pub(super) fn subscribe(
        &mut self,
        wanted: &BTreeMap<Kind, BTreeSet<String>>,
        connected: bool,
    ) -> Vec<Kind> {
        let mut changed = Vec::new();
        for (&kind, names) in wanted {
            let before: BTreeSet<String> = self
                .entries
                .keys()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| n.clone())
                .collect();
            if &before == names {
                continue;
            }
            changed.push(kind);
            self.entries
                .retain(|(k, n), _| *k != kind || names.contains(n));
            for name in names.difference(&before) {
                let mut entry = Entry::requested();
                entry.requested_at = connected.then(Instant::now);
                self.entries.insert((kind, name.clone()), entry);
            }
        }
        changed
    }

    /// The subscribed names of one type.
    pub(super) fn names(&self, kind: Kind) -> Vec<String> {
        self.entries
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect()
    }

    pub(super) fn version(&self, kind: Kind) -> String {
        self.versions.get(&kind).cloned().unwrap_or_default()
    }

    pub(super) fn nonce(&self, kind: Kind) -> String {
        self.nonces.get(&kind).cloned().unwrap_or_default()
    }

    /// A new stream: nonces start over; resources without a value start
    /// their does-not-exist timers.
    pub(super) fn connected(&mut self, server: &str, fail_on_data_errors: bool) {
        self.nonces.clear();
        self.fail_on_data_errors = fail_on_data_errors;
        let now = Instant::now();
        for entry in self.entries.values_mut() {
            entry.requested_at = entry.value.is_none().then_some(now);
        }
        self.connection = ConnectionState::Connected {
            server: server.to_owned(),
        };
    }

    /// The stream is gone: the timers stop (gRFC A57); every value stays
    /// in use (gRFC A88).
    pub(super) fn disconnected(&mut self, server: &str, error: String) {
        self.channel = None;
        for entry in self.entries.values_mut() {
            entry.requested_at = None;
        }
        self.connection = ConnectionState::Disconnected {
            server: server.to_owned(),
            error,
        };
    }

    /// Marks resources whose timer ran out as not existing; returns true
    /// if any did. Also returns when the next timer runs out.
    pub(super) fn expire(&mut self, timeout: Duration) -> (bool, Option<Instant>) {
        let now = Instant::now();
        let mut expired = false;
        let mut next: Option<Instant> = None;
        for entry in self.entries.values_mut() {
            let Some(at) = entry.requested_at else {
                continue;
            };
            if at + timeout <= now {
                entry.requested_at = None;
                entry.state = ResourceState::DoesNotExist;
                expired = true;
            } else {
                next = Some(next.map_or(at + timeout, |n| n.min(at + timeout)));
            }
        }
        (expired, next)
    }

    /// Whether some subscribed resource has no value: what makes a
    /// fallback server worth trying (gRFC A71).
    pub(super) fn missing_any(&self) -> bool {
        // A watched service not subscribed yet (a fresh start) has nothing.
        self.services
            .iter()
            .any(|s| !self.entries.contains_key(&(Kind::Listener, s.clone())))
            || self.entries.values().any(|e| e.value.is_none())
    }

    /// Applies one response: valid resources take effect even when others
    /// in it are rejected (gRFC A46); a rejected one keeps its last good
    /// value (gRFC A88).
    pub(super) fn apply_response(
        &mut self,
        kind: Kind,
        version: &str,
        nonce: &str,
        resources: &[Any],
    ) -> Applied {
        self.nonces.insert(kind, nonce.to_owned());
        let mut applied = Applied::default();
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        // A resource refused before its name was known may be any of the
        // subscribed ones: none is taken to be absent then.
        let mut unnamed = false;
        for any in resources {
            match decode(kind, any) {
                Ok((name, _)) if name.is_empty() => {
                    unnamed = true;
                    errors.push(format!(
                        "{} (unnamed): name: must not be empty",
                        kind.api_name()
                    ));
                }
                Ok((name, _)) if seen.contains(&name) => {
                    // gRPC refuses a response that names a resource twice;
                    // the first copy stands (or was refused already).
                    errors.push(format!(
                        "{} {name}: name: listed more than once in the response",
                        kind.api_name()
                    ));
                }
                Ok((name, resource)) => {
                    let checked = match (&resource, self.server_listeners.contains(&name)) {
                        (Resource::ServerListener(_), false) => Err(
                            "api_listener: missing (a client's Listener holds an api_listener)"
                                .to_owned(),
                        ),
                        (Resource::Listener(_), true) => Err(
                            "api_listener: present where a server's Listener (gRFC A36) has an address and filter chains"
                                .to_owned(),
                        ),
                        _ => check(&name, &resource, &self.classifiers),
                    };
                    let Some(entry) = self.entries.get_mut(&(kind, name.clone())) else {
                        // Not subscribed: ignored, as gRPC does.
                        continue;
                    };
                    seen.insert(name.clone());
                    entry.requested_at = None;
                    match checked {
                        Ok(()) => {
                            if entry.value.as_ref() != Some(&resource) {
                                applied.changed.push((kind, name.clone()));
                            }
                            entry.value = Some(resource);
                            entry.version = version.to_owned();
                            entry.state = ResourceState::Acked;
                            entry.error = None;
                        }
                        Err(message) => {
                            errors.push(format!("{} {name}: {message}", kind.api_name()));
                            entry.state = ResourceState::Nacked;
                            entry.error = Some(message);
                            if self.fail_on_data_errors && entry.value.take().is_some() {
                                applied.changed.push((kind, name.clone()));
                            }
                        }
                    }
                }
                Err((name, message)) => {
                    unnamed |= name.is_none();
                    let label = name.clone().unwrap_or_else(|| "(unnamed)".to_owned());
                    errors.push(format!("{} {label}: {message}", kind.api_name()));
                    if let Some((name, entry)) = name.and_then(|n| {
                        seen.insert(n.clone());
                        self.entries.get_mut(&(kind, n.clone())).map(|e| (n, e))
                    }) {
                        entry.requested_at = None;
                        entry.state = ResourceState::Nacked;
                        entry.error = Some(message);
                        if self.fail_on_data_errors && entry.value.take().is_some() {
                            applied.changed.push((kind, name));
                        }
                    }
                }
            }
        }
        if kind.absence_deletes() && !unnamed {
            for ((k, name), entry) in self.entries.iter_mut() {
                if *k == kind && !seen.contains(name) && entry.state != ResourceState::DoesNotExist
                {
                    // A data error (gRFC A88): the cached value stays in use
                    // unless the server asks to fail on data errors.
                    entry.error = None;
                    if entry.value.is_some() {
                        if self.fail_on_data_errors {
                            entry.value = None;
                            applied.changed.push((kind, name.clone()));
                        } else {
                            entry.error = Some(
                                "left out of the server's response: the cached value stays in use (gRFC A88)"
                                    .to_owned(),
                            );
                        }
                    }
                    entry.requested_at = None;
                    entry.state = ResourceState::DoesNotExist;
                }
            }
        }
        if errors.is_empty() {
            self.versions.insert(kind, version.to_owned());
        } else {
            applied.rejected = Some(errors.join("; "));
        }
        applied
    }

    /// The configuration of the watched services, for the mesh. Make
    /// before break: a service whose new routes name a cluster (or an
    /// assignment) still on its way keeps the routes it had in force until
    /// everything they need has arrived, been refused or been found not to
    /// exist, so that no request meets a cluster without endpoints only
    /// because its assignment comes a moment after the route.
    pub(super) fn assemble(&mut self) -> MeshConfig {
        let mut config = MeshConfig::default();
        self.waiting = false;
        let services: Vec<String> = self.services.iter().cloned().collect();
        for service in services {
            let ready = self.ready(&service);
            self.waiting |= !ready;
            let routes = match (ready, self.in_force.get(&service)) {
                (false, Some(previous)) => previous.clone(),
                _ => {
                    let Some(routes) = self.shaped_routes(&service) else {
                        self.in_force.remove(&service);
                        continue;
                    };
                    // Before it is first ready, requests wait rather than
                    // use what there is (see `serving`).
                    if ready {
                        self.in_force.insert(service.clone(), routes.clone());
                    }
                    routes
                }
            };
            for route in &routes {
                for split in &route.split {
                    if !config.clusters.contains_key(&split.cluster) {
                        let cluster = self.cluster_config(&split.cluster);
                        config.clusters.insert(split.cluster.clone(), cluster);
                    }
                }
            }
            config.services.insert(
                service,
                ServiceConfig {
                    routes,
                    inbound: None,
                    debug_header: false,
                },
            );
        }
        config
    }

    /// A service's routes as its Listener's filters shape them; `None`
    /// when it has none.
    fn shaped_routes(&self, service: &str) -> Option<Vec<RouteConfig>> {
        let routes = self.table_of(service)?.routes_for(service)?;
        let listener = self.listener(service)?;
        (!routes.is_empty()).then(|| routes.iter().map(|r| listener.shape(r)).collect())
    }

    /// A cluster's configuration with its endpoints, from the cache.
    fn cluster_config(&self, name: &str) -> ClusterConfig {
        let Some(cluster) = self.cluster(name) else {
            return ClusterConfig::default();
        };
        let mut config = cluster.config.clone();
        if let Some(eds) = &cluster.eds_name {
            config.endpoints = self
                .endpoints(eds)
                .map(|e| e.iter().map(Endpoint::to_config).collect())
                .unwrap_or_default();
        }
        config
    }

    /// An assignment's endpoints.
    pub(super) fn endpoints(&self, eds_name: &str) -> Option<&Vec<Endpoint>> {
        match self.value(Kind::Endpoints, eds_name)? {
            Resource::Endpoints(e) => Some(e),
            _ => None,
        }
    }

    /// The clusters whose endpoints come from assignment `eds_name`.
    pub(super) fn clusters_fed_by(&self, eds_name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|((k, name), e)| match (&e.value, k) {
                (Some(Resource::Cluster(c)), Kind::Cluster)
                    if c.eds_name.as_deref() == Some(eds_name) =>
                {
                    Some(name.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Every subscribed resource, for the config dump.
    pub(super) fn statuses(&self) -> Vec<ResourceStatus> {
        self.entries
            .iter()
            .map(|((kind, name), e)| ResourceStatus {
                kind: *kind,
                name: name.clone(),
                version: e.version.clone(),
                state: e.state,
                error: e.error.clone(),
                has_value: e.value.is_some(),
            })
            .collect()
    }
}

/// Checks a translated resource against Sinew's own validation, so that a
/// resource the snapshot would refuse is refused (and NACKed) alone; and
/// against the application's classifiers, so that one naming a classifier
/// not registered is too.
pub(super) fn check(
    name: &str,
    resource: &Resource,
    classifiers: &crate::classify::Classifiers,
) -> Result<(), String> {
    let unregistered = |name: &str| {
        format!(
            "metadata.filter_metadata.{}.classifier: no classifier named {name:?} is registered",
            super::translate::METADATA_KEY
        )
    };
    let mut config = MeshConfig::default();
    let strip = |e: crate::error::ConfigError, prefix: &str| {
        let text = e.to_string();
        text.strip_prefix(prefix).map(str::to_owned).unwrap_or(text)
    };
    match resource {
        Resource::Listener(ListenerResource {
            routes: ListenerRoutes::Inline(table),
            ..
        })
        | Resource::Route(table) => {
            for (i, vh) in table.virtual_hosts.iter().enumerate() {
                let mut config = MeshConfig::default();
                for (j, route) in vh.routes.iter().enumerate() {
                    if let Some(classifier) = &route.classifier
                        && classifiers.get(classifier).is_none()
                    {
                        return Err(format!(
                            "virtual_hosts[{i}].routes[{j}].{}",
                            unregistered(classifier)
                        ));
                    }
                    for split in &route.split {
                        config
                            .clusters
                            .insert(split.cluster.clone(), ClusterConfig::default());
                    }
                }
                config.services.insert(
                    "vh".to_owned(),
                    ServiceConfig {
                        routes: vh.routes.clone(),
                        inbound: None,
                        debug_header: false,
                    },
                );
                if vh.routes.is_empty() {
                    continue;
                }
                Snapshot::build(config, 0)
                    .map_err(|e| format!("virtual_hosts[{i}].{}", strip(e, "services.vh.")))?;
            }
            Ok(())
        }
        Resource::Listener(_) | Resource::ServerListener(_) => Ok(()),
        Resource::Cluster(cluster) => {
            if let Some(classifier) = &cluster.config.classifier
                && classifiers.get(classifier).is_none()
            {
                return Err(unregistered(classifier));
            }
            config
                .clusters
                .insert(name.to_owned(), cluster.config.clone());
            Snapshot::build(config, 0)
                .map(drop)
                .map_err(|e| strip(e, &format!("clusters.{name}.")))
        }
        Resource::Endpoints(endpoints) => {
            // Translation already parsed each address and bounded each
            // weight; what is left is a duplicate, checked without the cost
            // of a snapshot (assignments run to 100,000 endpoints).
            let mut seen = crate::addr_hash::AddrSet::with_capacity_and_hasher(
                endpoints.len(),
                Default::default(),
            );
            match endpoints.iter().find(|e| !seen.insert(e.address)) {
                Some(twice) => Err(format!(
                    "endpoints: `{}` is listed more than once",
                    twice.address
                )),
                None => Ok(()),
            }
        }
    }
}
