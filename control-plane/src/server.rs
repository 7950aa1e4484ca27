//! Starting the control plane: the mesh file (and its watcher), the
//! registry, the ADS server and the admin API.

use crate::admin::{Admin, ReadAccess, WriteAccess, expire_leases};
use crate::ads::Ads;
use crate::clients::{ClientView, Clients};
use crate::limits::Limits;
use crate::registry::read_store;
use crate::state::{MeshFileStatus, Published, State};
use crate::store::Store;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::MetricsServiceServer;
use sinew::config::{MeshConfig, SettledFile, Snapshot};
use sinew::error::ConfigError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Why the control plane could not start.
#[derive(Debug)]
pub enum StartError {
    /// The mesh file is missing or invalid; the error names the field.
    MeshFile(ConfigError),
    /// The registry store cannot be read.
    Store(String),
    /// A limit is out of range; the error names it (`limits.max_leases`).
    Limits(ConfigError),
    /// The certificate authority cannot start: an option out of range, or
    /// a file that cannot be read or written; the error names it.
    Ca(String),
    /// Another option is invalid; the error names it
    /// (`certificate_provider_instance`).
    Option(ConfigError),
    /// A listening address cannot be bound.
    Bind {
        /// `xds` or `admin`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::MeshFile(e) => write!(f, "mesh file: {e}"),
            StartError::Store(e) => write!(f, "registry store: {e}"),
            StartError::Limits(e) | StartError::Option(e) => write!(f, "{e}"),
            StartError::Ca(e) => write!(f, "ca.{e}"),
            StartError::Bind { what, addr, error } => {
                write!(f, "cannot listen for {what} on {addr}: {error}")
            }
        }
    }
}

impl std::error::Error for StartError {}

