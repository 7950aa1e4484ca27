//! The inbound limits in force for one served service, following the
//! mesh's configuration.

use crate::authz::{Authorizer, CompiledPolicies};
use crate::config::{InboundConfig, MtlsMode, Snapshot};
use crate::deadline::EnforceDeadlineLayer;
use crate::error::ConfigError;
use crate::limit::{AdaptiveLimitLayer, ConcurrencyLimitLayer, RateLimitLayer};
use crate::mesh::Mesh;
use arc_swap::{ArcSwap, Guard};
use std::sync::{Arc, Mutex};

/// The layers built from one inbound block. A layer holds the state its
/// requests share (slots, tokens, the learned limit), so keeping a layer
/// keeps its state.
#[derive(Debug)]
pub(crate) struct Limits {
    /// The mesh's configuration version these were read from.
    version: u64,
    pub(crate) config: InboundConfig,
    pub(crate) deadline: EnforceDeadlineLayer,
    pub(crate) rate: Option<RateLimitLayer>,
    pub(crate) concurrency: Option<ConcurrencyLimitLayer>,
    pub(crate) adaptive: Option<AdaptiveLimitLayer>,
    /// The inbound block's authorization policies; `None`: open.
    pub(crate) authorizer: Option<Arc<Authorizer>>,
}

impl Limits {
    /// Builds the layers of `config`, keeping those of `previous` whose
    /// settings did not change.
    fn build(
        config: InboundConfig,
        policies: Option<Arc<CompiledPolicies>>,
        service: &str,
        version: u64,
        previous: Option<&Limits>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        // The same compiled policies (a snapshot that changed only
        // endpoints shares its services): the same authorizer, counters
        // and all.
        let authorizer =
            policies.map(
                |policies| match previous.and_then(|p| p.authorizer.as_ref()) {
                    Some(before) if Arc::ptr_eq(before.policies(), &policies) => before.clone(),
                    _ => Arc::new(Authorizer::new(service, policies)),
                },
            );
        let rate = carried(
            config.rate_limit,
            previous.map(|p| (p.config.rate_limit, &p.rate)),
            RateLimitLayer::new,
        )?;
        let concurrency = carried(
            config.concurrency_limit,
            previous.map(|p| (p.config.concurrency_limit, &p.concurrency)),
            ConcurrencyLimitLayer::new,
        )?;
        let adaptive = carried(
            config.adaptive_limit,
            previous.map(|p| (p.config.adaptive_limit, &p.adaptive)),
            AdaptiveLimitLayer::new,
        )?;
        Ok(Self {
            version,
            deadline: EnforceDeadlineLayer::new(config.deadline)?,
            rate,
            concurrency,
            adaptive,
            authorizer,
            config,
        })
    }
}

/// The layer for `config`: the previous one when its settings are the
/// same (so its state carries over), a new one otherwise.
fn carried<C: PartialEq, L: Clone>(
    config: Option<C>,
    previous: Option<(Option<C>, &Option<L>)>,
    build: fn(C) -> Result<L, ConfigError>,
) -> Result<Option<L>, ConfigError> {
    let Some(config) = config else {
        return Ok(None);
    };
    if let Some((Some(before), Some(layer))) = previous
        && before == config
    {
        return Ok(Some(layer.clone()));
    }
    build(config).map(Some)
}

/// One served service's limits, rebuilt when the mesh's configuration
/// changes. A request reads the version in force and the limits (two
/// lock-free loads); only the first request after a change rebuilds.
#[derive(Debug)]
pub(crate) struct Live {
    mesh: Mesh,
    service: Arc<str>,
    /// Applies while the mesh's configuration has no inbound block for
    /// the service.
    fallback: InboundConfig,
    /// `fallback`'s authorization policies, compiled.
    fallback_policies: Option<Arc<CompiledPolicies>>,
    current: ArcSwap<Limits>,
    /// The authorizer of the server Listener's RBAC policies with the
    /// local ones, made once per version of either.
    xds_authorizer: arc_swap::ArcSwapOption<Combined>,
    /// The server Listener's policies as last read, with the discovery
    /// state's epoch they were read at.
    #[cfg_attr(not(feature = "xds"), allow(dead_code))]
    xds_seen: arc_swap::ArcSwapOption<(u64, Option<Arc<CompiledPolicies>>)>,
    rebuilding: Mutex<()>,
    /// The server Listener (gRFC A36) subscribed for the listening
    /// address, when the mesh's configuration comes from a control plane
    /// whose bootstrap names a template.
    server_listener: Option<String>,
}

