//! The mesh's handle on its discovery task: what to watch, how to wait for
//! a service's first configuration, and what the client sees.

use super::ads::Task;
use super::bootstrap::Bootstrap;
use super::state::{ConnectionState, ResourceStatus, State};
use crate::mesh::Shared;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The discovery client's settings, from the mesh builder.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) bootstrap: Bootstrap,
    /// How long a resource may take to arrive, while connected, before it
    /// is taken not to exist; and how long a request for a service not yet
    /// known waits for it.
    pub(crate) initial_fetch_timeout: Duration,
    /// Where the fail-static cache lives, when enabled.
    pub(crate) cache: Option<PathBuf>,
    /// The application's classifiers: a resource naming another is
    /// NACKed.
    pub(crate) classifiers: crate::classify::Classifiers,
    /// The mesh's identity: a `tls` channel to the control plane presents
    /// its certificate (and, without a CA file, verifies the control plane
    /// against its bundle).
    pub(crate) identity: Option<crate::tls::Identity>,
}

/// What the discovery client sees, in the spirit of Envoy's CSDS: the
/// connection, whether the configuration in force came from the
/// fail-static cache, and each subscribed resource with its version, its
/// state and its last error. Made by [`Mesh::xds_status`](crate::mesh::Mesh::xds_status).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct XdsStatus {
    /// The control plane connection.
    pub connection: ConnectionState,
    /// When the configuration in force was read from the fail-static cache,
    /// the time the cache was written.
    pub from_cache: Option<SystemTime>,
    /// Every subscribed resource.
    pub resources: Vec<ResourceStatus>,
    /// How long the last response took from its arrival to in force
    /// (decoded, translated, validated, applied).
    pub last_apply: Option<Duration>,
    /// Responses received so far, on every stream.
    pub responses: u64,
    /// Times the discovery task failed (a panic, which is a bug) and was
    /// restarted; zero in a healthy client.
    pub task_restarts: u64,
    /// The message of the last such failure.
    pub last_task_failure: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Discovery {
    commands: mpsc::UnboundedSender<Watch>,
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
    /// Set while every watched service has its whole configuration: then
    /// requests go straight on (one atomic load).
    warm: Arc<AtomicBool>,
    /// When each service was first watched: its initial fetch timer.
    watched_at: Mutex<HashMap<String, Instant>>,
    timeout: Duration,
    server_listener_template: Option<String>,
}

/// What the handle asks the discovery task to subscribe to. The handle
/// puts it in the state at once; the task sends the subscriptions.
#[derive(Debug)]
pub(super) enum Watch {
    /// A target service's Listener.
    Service(String),
    /// A server Listener (gRFC A36), by resource name.
    Server(String),
}

impl Watch {
    pub(super) fn apply(&self, state: &mut State) {
        match self {
            Watch::Service(service) => {
                state.watch(service);
            }
            Watch::Server(name) => {
                state.watch_server(name);
            }
        }
    }
}

impl Discovery {
    /// Starts the discovery task for the mesh `shared` will point to.
    pub(crate) fn start(settings: Settings) -> (Self, impl FnOnce(Weak<Shared>)) {
        let first = settings
            .bootstrap
            .servers
            .first()
            .cloned()
            .unwrap_or_default();
        let mut state = State::new(&first);
        state.classifiers = settings.classifiers.clone();
        let state = Arc::new(Mutex::new(state));
        let (commands, receiver) = mpsc::unbounded_channel();
        let (notify, changed) = watch::channel(0);
        let warm = Arc::new(AtomicBool::new(false));
        let discovery = Self {
            commands,
            state: state.clone(),
            changed,
            warm: warm.clone(),
            watched_at: Mutex::new(HashMap::new()),
            timeout: settings.initial_fetch_timeout,
            server_listener_template: settings
                .bootstrap
                .server_listener_resource_name_template
                .clone(),
        };
        let spawn = move |shared: Weak<Shared>| {
            let task = Task {
                shared,
                settings,
                state,
                commands: receiver,
                changed: notify,
                warm,
            };
            tokio::spawn(super::supervise::supervise(task));
        };
        (discovery, spawn)
    }