/// Reads and validates a mesh file, with the errors `sinew check` prints:
/// those of the library, and a field xDS would not carry.
pub fn check_mesh_file(path: &Path) -> Result<MeshConfig, ConfigError> {
    let contents = sinew::config::read_limited(path).map_err(|e| {
        ConfigError::new(
            "config_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    check_mesh(path, &contents)
}

fn check_mesh(path: &Path, contents: &[u8]) -> Result<MeshConfig, ConfigError> {
    let config = MeshConfig::from_file_contents(path, contents)?;
    Snapshot::build(config.clone(), 0)?;
    crate::served::check(&config)?;
    Ok(config)
}

/// Builds a [`ControlPlane`].
#[derive(Debug)]
pub struct ControlPlaneBuilder {
    mesh_file: Option<PathBuf>,
    mesh: MeshConfig,
    store: Option<PathBuf>,
    access: WriteAccess,
    xds_addr: SocketAddr,
    admin_addr: SocketAddr,
    reload_interval: Duration,
    limits: Limits,
    ca: crate::ca::CaOptions,
    certificate_provider: String,
    insecure_xds: bool,
    server_names: Vec<String>,
    reads: ReadAccess,
    admin_tls: bool,
    allow_plaintext_admin: bool,
    scopes: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    telemetry: crate::telemetry::TelemetryOptions,
}

impl Default for ControlPlaneBuilder {
    fn default() -> Self {
        Self {
            mesh_file: None,
            mesh: MeshConfig::default(),
            store: None,
            access: WriteAccess::Refused,
            xds_addr: SocketAddr::from(([127, 0, 0, 1], 18000)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 18001)),
            reload_interval: Duration::from_secs(1),
            limits: Limits::default(),
            ca: crate::ca::CaOptions::default(),
            certificate_provider: crate::generate::tls::DEFAULT_CERTIFICATE_PROVIDER.to_owned(),
            insecure_xds: false,
            server_names: Vec::new(),
            reads: ReadAccess::Token,
            admin_tls: false,
            allow_plaintext_admin: false,
            scopes: Default::default(),
            telemetry: Default::default(),
        }
    }
}

impl ControlPlaneBuilder {
    /// Serves the mesh file at `path`, reloaded when it changes. Without
    /// one, the mesh is what [`mesh`](Self::mesh) gives plus
    /// registrations.
    pub fn mesh_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.mesh_file = Some(path.into());
        self
    }

    /// Serves this mesh (when there is no mesh file).
    pub fn mesh(mut self, mesh: MeshConfig) -> Self {
        self.mesh = mesh;
        self
    }

    /// Keeps registrations in this file, so that they survive a restart.
    /// Default: memory only.
    pub fn registry_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.store = Some(path.into());
        self
    }

    /// The bearer token registration and other writes must present.
    /// Without one, writes are refused.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.access = WriteAccess::Token(token.into());
        self
    }

    /// Lets anyone write, without a token: for local development only.
    pub fn allow_unauthenticated_writes(mut self) -> Self {
        self.access = WriteAccess::Anyone;
        self
    }

    /// Serves xDS in plaintext, to anyone who reaches the port, instead of
    /// over mutual TLS: for local development, and for clients that cannot
    /// present a certificate of the mesh. Default: mutual TLS, with the
    /// control plane's certificate from its own CA, a client certificate
    /// of the mesh's trust bundle required, and each client's node
    /// checked against its certificate (`docs/control-plane.md`).
    pub fn insecure_xds(mut self) -> Self {
        self.insecure_xds = true;
        self
    }

    /// Scopes xDS over mutual TLS: a client whose certificate names
    /// `service` (`spiffe://<td>/ns/<ns>/sa/<service>`) sees only the
    /// services in `may_call` and the clusters their routes name, as if
    /// the others did not exist (in the spirit of Istio's Sidecar
    /// resource). Services never scoped see everything; server Listeners
    /// are never hidden. Call once per client service.
    pub fn xds_scope(
        mut self,
        service: impl Into<String>,
        may_call: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.scopes.insert(
            service.into(),
            may_call.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Host names or IP addresses the control plane's certificate names
    /// beside its SPIFFE ID, for clients that check the host they dial
    /// (gRPC's `tls` channel credentials). `localhost`, `127.0.0.1`, `::1`
    /// and the listening addresses (unless unspecified) are always named.
    pub fn server_names(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.server_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Lets anyone read the admin API (`/v1/services`, `/v1/clients`,
    /// `/v1/registrations`): for local development. Default: reads need
    /// the admin token or a token with the `read` scope.
    pub fn allow_unauthenticated_reads(mut self) -> Self {
        self.reads = ReadAccess::Anyone;
        self
    }

    /// Serves the admin API over TLS, with the control plane's certificate
    /// from its own CA (clients trust the mesh's trust bundle). Required
    /// when the admin address is not a loopback address, unless
    /// [`allow_plaintext_admin`](Self::allow_plaintext_admin).
    pub fn admin_tls(mut self) -> Self {
        self.admin_tls = true;
        self
    }

    /// Lets the admin API serve plaintext on an address other than
    /// loopback, where its tokens cross the network in the clear: only
    /// behind something else that encrypts.
    pub fn allow_plaintext_admin(mut self) -> Self {
        self.allow_plaintext_admin = true;
        self
    }

    /// How pushed telemetry is kept: the rolling window, its cap on edges,
    /// the largest export. Default: [`TelemetryOptions::default`](crate::telemetry::TelemetryOptions),
    /// the last 5 minutes in 10 s buckets, at most 1024 edges.
    pub fn telemetry(mut self, options: crate::telemetry::TelemetryOptions) -> Self {
        self.telemetry = options;
        self
    }

    /// Where ADS is served. Default: `127.0.0.1:18000`; port 0 picks one.
    pub fn xds_addr(mut self, addr: SocketAddr) -> Self {
        self.xds_addr = addr;
        self
    }

    /// Where the admin API is served. Default: `127.0.0.1:18001`.
    pub fn admin_addr(mut self, addr: SocketAddr) -> Self {
        self.admin_addr = addr;
        self
    }

    /// How often the mesh file is checked for changes. Default: 1 s.
    pub fn reload_interval(mut self, interval: Duration) -> Self {
        self.reload_interval = interval;
        self
    }

    /// The limits on leases, connections, streams and what clients send.
    /// Default: [`Limits::default`].
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How the certificate authority is set up: trust domain, state
    /// directory or root files, leaf lifetime. Default:
    /// [`CaOptions::default`](crate::ca::CaOptions), a root in memory.
    pub fn ca(mut self, options: crate::ca::CaOptions) -> Self {
        self.ca = options;
        self
    }

    /// The certificate provider instance that served TLS contexts name
    /// (gRFC A29): clusters requiring mTLS and server Listeners tell
    /// workloads to take their certificate and roots from it, so it must
    /// be a key of the workloads' bootstrap `certificate_providers`.
    /// Default: `default`, the name Istio's proxyless gRPC bootstrap uses.
    pub fn certificate_provider_instance(mut self, name: impl Into<String>) -> Self {
        self.certificate_provider = name.into();
        self
    }

    /// Reads the mesh file and the registry store, binds both addresses
    /// and starts serving.
    pub async fn start(self) -> Result<ControlPlane, StartError> {
        self.limits.validate().map_err(StartError::Limits)?;
        self.telemetry.validate().map_err(StartError::Option)?;
        if self.certificate_provider.trim().is_empty() {
            return Err(StartError::Option(ConfigError::new(
                "certificate_provider_instance",
                "empty: name a key of the workloads' bootstrap `certificate_providers`",
            )));
        }
        let (mesh, seen) = match &self.mesh_file {
            Some(path) => {
                let contents = sinew::config::read_limited(path).map_err(|e| {
                    StartError::MeshFile(ConfigError::new(
                        "config_file",
                        format!("cannot read {}: {e}", path.display()),
                    ))
                })?;
                let mesh = check_mesh(path, &contents).map_err(StartError::MeshFile)?;
                (mesh, contents)
            }
            None => {
                Snapshot::build(self.mesh.clone(), 0).map_err(StartError::MeshFile)?;
                crate::served::check(&self.mesh).map_err(StartError::MeshFile)?;
                (self.mesh, Vec::new())
            }
        };
        if !self.admin_addr.ip().is_loopback() && !self.admin_tls && !self.allow_plaintext_admin {
            return Err(StartError::Option(ConfigError::new(
                "admin_tls",
                format!(
                    "the admin API on {} is not on loopback: serve it over TLS, or allow plaintext there on purpose",
                    self.admin_addr
                ),
            )));
        }
        let ca = crate::ca::Ca::start(self.ca).map_err(StartError::Ca)?;
        let stored = match &self.store {
            Some(path) => read_store(path).map_err(StartError::Store)?,
            None => Default::default(),
        };
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|error| StartError::Bind { what, addr, error })
        };
        let xds_listener = bind("xds", self.xds_addr).await?;
        let admin_listener = bind("admin", self.admin_addr).await?;
        let xds_addr = xds_listener
            .local_addr()
            .map_err(|error| StartError::Bind {
                what: "xds",
                addr: self.xds_addr,
                error,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|error| StartError::Bind {
                what: "admin",
                addr: self.admin_addr,
                error,
            })?;

        let hosts = server_names(self.server_names, &[xds_addr, admin_addr]);
        // Issued only when a listener serves TLS: a control plane serving
        // plaintext on purpose needs no certificate.
        let serving = match !self.insecure_xds || self.admin_tls {
            true => Some(
                crate::serving::Serving::start(&ca, &hosts)
                    .await
                    .map_err(|e| StartError::Ca(format!("serving certificate: {e}")))?,
            ),
            false => None,
        };
        let tls = |config: Result<Arc<rustls::ServerConfig>, String>| {
            config
                .map(tokio_rustls::TlsAcceptor::from)
                .map_err(|e| StartError::Ca(format!("serving certificate: {e}")))
        };
        let (mut xds_tls, mut admin_tls) = (None, None);
        if let Some((serving, _)) = &serving {
            if !self.insecure_xds {
                xds_tls = Some(tls(serving.mtls_config())?);
            }
            if self.admin_tls {
                admin_tls = Some(tls(serving.server_config(vec![b"http/1.1".to_vec()]))?);
            }
        }
        let spiffe_id = format!("{}{}", ca.trust_domain().id(), crate::serving::SPIFFE_PATH);

        let limits = self.limits;
        let (state, published, mut dropped) = State::new(
            mesh,
            stored.valid,
            limits.clone(),
            &self.certificate_provider,
        );
        dropped.extend(stored.dropped);
        let state = Arc::new(Mutex::new(state));
        let clients = Clients::default();
        let telemetry = crate::telemetry::Telemetry::new(self.telemetry);
        let mut tasks = JoinSet::new();
        let store = Store::start(self.store, dropped, state.clone(), &mut tasks);
        let admin = Admin {
            state: state.clone(),
            clients: clients.clone(),
            access: self.access,
            reads: self.reads,
            leases_changed: Arc::default(),
            store,
            read_timeout: limits.admin_read_timeout,
            ca,
            telemetry: telemetry.clone(),
        };
        let (stop, stopped) = watch::channel(false);
        let intake = crate::telemetry::Intake {
            telemetry: telemetry.clone(),
            mtls: xds_tls.is_some(),
        };
        let max_export_bytes = telemetry.options().max_export_bytes;
        let ads = Ads::new(
            published.clone(),
            clients.clone(),
            stopped.clone(),
            limits.clone(),
            xds_tls.is_some(),
            Arc::new(self.scopes),
        );
        // Not in the join set: stopping must close the connections (and
        // their streams), which aborting the server's future would not.
        let mut until_stopped = stopped.clone();
        let connections = Arc::new(Semaphore::new(limits.max_ads_connections));
        let ads_server = tokio::spawn(async move {
            let (incoming, acceptor) =
                crate::transport::incoming(xds_listener, connections, xds_tls);
            let served = tonic::transport::Server::builder()
                .max_concurrent_streams(limits.max_streams_per_connection)
                .add_service(
                    AggregatedDiscoveryServiceServer::new(ads)
                        .max_decoding_message_size(limits.max_message_bytes)
                        .max_encoding_message_size(limits.max_message_bytes),
                )
                // OTLP metrics from the workloads, under the same mutual
                // TLS and connection caps as ADS (ADR 0017).
                .add_service(
                    MetricsServiceServer::new(intake).max_decoding_message_size(max_export_bytes),
                )
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = until_stopped.changed().await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the ADS server stopped");
            }
            // The listener is closed once this returns.
            acceptor.abort();
            let _ = acceptor.await;
        });
        tasks.spawn(serve_admin(
            admin_listener,
            admin.clone(),
            stopped,
            Arc::new(Semaphore::new(limits.max_admin_connections)),
            admin_tls,
        ));
        if let Some((serving, refresh_at)) = serving {
            tasks.spawn(serving.keep_fresh(admin.ca.clone(), hosts, refresh_at));
        }
        tasks.spawn(expire_leases(admin.clone()));
        if let Some(path) = self.mesh_file {
            tasks.spawn(watch_mesh_file(
                state.clone(),
                path,
                seen,
                self.reload_interval,
            ));
        }
        tracing::info!(%xds_addr, %admin_addr, "control plane serving");
        Ok(ControlPlane {
            ca: admin.ca.clone(),
            spiffe_id,
            xds_addr,
            admin_addr,
            state,
            clients,
            telemetry,
            published,
            stop,
            ads_server: Some(ads_server),
            _tasks: tasks,
        })
    }
}

/// A running control plane. Dropping it stops it.
#[derive(Debug)]
pub struct ControlPlane {
    ca: crate::ca::Ca,
    spiffe_id: String,
    xds_addr: SocketAddr,
    admin_addr: SocketAddr,
    state: Arc<Mutex<State>>,
    clients: Clients,
    telemetry: crate::telemetry::Telemetry,
    published: watch::Receiver<Arc<Published>>,
    stop: watch::Sender<bool>,
    ads_server: Option<tokio::task::JoinHandle<()>>,
    _tasks: JoinSet<()>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Ends every ADS stream and admin connection; the tasks in the
        // join set are aborted with it.
        let _ = self.stop.send(true);
    }
}