/// The Listener's policies and the local ones, as one authorizer.
#[derive(Debug)]
struct Combined {
    xds: Arc<CompiledPolicies>,
    local: Option<Arc<Authorizer>>,
    authorizer: Arc<Authorizer>,
}

impl Live {
    /// The settings of the served service's telemetry (the mesh's
    /// metrics and edges).
    pub(crate) fn telemetry(&self) -> Arc<crate::telemetry::layer::Settings> {
        self.mesh.shared.telemetry.inbound(&self.service)
    }
    /// Follows `service`'s inbound block in `mesh`, or `fallback` when
    /// there is none. An invalid `fallback` is refused, naming the field
    /// under `inbound`.
    pub(crate) fn new(
        mesh: Mesh,
        service: &str,
        fallback: InboundConfig,
    ) -> Result<Self, ConfigError> {
        fallback.validate().map_err(|e| e.within("inbound"))?;
        let fallback_policies = match fallback.authorization.is_empty() {
            true => None,
            false => Some(Arc::new(
                crate::config::compile_policies("authorization", &fallback.authorization)
                    .map_err(|e| e.within("inbound"))?,
            )),
        };
        let snapshot = mesh.snapshot();
        let (config, policies) = in_force(&snapshot, service, &fallback, &fallback_policies);
        let first = Limits::build(config, policies, service, snapshot.version(), None)?;
        Ok(Self {
            mesh,
            service: service.into(),
            fallback,
            fallback_policies,
            current: ArcSwap::from_pointee(first),
            xds_authorizer: arc_swap::ArcSwapOption::empty(),
            xds_seen: arc_swap::ArcSwapOption::empty(),
            rebuilding: Mutex::new(()),
            server_listener: None,
        })
    }

    /// Serving on `addr` (the listener's bound address, as it is: a
    /// wildcard bind names the wildcard): with a control plane, subscribes
    /// to the address's server Listener, whose transport then takes
    /// precedence over `inbound.mtls`.
    pub(crate) fn serving(self, addr: std::net::SocketAddr) -> Self {
        #[cfg(feature = "xds")]
        let server_listener = self
            .mesh
            .shared
            .discovery
            .as_ref()
            .and_then(|d| d.watch_server(addr));
        #[cfg(not(feature = "xds"))]
        let server_listener = {
            let _ = addr;
            None
        };
        Self {
            server_listener,
            ..self
        }
    }

    /// Waits while the server Listener is subscribed and nothing is known
    /// of it yet; at once without one. The caller bounds the wait.
    pub(crate) async fn settled(&self) {
        #[cfg(feature = "xds")]
        if let (Some(name), Some(discovery)) = (&self.server_listener, &self.mesh.shared.discovery)
        {
            discovery.server_settled(name).await;
        }
    }

    /// The transport the control plane's server Listener asks for, while
    /// one is in use.
    fn xds_mtls(&self) -> Option<MtlsMode> {
        #[cfg(feature = "xds")]
        if let (Some(name), Some(discovery)) = (&self.server_listener, &self.mesh.shared.discovery)
        {
            return discovery.server_mtls(name);
        }
        None
    }

    /// The policies of the control plane's server Listener (its RBAC
    /// filters, gRFC A41), while one is in use.
    #[inline]
    fn xds_authorization(&self) -> Option<Arc<CompiledPolicies>> {
        #[cfg(feature = "xds")]
        if let (Some(name), Some(discovery)) = (&self.server_listener, &self.mesh.shared.discovery)
        {
            // Read per request: the state's lock only after it changed.
            // The epoch is read first, so what is kept is never older
            // than the epoch it is kept under.
            let epoch = discovery.epoch();
            if let Some(seen) = &*self.xds_seen.load()
                && seen.0 == epoch
            {
                return seen.1.clone();
            }
            let policies = discovery.server_authorization(name);
            self.xds_seen
                .store(Some(Arc::new((epoch, policies.clone()))));
            return policies;
        }
        None
    }

    /// The authorization in force for the next request: the server
    /// Listener's RBAC policies and the inbound block's (or the
    /// builder's), both enforced, so that neither source can open what
    /// the other closes; `None` when the service is open.
    #[inline]
    pub(crate) fn authorizer(&self, limits: &Limits) -> Option<Arc<Authorizer>> {
        match self.xds_authorization() {
            Some(xds) if !xds.groups.is_empty() => self.combined(xds, limits.authorizer.as_ref()),
            _ => limits.authorizer.clone(),
        }
    }

