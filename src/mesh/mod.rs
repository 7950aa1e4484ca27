//! The `Mesh`: the current configuration snapshot, where it comes from, and
//! routing decisions made from it.
//!
//! A mesh is built from a source of configuration:
//!
//! - [`MeshBuilder::config`]: a [`MeshConfig`] built in code;
//! - [`MeshBuilder::config_file`]: a YAML or JSON file, watched for changes.
//!
//! The current [`Snapshot`] sits behind an `arc_swap`: a request costs one
//! atomic load to read it, and a new snapshot is swapped in whole, built and
//! validated off the request path. An invalid configuration never replaces
//! a valid one: the last good snapshot stays in force and the error, naming
//! the field, is logged and kept for [`Mesh::config_status`].
//!
//! ```
//! use sinew::config::MeshConfig;
//! use sinew::mesh::Mesh;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sinew::error::ConfigError> {
//! let config = MeshConfig::from_yaml(r#"
//! services:
//!   reviews:
//!     routes: [{ split: [{ cluster: reviews-v1 }] }]
//! clusters:
//!   reviews-v1:
//!     endpoints: [{ address: "127.0.0.1:9001" }]
//! "#)?;
//! let mesh = Mesh::builder().config(config).build().await?;
//! let request = http::Request::get("/").body(()).unwrap();
//! let decision = mesh.route("reviews", &request).unwrap();
//! assert_eq!(decision.cluster(), "reviews-v1");
//! # Ok(()) }
//! ```

mod body;
mod builder;
mod client;
mod cluster_balance;
mod connect;
mod connector;
mod fault;
#[cfg(feature = "grpc")]
mod grpc;
mod hyper_clients;
mod locality;
mod mtls;
mod outlier;
mod outlier_report;
#[cfg(feature = "grpc")]
mod raw_codec;
mod refusals;
mod registration;
mod route;
mod runtime;
#[cfg(feature = "server")]
mod server;
mod source;
mod stack;
mod status;
mod stream;
mod thresholds;

/// A request's key for consistent hashing; the same type as the balance
/// layer's.
pub use crate::balance::HashKey;
/// The endpoint that served a response (a response extension); the same
/// type as the balance layer's.
pub use crate::balance::ServedBy;
pub use body::ResponseBody;
pub use builder::MeshBuilder;
pub use client::{ClientLayer, HttpClient, MeshClient};
pub use connect::ConnectBackoff;
pub use connector::{MeshConnection, MeshConnector};
#[cfg(feature = "grpc")]
pub use grpc::GrpcChannel;
pub use hyper_clients::{HyperClients, HyperResponseFuture};
pub use mtls::{HandshakeFailed, MtlsUnavailable, PeerIdentity};
#[cfg(feature = "grpc")]
pub use raw_codec::RawCodec;
pub use registration::{Registration, RegistrationBuilder, RegistrationError};
pub use route::{ClusterOverloaded, RouteDecision, RouteError};
#[cfg(all(feature = "server", feature = "grpc"))]
pub use server::ConnectionInfo;
#[cfg(feature = "server")]
pub use server::{Connection, Inbound, InboundLayer, ServeError, Server, ServerBuilder, Shed};
pub use status::ConfigStatus;

use runtime::Routing;

use crate::classify::Classifiers;
use crate::config::{EndpointChanges, Locality, MeshConfig, Snapshot};
use crate::error::ConfigError;
use arc_swap::ArcSwap;
use std::sync::{Arc, Mutex};

/// A service mesh client: the current configuration and what it decides.
/// Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct Mesh {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    routing: ArcSwap<Routing>,
    status: Mutex<ConfigStatus>,
    /// The discovery client, when configuration comes from a control plane.
    #[cfg(feature = "xds")]
    pub(crate) discovery: Option<crate::xds::Discovery>,
    /// The version in force, for those who wait for changes.
    versions: tokio::sync::watch::Sender<u64>,
    /// Held while a new routing is made and swapped in, so that each update
    /// starts from the one before.
    writer: Mutex<()>,
    /// Where this process runs, for zone-aware balancing.
    locality: Option<Locality>,
    /// The classifiers the application registered, which configurations
    /// select by name.
    pub(crate) classifiers: Classifiers,
    /// This workload's identity, for mutual TLS.
    pub(crate) identity: Option<crate::tls::Identity>,
    /// Keeps the identity fed from files while the mesh lives.
    _watcher: Option<crate::tls::FileWatcher>,
    /// Renews `identity` from the control plane's CA for as long as the
    /// mesh lives ([`MeshBuilder::certificates_from_control_plane`]).
    issuer: std::sync::OnceLock<crate::tls::Issuer>,
    /// The golden metrics per edge of this process's requests.
    pub(crate) edges: crate::telemetry::edges::Edges,
}

