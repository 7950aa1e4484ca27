use super::config_metrics::ConfigSource;
use super::source::{read_file, watch};
use super::{Mesh, Shared};
use crate::classify::{Classifiers, Classify};
use crate::config::{Locality, MeshConfig, Snapshot};
use crate::error::ConfigError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`Mesh`]. Made by [`Mesh::builder`].
#[derive(Debug)]
pub struct MeshBuilder {
    source: Source,
    reload_interval: Duration,
    locality: Option<Locality>,
    classifiers: Classifiers,
    /// The first classifier refused (for its name), returned by `build`.
    classifier_error: Option<ConfigError>,
    #[cfg(feature = "xds")]
    initial_fetch_timeout: Duration,
    #[cfg(feature = "xds")]
    xds_cache: Option<PathBuf>,
    /// The push of edge metrics to the control plane; `None` when off.
    #[cfg(feature = "xds")]
    telemetry_push: Option<crate::telemetry::push::PushSettings>,
    identity: Option<crate::tls::Identity>,
    certificate_files: Option<crate::tls::FileWatcherConfig>,
    /// Where `identity`'s certificate comes from, when the control
    /// plane's CA issues it.
    issuer: Option<crate::tls::IssuerConfig>,
    /// This process's service, for telemetry.
    service_name: Option<String>,
}

#[derive(Debug)]
enum Source {
    Config(MeshConfig),
    File(PathBuf),
    #[cfg(feature = "xds")]
    ControlPlane(crate::xds::Bootstrap),
}

impl Default for MeshBuilder {
    fn default() -> Self {
        Self {
            source: Source::Config(MeshConfig::default()),
            reload_interval: Duration::from_secs(1),
            locality: None,
            classifiers: Classifiers::default(),
            classifier_error: None,
            #[cfg(feature = "xds")]
            initial_fetch_timeout: Duration::from_secs(15),
            #[cfg(feature = "xds")]
            xds_cache: None,
            #[cfg(feature = "xds")]
            telemetry_push: Some(Default::default()),
            identity: None,
            certificate_files: None,
            issuer: None,
            service_name: None,
        }
    }
}

impl MeshBuilder {
    /// Names this process's own service, as its telemetry says it: the
    /// source of the requests it sends (metrics, edges). Without it, the
    /// bootstrap's node cluster names it when configuration comes from a
    /// control plane, and `unknown` otherwise.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Uses a configuration built in code. Replace it later with
    /// [`Mesh::apply`].
    pub fn config(mut self, config: MeshConfig) -> Self {
        self.source = Source::Config(config);
        self
    }