impl ControlPlane {
    /// Starts building one.
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    /// The SPIFFE ID of the control plane's own certificate,
    /// `spiffe://<trust-domain>/sinew/control-plane`: what clients of its
    /// xDS over mutual TLS expect.
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The mesh's trust bundle, PEM: the roots the CA trusts now, which
    /// clients of xDS and of the admin API over TLS verify the control
    /// plane's certificate with (also served at `GET /v1/trust-bundle`).
    pub fn trust_bundle_pem(&self) -> String {
        self.ca.bundle_pem_now()
    }

    /// Where ADS is served.
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds_addr
    }

    /// Where the admin API is served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The version in force.
    pub fn published(&self) -> Arc<Published> {
        self.published.borrow().clone()
    }

    /// A receiver of every version published.
    pub fn versions(&self) -> watch::Receiver<Arc<Published>> {
        self.published.clone()
    }

    /// How the mesh file stands.
    pub fn mesh_file_status(&self) -> MeshFileStatus {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .mesh_status
            .clone()
    }

    /// The connected clients.
    pub fn clients(&self) -> Vec<ClientView> {
        self.clients.list()
    }

    /// The telemetry workloads pushed: the service graph over the window.
    pub fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.telemetry
    }

    /// Stops serving: ends every stream and connection, and returns once
    /// the addresses are free again (at most a few seconds). Dropping the
    /// control plane stops it too, without waiting.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.ads_server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