/// A mesh's identity and what keeps it fed.
pub(crate) struct IdentitySource {
    pub(crate) identity: Option<crate::tls::Identity>,
    pub(crate) watcher: Option<crate::tls::FileWatcher>,
}

impl Mesh {
    /// Starts building a mesh.
    pub fn builder() -> MeshBuilder {
        MeshBuilder::default()
    }

    /// The golden metrics per edge (source → destination) of this
    /// process's requests, which a mesh pointed at a control plane pushes
    /// to it ([`crate::telemetry`]).
    pub fn edges(&self) -> &crate::telemetry::edges::Edges {
        &self.shared.edges
    }

    /// This workload's identity, for mutual TLS, when it has one
    /// ([`MeshBuilder::identity`]).
    pub fn identity(&self) -> Option<&crate::tls::Identity> {
        self.shared.identity.as_ref()
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.routing.load().snapshot.clone()
    }

    /// Where configuration stands: the version in force and the last
    /// rejected configuration's error, if any.
    pub fn config_status(&self) -> ConfigStatus {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the configuration. An invalid one is rejected with the
    /// error naming its field, and changes nothing in force.
    pub fn apply(&self, config: MeshConfig) -> Result<u64, ConfigError> {
        self.shared.apply(config)
    }

    /// Applies a change to the endpoints of one cluster, leaving the rest
    /// of the configuration as it is. Endpoints that stay keep their load
    /// and outlier state; removed ones get no new requests, and their
    /// requests in flight finish. The cost follows the size of the change:
    /// a one-endpoint change to a cluster of 100,000 endpoints takes tens
    /// of microseconds when the cluster's endpoints all take traffic and
    /// its picker allows (see
    /// [`Picker::changed`](crate::balance::Picker::changed)).
    ///
    /// An invalid change is rejected, naming the field
    /// (`clusters.pool.upsert[0].address`), and changes nothing.
    ///
    /// ```
    /// use sinew::config::{EndpointChanges, EndpointConfig, MeshConfig};
    /// use sinew::mesh::Mesh;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sinew::error::ConfigError> {
    /// let config = MeshConfig::from_yaml(
    ///     "clusters:\n  pool:\n    endpoints: [{ address: \"10.0.0.1:80\" }]\n",
    /// )?;
    /// let mesh = Mesh::builder().config(config).build().await?;
    /// let changes = EndpointChanges {
    ///     upsert: vec![EndpointConfig::new("10.0.0.2:80")],
    ///     ..EndpointChanges::default()
    /// };
    /// let version = mesh.update_endpoints("pool", &changes)?;
    /// assert_eq!(mesh.config_status().version(), version);
    /// let pool = mesh.snapshot().cluster("pool").map(|c| c.endpoints().len());
    /// assert_eq!(pool, Some(2));
    /// # Ok(()) }
    /// ```
    pub fn update_endpoints(
        &self,
        cluster: &str,
        changes: &EndpointChanges,
    ) -> Result<u64, ConfigError> {
        self.shared.update_endpoints(cluster, changes)
    }

    /// The version of the configuration in force, as a receiver that wakes
    /// when it changes: to await a configuration change rather than poll
    /// for it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sinew::error::ConfigError> {
    /// let mesh = sinew::mesh::Mesh::builder().build().await?;
    /// let mut version = mesh.versions();
    /// mesh.apply(sinew::config::MeshConfig::default())?;
    /// version.changed().await.unwrap();
    /// assert_eq!(*version.borrow(), 2);
    /// # Ok(()) }
    /// ```
    pub fn versions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.versions.subscribe()
    }

    /// What the discovery client sees (connection, each resource's version,
    /// ACK or NACK and last error), when configuration comes from a control
    /// plane; `None` otherwise.
    #[cfg(feature = "xds")]
    pub fn xds_status(&self) -> Option<crate::xds::XdsStatus> {
        self.shared.discovery.as_ref().map(|d| d.status())
    }
}

impl Shared {
    fn new(first: Snapshot, locality: Option<Locality>) -> Self {
        Self::with_discovery(first, locality, None)
    }

    fn with_discovery(
        first: Snapshot,
        locality: Option<Locality>,
        #[cfg(feature = "xds")] discovery: Option<crate::xds::Discovery>,
        #[cfg(not(feature = "xds"))] _discovery: Option<()>,
    ) -> Self {
        let status = ConfigStatus::applied(first.version());
        let versions = tokio::sync::watch::Sender::new(first.version());
        Self {
            versions,
            routing: ArcSwap::from_pointee(Routing::build(
                Arc::new(first),
                None,
                locality.as_ref(),
                &Classifiers::default(),
            )),
            status: Mutex::new(status),
            writer: Mutex::new(()),
            #[cfg(feature = "xds")]
            discovery,
            locality,
            classifiers: Classifiers::default(),
            identity: None,
            _watcher: None,
            issuer: std::sync::OnceLock::new(),
            edges: crate::telemetry::edges::Edges::default(),
        }
    }