    /// Reads the configuration from a file (JSON when its name ends in
    /// `.json`, YAML otherwise) and applies it again whenever its contents
    /// change.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Source::File(path.into());
        self
    }

    /// Where this process runs. Clusters with `prefer_local_zone` send its
    /// requests to endpoints in the same zone while enough of them are
    /// available. Default: unknown (no zone preference).
    pub fn locality(mut self, region: impl Into<String>, zone: impl Into<String>) -> Self {
        self.locality = Some(Locality {
            region: region.into(),
            zone: zone.into(),
        });
        self
    }

    /// Takes the configuration from the xDS control plane at `url`
    /// (`http://host:port`), over ADS. See [`crate::xds`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), sinew::error::ConfigError> {
    /// let mesh = sinew::mesh::Mesh::builder()
    ///     .control_plane("http://127.0.0.1:18000")
    ///     .build()
    ///     .await?;
    /// let reviews = mesh.http_client::<http_body_util::Empty<bytes::Bytes>>("reviews");
    /// # let _ = reviews; Ok(()) }
    /// ```
    #[cfg(feature = "xds")]
    pub fn control_plane(mut self, url: &str) -> Self {
        self.source = Source::ControlPlane(crate::xds::Bootstrap::for_server(url));
        self
    }

    /// Takes the configuration from the control planes a gRPC bootstrap
    /// names (see [`Bootstrap`](crate::xds::Bootstrap), which also reads
    /// `GRPC_XDS_BOOTSTRAP`). The bootstrap's locality, if any, is this
    /// process's unless [`MeshBuilder::locality`] says otherwise.
    #[cfg(feature = "xds")]
    pub fn bootstrap(mut self, bootstrap: crate::xds::Bootstrap) -> Self {
        self.source = Source::ControlPlane(bootstrap);
        self
    }

    /// With a control plane: how long a resource may take to arrive while
    /// connected before it is taken not to exist, and how long a request
    /// for a service not configured yet waits before failing with
    /// [`RouteError::Undiscovered`](super::RouteError::Undiscovered).
    /// Default: 15 s.
    #[cfg(feature = "xds")]
    pub fn initial_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.initial_fetch_timeout = timeout;
        self
    }

    /// How a mesh with a control plane pushes its golden metrics per edge
    /// ([`Mesh::edges`](super::Mesh::edges)) to it, as OTLP metrics
    /// ([`crate::telemetry::push`]). Default: on, every 5 s.
    #[cfg(feature = "xds")]
    pub fn telemetry_push(mut self, settings: crate::telemetry::push::PushSettings) -> Self {
        self.telemetry_push = Some(settings);
        self
    }

    /// Does not push telemetry to the control plane.
    #[cfg(feature = "xds")]
    pub fn no_telemetry_push(mut self) -> Self {
        self.telemetry_push = None;
        self
    }

    /// With a control plane: keeps the configuration in force in `path`,
    /// and starts from it when the control plane cannot be reached at
    /// start-up (fail-static). The log and
    /// [`Mesh::xds_status`](super::Mesh::xds_status) say so when it
    /// happens. Off by default.
    #[cfg(feature = "xds")]
    pub fn xds_cache(mut self, path: impl Into<PathBuf>) -> Self {
        self.xds_cache = Some(path.into());
        self
    }

    /// Registers an outcome classifier as `name`, for the configuration to
    /// select with a route's or a cluster's `classifier` field (see
    /// [`Classifiers`]). `default` is registered from the start (the
    /// default [`StatusClassifier`](crate::classify::StatusClassifier));
    /// registering it again replaces it. A name is 1 to 128 characters of
    /// letters, digits, `.`, `_` and `-`: [`MeshBuilder::build`] returns
    /// the error for another. Every configuration, from any source, is
    /// refused while it names a classifier not registered here, naming the
    /// field (`clusters.pool.classifier`).
    ///
    /// ```
    /// use sinew::classify::StatusClassifier;
    /// use sinew::config::MeshConfig;
    /// use sinew::mesh::Mesh;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sinew::error::ConfigError> {
    /// let config = MeshConfig::from_yaml(r#"
    /// services:
    ///   reviews:
    ///     routes: [{ split: [{ cluster: reviews-v1 }], classifier: retry-500 }]
    /// clusters:
    ///   reviews-v1:
    ///     classifier: retry-500
    ///     endpoints: [{ address: "127.0.0.1:9001" }]
    /// "#)?;
    /// let retry_500 = StatusClassifier::default().retry_on_status(http::StatusCode::INTERNAL_SERVER_ERROR);
    /// let mesh = Mesh::builder()
    ///     .classifier("retry-500", retry_500)
    ///     .config(config)
    ///     .build()
    ///     .await?;
    /// # let _ = mesh; Ok(()) }
    /// ```
    pub fn classifier(mut self, name: impl Into<String>, classifier: impl Classify) -> Self {
        if let Err(error) = self.classifiers.insert(name, classifier) {
            self.classifier_error.get_or_insert(error);
        }
        self
    }

    /// How often a configuration file is checked for changes. Default: 1 s.
    pub fn reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every;
        self
    }

    /// This workload's identity: its certificate and trust bundle, for
    /// mutual TLS with the endpoints of clusters that require it
    /// ([`ClusterConfig::requires_mtls`](crate::config::ClusterConfig::requires_mtls))
    /// and, serving, with callers. Feed it from files
    /// ([`FileWatcher`](crate::tls::FileWatcher)) or by hand
    /// ([`Identity::set`](crate::tls::Identity::set)); rotations apply to
    /// new connections. Without one (or before it has a certificate),
    /// requests to such clusters fail with
    /// [`MtlsUnavailable`](super::MtlsUnavailable): never plaintext.
    ///
    /// ```
    /// # async fn f() -> Result<(), sinew::error::ConfigError> {
    /// let identity = sinew::tls::Identity::new();
    /// let mesh = sinew::mesh::Mesh::builder().identity(identity.clone()).build().await?;
    /// assert!(mesh.identity().is_some());
    /// # Ok(()) }
    /// ```
    pub fn identity(mut self, identity: crate::tls::Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Takes this workload's certificate, key and trust bundle from files
    /// an external issuer writes (SPIRE's helper, cert-manager, Vault
    /// agent), re-read every `refresh_interval` (gRFC A29's `file_watcher`
    /// shape). `build` fails, naming the file, if they cannot be loaded;
    /// later bad files are logged and the last good material stays. Into
    /// the [`identity`](Self::identity) given, or a new one.
    ///
    /// A mesh built from a bootstrap ([`bootstrap`](Self::bootstrap))
    /// with a `certificate_providers` block does this by itself, with the
    /// instance named `default` (or the only one).
    ///
    /// ```no_run
    /// use sinew::tls::FileWatcherConfig;
    ///
    /// # async fn f() -> Result<(), sinew::error::ConfigError> {
    /// let files = FileWatcherConfig::new("/certs/cert.pem", "/certs/key.pem", "/certs/ca.pem");
    /// let mesh = sinew::mesh::Mesh::builder().certificate_files(files).build().await?;
    /// assert!(mesh.identity().is_some_and(|i| i.is_ready()));
    /// # Ok(()) }
    /// ```
    pub fn certificate_files(mut self, files: crate::tls::FileWatcherConfig) -> Self {
        self.certificate_files = Some(files);
        self
    }

    /// The identity and what keeps it fed, from the settings given.
    async fn identity_source(
        identity: Option<crate::tls::Identity>,
        files: Option<crate::tls::FileWatcherConfig>,
    ) -> Result<super::IdentitySource, ConfigError> {
        let Some(files) = files else {
            return Ok(super::IdentitySource {
                identity,
                watcher: None,
            });
        };
        let identity = identity.unwrap_or_default();
        let watcher = crate::tls::FileWatcher::start(files, identity.clone())
            .await
            .map_err(|e| ConfigError::new("certificate_files", e.to_string()))?;
        Ok(super::IdentitySource {
            identity: Some(identity),
            watcher: Some(watcher),
        })
    }

    /// Gets this workload's certificate from the control plane's CA when
    /// the mesh is built, and keeps it renewed for as long as the mesh
    /// lives: the private key is made in process (a new one for each
    /// leaf) and only a CSR is sent; renewals come at about half the
    /// leaf's lifetime and apply to new connections, never dropping
    /// established ones; the trust bundle is re-read every
    /// [`IssuerConfig::bundle_refresh`](crate::tls::IssuerConfig::bundle_refresh)
    /// so that a CA rotating in is trusted before it signs. The
    /// certificate goes into the [`identity`](Self::identity) given, or a
    /// new one ([`Mesh::identity`]).
    ///
    /// [`build`](Self::build) fails if the first certificate cannot be
    /// had, with an error on the field `certificates_from_control_plane`
    /// saying why (unreachable, token refused (401), SPIFFE ID refused
    /// (403), ...). For the error as a type, or an issuer apart from a
    /// mesh, use [`Issuer::start`](crate::tls::Issuer::start).
    ///
    /// ```no_run
    /// use sinew::mesh::Mesh;
    /// use sinew::tls::IssuerConfig;
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// // A bootstrap token from `POST /v1/bootstrap-tokens`: the control
    /// // plane knows which SPIFFE ID it grants.
    /// let token = std::fs::read_to_string("/var/run/secrets/sinew/token")?;
    /// let mesh = Mesh::builder()
    ///     .config_file("mesh.yaml")
    ///     .certificates_from_control_plane(IssuerConfig::new(
    ///         "http://control-plane:18001",
    ///         token.trim(),
    ///     )?)
    ///     .build()
    ///     .await?;
    /// assert!(mesh.identity().is_some_and(|id| id.is_ready()));
    /// # Ok(()) }
    /// ```
    pub fn certificates_from_control_plane(mut self, config: crate::tls::IssuerConfig) -> Self {
        self.issuer = Some(config);
        self
    }

    /// Builds the mesh. The first configuration must be valid: its error,
    /// naming the field, is returned otherwise. A file source starts its
    /// watcher on the current tokio runtime; it stops when the last clone
    /// of the mesh is dropped. With
    /// [`certificates_from_control_plane`](Self::certificates_from_control_plane),
    /// the first certificate is installed before this returns.
    pub async fn build(mut self) -> Result<Mesh, ConfigError> {
        let Some(config) = self.issuer.take() else {
            return self.build_source().await;
        };
        if self.certificate_files.is_some() {
            return Err(ConfigError::new(
                "certificates_from_control_plane",
                "certificate_files is set too: give the identity one source",
            ));
        }
        let identity = self
            .identity
            .get_or_insert_with(crate::tls::Identity::new)
            .clone();
        // The configuration first: an invalid one costs the CA nothing.
        let mesh = self.build_source().await?;
        let issuer = crate::tls::Issuer::start(config, identity)
            .await
            .map_err(|e| ConfigError::new("certificates_from_control_plane", e.to_string()))?;
        mesh.shared.keep_issuer(issuer);
        Ok(mesh)
    }

    async fn build_source(self) -> Result<Mesh, ConfigError> {
        crate::error::check::duration("reload_interval", self.reload_interval)?;
        if let Some(error) = self.classifier_error {
            return Err(error);
        }
        let classifiers = self.classifiers;
        #[cfg(feature = "xds")]
        let service_name = self.service_name.clone().or_else(|| match &self.source {
            Source::ControlPlane(bootstrap) => Some(bootstrap.node_cluster.clone()),
            _ => None,
        });
        #[cfg(not(feature = "xds"))]
        let service_name = self.service_name.clone();
        #[cfg(feature = "xds")]
        let files = match &self.source {
            // The bootstrap's provider, unless the application chose.
            Source::ControlPlane(bootstrap) if self.identity.is_none() => self
                .certificate_files
                .or_else(|| bootstrap.certificate_provider().cloned()),
            _ => self.certificate_files,
        };
        #[cfg(not(feature = "xds"))]
        let files = self.certificate_files;
        let identity = Self::identity_source(self.identity, files).await?;
        match self.source {
            Source::Config(config) => {
                classifiers.check(&config)?;
                let shared = Shared::new(
                    Snapshot::build(config, 1)?,
                    self.locality,
                    ConfigSource::Static,
                )
                .with_classifiers(classifiers)
                .with_service_name(service_name.as_deref())
                .with_identity(identity);
                Ok(Mesh {
                    shared: Arc::new(shared),
                })
            }
            Source::File(path) => {
                let (config, contents) = read_file(&path)?;
                classifiers.check(&config)?;
                let shared = Arc::new(
                    Shared::new(
                        Snapshot::build(config, 1)?,
                        self.locality,
                        ConfigSource::File,
                    )
                    .with_classifiers(classifiers)
                    .with_service_name(service_name.as_deref())
                    .with_identity(identity),
                );
                tokio::spawn(watch(
                    Arc::downgrade(&shared),
                    path,
                    contents,
                    self.reload_interval,
                ));
                Ok(Mesh { shared })
            }
            #[cfg(feature = "xds")]
            Source::ControlPlane(bootstrap) => {
                crate::error::check::duration("initial_fetch_timeout", self.initial_fetch_timeout)?;
                if let Some(push) = &self.telemetry_push {
                    crate::error::check::duration("telemetry_push.interval", push.interval)?;
                    if push.interval < Duration::from_millis(100) {
                        return Err(ConfigError::new(
                            "telemetry_push.interval",
                            "must be at least 100 ms",
                        ));
                    }
                }
                let push_target = self.telemetry_push.clone().map(|settings| {
                    let bootstrap = bootstrap.clone();
                    (bootstrap, identity.identity.clone(), settings)
                });
                let locality = self.locality.or_else(|| bootstrap.locality.clone());
                let settings = crate::xds::Settings {
                    bootstrap,
                    initial_fetch_timeout: self.initial_fetch_timeout,
                    cache: self.xds_cache,
                    classifiers: classifiers.clone(),
                    identity: identity.identity.clone(),
                };
                let (discovery, start) = crate::xds::Discovery::start(settings);
                let empty = Snapshot::build(MeshConfig::default(), 1)?;
                let shared = Arc::new(
                    Shared::with_discovery(empty, locality, Some(discovery), ConfigSource::Xds)
                        .with_classifiers(classifiers)
                        .with_service_name(service_name.as_deref())
                        .with_identity(identity),
                );
                start(Arc::downgrade(&shared));
                if let Some((bootstrap, identity, settings)) = push_target {
                    let ads = Arc::downgrade(&shared);
                    let target = crate::telemetry::push::Target {
                        bootstrap,
                        identity,
                        ads_channel: Arc::new(move || {
                            ads.upgrade()
                                .and_then(|s| s.discovery.as_ref().and_then(|d| d.channel()))
                        }),
                    };
                    let alive = Arc::downgrade(&shared);
                    tokio::spawn(crate::telemetry::push::run(
                        shared.telemetry.edges.clone(),
                        move || alive.strong_count() > 0,
                        target,
                        settings,
                    ));
                }
                Ok(Mesh { shared })
            }
        }
    }
}