async fn serve_admin(
    listener: TcpListener,
    admin: Admin,
    stopped: watch::Receiver<bool>,
    cap: Arc<Semaphore>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let stream = crate::listen::accept(&listener, &cap, "admin").await;
        let admin = admin.clone();
        let tls = tls.clone();
        let read_timeout = admin.read_timeout;
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.handle(request).await) }
            });
            // A client that trickles its headers (slow-loris) is cut off;
            // its body has the same time, in `Admin::register`.
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(read_timeout);
            match tls {
                None => {
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.changed() => {}
                    }
                }
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        crate::transport::HANDSHAKE_TIMEOUT,
                        tls.accept(stream),
                    );
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "admin TLS handshake refused");
                                return;
                            }
                            Err(_) => return,
                        },
                        _ = stopped.changed() => return,
                    };
                    let connection = http.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = stopped.changed() => {}
                    }
                }
            }
        });
    }
}

/// The names the control plane's certificate carries: loopback, the
/// listening addresses unless unspecified, and those configured.
fn server_names(configured: Vec<String>, bound: &[SocketAddr]) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    names.extend(
        bound
            .iter()
            .filter(|a| !a.ip().is_unspecified())
            .map(|a| a.ip().to_string()),
    );
    names.extend(configured);
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Checks the mesh file every `interval`; applies it when its contents
/// change and it is valid, reports it otherwise.
async fn watch_mesh_file(
    state: Arc<Mutex<State>>,
    path: PathBuf,
    seen: Vec<u8>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    // A file caught half written is never taken: a change counts once it
    // reads the same twice in a row.
    let mut file = SettledFile::new(&path, seen);
    loop {
        ticks.tick().await;
        // Read and checked before the lock is taken: no file I/O under it.
        let changed = file.check();
        let checked = changed.map(|contents| check_mesh(&path, &contents));
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        state.mesh_status.checked_at_unix_ms = Some(crate::clients::unix_ms(SystemTime::now()));
        let Some(checked) = checked else {
            continue;
        };
        match checked {
            Ok(mesh) => {
                tracing::info!(path = %path.display(), "mesh file changed");
                state.set_mesh(mesh);
            }
            Err(error) => state.reject_mesh(error.to_string()),
        }
    }
}