    /// With the application's classifiers, which every configuration is
    /// checked against (the first one by the builder).
    fn with_classifiers(mut self, classifiers: Classifiers) -> Self {
        let first = self.routing.load().snapshot.clone();
        let routing = Routing::build(first, None, self.locality.as_ref(), &classifiers);
        self.routing = ArcSwap::from_pointee(routing);
        self.classifiers = classifiers;
        self
    }

    fn with_identity(mut self, source: IdentitySource) -> Self {
        self.identity = source.identity;
        self._watcher = source.watcher;
        self
    }

    /// Keeps `issuer` (and its renewals) alive as long as the mesh.
    fn keep_issuer(&self, issuer: crate::tls::Issuer) {
        // Set once, by the builder, right after the mesh is made.
        let _ = self.issuer.set(issuer);
    }

    fn status(&self) -> std::sync::MutexGuard<'_, ConfigStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds and swaps in the next snapshot, or records why not.
    pub(crate) fn apply(&self, config: MeshConfig) -> Result<u64, ConfigError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.routing.load_full();
        let version = previous.snapshot.version() + 1;
        // A classifier the application did not register is refused like
        // any invalid field, before anything is built.
        let built = self
            .classifiers
            .check(&config)
            .and_then(|()| Snapshot::build(config, version));
        match built {
            Ok(snapshot) => {
                // Under the writer lock `previous` is still the routing in
                // force: its endpoints' loads carry over.
                let routing = Routing::build(
                    Arc::new(snapshot),
                    Some(&previous),
                    self.locality.as_ref(),
                    &self.classifiers,
                );
                self.routing.store(Arc::new(routing));
                self.versions.send_replace(version);
                *self.status() = ConfigStatus::applied(version);
                tracing::info!(version, "configuration applied");
                Ok(version)
            }
            Err(error) => {
                self.reject(error.clone());
                Err(error)
            }
        }
    }

    /// The snapshot in force.
    #[cfg_attr(not(feature = "xds"), allow(dead_code))]
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.routing.load().snapshot.clone()
    }

    pub(crate) fn update_endpoints(
        &self,
        cluster: &str,
        changes: &EndpointChanges,
    ) -> Result<u64, ConfigError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.routing.load_full();
        let version = previous.snapshot.version() + 1;
        match previous.snapshot.changed(cluster, changes, version) {
            Ok((snapshot, ops)) => {
                let routing = previous.with_changes(Arc::new(snapshot), cluster, Some(&ops));
                self.routing.store(Arc::new(routing));
                self.versions.send_replace(version);
                *self.status() = ConfigStatus::applied(version);
                tracing::debug!(version, cluster, "endpoints changed");
                Ok(version)
            }
            Err(error) => {
                self.reject(error.clone());
                Err(error)
            }
        }
    }

    /// Makes cluster `cluster`'s endpoints exactly `endpoints` (a discovery
    /// source's whole assignment), in the time of the difference when it is
    /// small.
    #[cfg(feature = "xds")]
    pub(crate) fn replace_endpoints(
        &self,
        cluster: &str,
        endpoints: &[crate::config::Endpoint],
    ) -> Result<u64, ConfigError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.routing.load_full();
        let version = previous.snapshot.version() + 1;
        match previous
            .snapshot
            .with_endpoints(cluster, endpoints, version)
        {
            Ok((snapshot, ops)) => {
                let whole = ops.is_none();
                let routing = previous.with_changes(Arc::new(snapshot), cluster, ops.as_deref());
                self.routing.store(Arc::new(routing));
                self.versions.send_replace(version);
                *self.status() = ConfigStatus::applied(version);
                tracing::debug!(version, cluster, "endpoints replaced");
                if whole {
                    // Freeing a large replaced set (a load and an outlier
                    // state per endpoint) is left to another thread: the
                    // new one is in force already.
                    release_elsewhere(previous);
                }
                Ok(version)
            }
            Err(error) => {
                self.reject(error.clone());
                Err(error)
            }
        }
    }

    fn reject(&self, error: ConfigError) {
        tracing::warn!(%error, "configuration rejected; the last good one stays in force");
        self.status().record_rejection(error);
    }
}

/// Drops `value` on a blocking thread when there is a runtime to ask.
#[cfg(feature = "xds")]
fn release_elsewhere<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

#[cfg(test)]
mod tests;