    /// The channel of the open ADS stream to the primary server, if any:
    /// the telemetry push sends on it, so that a process holds one
    /// connection to its control plane.
    pub(crate) fn channel(&self) -> Option<tonic::transport::Channel> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .channel
            .clone()
    }

    /// Subscribes to `service`'s configuration (its Listener), once.
    pub(crate) fn watch(&self, service: &str) {
        let mut watched = self.watched_at.lock().unwrap_or_else(|p| p.into_inner());
        if !watched.contains_key(service) {
            watched.insert(service.to_owned(), Instant::now());
            // In the state at once, so that no readiness computed before
            // the task takes the command leaves it out.
            let mut state = self.state();
            state.watch(service);
            self.warm.store(false, Ordering::Relaxed);
            drop(state);
            let _ = self.commands.send(Watch::Service(service.to_owned()));
        }
    }

    /// Subscribes to the server Listener (gRFC A36) of `addr`, named by
    /// the bootstrap's `server_listener_resource_name_template` with `%s`
    /// replaced by the address (`127.0.0.1:50051`, `[::1]:80`). Returns
    /// its name, or `None` when the bootstrap has no template (then no
    /// server Listener is asked for, as gRPC's servers would refuse to
    /// start without one, and the mesh's own `inbound.mtls` applies).
    pub(crate) fn watch_server(&self, addr: std::net::SocketAddr) -> Option<String> {
        let name = server_listener_name(self.server_listener_template.as_ref()?, addr);
        let mut state = self.state();
        if state.watch_server(&name) {
            drop(state);
            let _ = self.commands.send(Watch::Server(name.clone()));
        }
        Some(name)
    }

    /// Waits while nothing is known of the server Listener `name` (it has
    /// not arrived, nor been found missing or refused): as gRPC's servers
    /// do (gRFC A36), a connection is not served on a guess. The caller
    /// bounds the wait.
    pub(crate) async fn server_settled(&self, name: &str) {
        let mut changed = self.changed.clone();
        while self.state().server_pending(name) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// The transport the server Listener `name` asks for, when one is in
    /// use.
    pub(crate) fn server_mtls(&self, name: &str) -> Option<crate::config::MtlsMode> {
        self.state().server_mtls(name)
    }

    /// The policies of the server Listener `name`'s RBAC filters (gRFC
    /// A41), when one is in use: empty when it has none (open).
    /// A number that changes after every change of the state: what a
    /// caller reading the state per request compares to know whether what
    /// it read before still holds.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        *self.changed.borrow()
    }

    pub(crate) fn server_authorization(
        &self,
        name: &str,
    ) -> Option<std::sync::Arc<crate::authz::CompiledPolicies>> {
        self.state().server_authorization(name)
    }

    /// Whether every watched service has its whole configuration.
    pub(crate) fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Relaxed)
    }

    /// Waits until `service` is `known` (its configuration is in force),
    /// at most until its initial fetch timeout has passed since it was
    /// first watched. Returns why not when it is not.
    pub(crate) async fn settled(
        &self,
        service: &str,
        known: impl Fn() -> bool,
    ) -> Result<(), String> {
        self.watch(service);
        let deadline = self
            .watched_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .map_or_else(Instant::now, |at| crate::bounds::later(*at, self.timeout));
        let mut changed = self.changed.clone();
        loop {
            // What is in force, not what has arrived: between a response's
            // arrival and its application the cache runs ahead of the mesh
            // (a request let through then met a cluster whose endpoints
            // were on their way).
            if self.state().published(service) && known() {
                return Ok(());
            }
            if let Some(missing) = self.state().missing(service) {
                return Err(missing);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => {
                    return Err(format!(
                        "no configuration for it from the control plane within {:?} ({})",
                        self.timeout,
                        describe(&self.state().connection)
                    ));
                }
            }
        }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn status(&self) -> XdsStatus {
        let state = self.state();
        XdsStatus {
            connection: state.connection.clone(),
            from_cache: state.from_cache,
            resources: state.statuses(),
            last_apply: state.last_apply,
            responses: state.responses,
            task_restarts: state.restarts,
            last_task_failure: state.last_panic.clone(),
        }
    }
}

/// The server Listener's name for `addr`: gRPC's, every `%s` of the
/// template replaced by `ip:port` (`[ip]:port` for IPv6).
fn server_listener_name(template: &str, addr: std::net::SocketAddr) -> String {
    template.replace("%s", &addr.to_string())
}

#[cfg(test)]
#[test]
fn server_listener_names_put_the_bound_address_in_the_template() {
    let template = "grpc/server?xds.resource.listening_address=%s";
    assert_eq!(
        server_listener_name(template, "127.0.0.1:50051".parse().unwrap()),
        "grpc/server?xds.resource.listening_address=127.0.0.1:50051"
    );
    assert_eq!(
        server_listener_name(template, "[::]:80".parse().unwrap()),
        "grpc/server?xds.resource.listening_address=[::]:80"
    );
    assert_eq!(
        server_listener_name("fixed", "[::1]:80".parse().unwrap()),
        "fixed"
    );
}

fn describe(connection: &ConnectionState) -> String {
    match connection {
        ConnectionState::Connecting { server } => format!("connecting to {server}"),
        ConnectionState::Connected { server } => format!("connected to {server}"),
        ConnectionState::Disconnected { server, error } => format!("{server}: {error}"),
    }
}