    /// The authorizer of the Listener's policies followed by the local
    /// ones, made on the first request and kept while both stay the same.
    #[cold]
    fn combined(
        &self,
        xds: Arc<CompiledPolicies>,
        local: Option<&Arc<Authorizer>>,
    ) -> Option<Arc<Authorizer>> {
        if let Some(cached) = &*self.xds_authorizer.load()
            && Arc::ptr_eq(&cached.xds, &xds)
            && match (&cached.local, local) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        {
            return Some(cached.authorizer.clone());
        }
        let mut policies = (*xds).clone();
        if let Some(local) = local {
            policies
                .groups
                .extend(local.policies().groups.iter().cloned());
        }
        let authorizer = Arc::new(Authorizer::new(&self.service, Arc::new(policies)));
        self.xds_authorizer.store(Some(Arc::new(Combined {
            xds,
            local: local.cloned(),
            authorizer: authorizer.clone(),
        })));
        Some(authorizer)
    }

    /// The limits in force.
    #[inline]
    pub(crate) fn limits(&self) -> Guard<Arc<Limits>> {
        let version = self.mesh.shared.routing.load().snapshot.version();
        let limits = self.current.load();
        if limits.version == version {
            return limits;
        }
        self.rebuild();
        self.current.load()
    }

    /// The transport mode in force: the server Listener's (gRFC A36),
    /// while the control plane serves one for the listening address;
    /// else the inbound block's `mtls`, or, when it says nothing, `strict`
    /// if the mesh has an identity and `disabled` if it has none.
    #[inline]
    pub(crate) fn mtls(&self) -> MtlsMode {
        if let Some(mode) = self.xds_mtls() {
            return mode;
        }
        match self.limits().config.mtls {
            Some(mode) => mode,
            None if self.mesh.identity().is_some() => MtlsMode::Strict,
            None => MtlsMode::Disabled,
        }
    }

    /// The mesh's workload identity, when it has one.
    pub(crate) fn identity(&self) -> Option<&crate::tls::Identity> {
        self.mesh.identity()
    }

    /// Where the mode in force was set: the service's inbound block in the
    /// mesh's configuration, or the builder's.
    pub(crate) fn mtls_field(&self) -> String {
        if let (Some(name), Some(_)) = (&self.server_listener, self.xds_mtls()) {
            return format!("Listener `{name}`.filter_chains.transport_socket");
        }
        let snapshot = self.mesh.snapshot();
        match snapshot.service(&self.service).and_then(|s| s.inbound()) {
            Some(_) => format!("services.{}.inbound.mtls", self.service),
            None => "inbound.mtls".to_owned(),
        }
    }

    #[cold]
    fn rebuild(&self) {
        let _one = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = self.mesh.snapshot();
        let previous = self.current.load_full();
        if previous.version >= snapshot.version() {
            return;
        }
        let (config, policies) = in_force(
            &snapshot,
            &self.service,
            &self.fallback,
            &self.fallback_policies,
        );
        // The snapshot validated the block; should a layer still refuse
        // it, the limits in force stay, marked current so that requests
        // do not try again until the next change.
        let next = Limits::build(
            config,
            policies,
            &self.service,
            snapshot.version(),
            Some(&previous),
        )
        .unwrap_or_else(|error| {
            tracing::warn!(%error, service = %self.service, "inbound limits unchanged");
            Limits {
                version: snapshot.version(),
                config: previous.config.clone(),
                deadline: previous.deadline,
                rate: previous.rate.clone(),
                concurrency: previous.concurrency.clone(),
                adaptive: previous.adaptive.clone(),
                authorizer: previous.authorizer.clone(),
            }
        });
        if next.config != previous.config {
            tracing::info!(service = %self.service, version = snapshot.version(), "inbound limits changed");
        }
        self.current.store(Arc::new(next));
    }
}

/// The inbound block in force for `service` and its compiled policies:
/// the mesh configuration's, or the builder's while it has none. The
/// builder's policies stay enforced under the configuration's block, with
/// its policies: a block that only sets a rate limit must not open a
/// service the code closed.
fn in_force(
    snapshot: &Snapshot,
    service: &str,
    fallback: &InboundConfig,
    fallback_policies: &Option<Arc<CompiledPolicies>>,
) -> (InboundConfig, Option<Arc<CompiledPolicies>>) {
    match snapshot
        .service(service)
        .and_then(|s| Some((s.inbound()?, s.authorization())))
    {
        Some((inbound, policies)) => {
            let policies = match (policies, fallback_policies) {
                (Some(configured), Some(builder)) => {
                    let mut both = (**configured).clone();
                    both.groups.extend(builder.groups.iter().cloned());
                    Some(Arc::new(both))
                }
                (configured, builder) => configured.or(builder.as_ref()).cloned(),
            };
            (inbound.clone(), policies)
        }
        None => (fallback.clone(), fallback_policies.clone()),
    }
}
