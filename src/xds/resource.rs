//! The four resource types a client subscribes to, and what each becomes
//! once translated into Sinew's model.

use crate::config::{ClusterConfig, Endpoint, FaultConfig, RouteConfig};
use serde::Serialize;

/// An xDS resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `Listener` (LDS): one per target service.
    Listener,
    /// `RouteConfiguration` (RDS).
    Route,
    /// `Cluster` (CDS).
    Cluster,
    /// `ClusterLoadAssignment` (EDS).
    Endpoints,
}

impl Kind {
    /// In subscription order: each type names the resources of the next.
    pub const ALL: [Kind; 4] = [Kind::Listener, Kind::Route, Kind::Cluster, Kind::Endpoints];

    /// The type URL on the wire.
    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            Kind::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Endpoints => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        }
    }

    pub(super) fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_url() == url)
    }

    /// The resource's name in Envoy's API, for messages.
    pub fn api_name(self) -> &'static str {
        match self {
            Kind::Listener => "Listener",
            Kind::Route => "RouteConfiguration",
            Kind::Cluster => "Cluster",
            Kind::Endpoints => "ClusterLoadAssignment",
        }
    }

    /// In state of the world, a Listener or Cluster left out of a response
    /// no longer exists; a route configuration or an assignment left out
    /// is unchanged.
    pub(super) fn absence_deletes(self) -> bool {
        matches!(self, Kind::Listener | Kind::Cluster)
    }
}

/// A translated resource.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Resource {
    Listener(ListenerResource),
    /// A server's Listener (gRFC A36): the transport it asks for, and the
    /// policies of its RBAC filters (gRFC A41).
    ServerListener(ServerListenerResource),
    Route(RouteTable),
    Cluster(Box<ClusterResource>),
    /// Parsed already: assignments run to 100,000 endpoints.
    Endpoints(Vec<Endpoint>),
}

/// What a server's Listener says: the transport, and the policies its
/// RBAC filters carry (empty: none).
#[derive(Clone, Debug)]
pub(super) struct ServerListenerResource {
    pub(super) mtls: crate::config::MtlsMode,
    /// The filters as they came: what an update is compared on (the
    /// compiled form holds regexes, which do not compare).
    pub(super) rbac: Vec<envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac>,
    pub(super) authorization: std::sync::Arc<crate::authz::CompiledPolicies>,
}

impl PartialEq for ServerListenerResource {
    fn eq(&self, other: &Self) -> bool {
        self.mtls == other.mtls && self.rbac == other.rbac
    }
}

/// What a target service's Listener says: where its routes are, and the
/// HTTP filters that shape them.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ListenerResource {
    pub(super) routes: ListenerRoutes,
    /// With a fault-injection filter in the chain: its default faults
    /// (empty when it has none), which routes may override.
    pub(super) fault_filter: Option<FaultConfig>,
}

/// Where a Listener's routes are.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ListenerRoutes {
    /// In the named route configuration (RDS).
    Rds(String),
    /// Inline.
    Inline(RouteTable),
}

impl ListenerResource {
    /// A route as the Listener's filters make it: the fault filter's
    /// default unless the route (or its virtual host) overrides it, and
    /// no faults without the filter.
    pub(super) fn shape(&self, route: &RouteConfig) -> RouteConfig {
        let mut route = route.clone();
        route.fault = match &self.fault_filter {
            None => None,
            Some(default) => route.fault.or_else(|| Some(default.clone())),
        }
        .filter(|f| f.delay.is_some() || f.abort.is_some());
        route
    }
}

/// A route configuration: virtual hosts, each with domains and routes.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct RouteTable {
    pub(super) virtual_hosts: Vec<VirtualHost>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct VirtualHost {
    pub(super) domains: Vec<String>,
    pub(super) routes: Vec<RouteConfig>,
}

impl RouteTable {
    /// The routes of the virtual host for `authority`, chosen as gRPC
    /// does: an exact domain, then the longest suffix (`*.example`) or
    /// prefix (`example.*`) wildcard, then `*`.
    pub(super) fn routes_for(&self, authority: &str) -> Option<&[RouteConfig]> {
        let mut best: Option<(u8, usize, &VirtualHost)> = None;
        for vh in &self.virtual_hosts {
            for domain in &vh.domains {
                let rank = if domain == authority {
                    Some((3, domain.len()))
                } else if domain == "*" {
                    Some((0, 0))
                } else if let Some(suffix) = domain.strip_prefix('*') {
                    authority.ends_with(suffix).then_some((2, domain.len()))
                } else if let Some(prefix) = domain.strip_suffix('*') {
                    authority.starts_with(prefix).then_some((1, domain.len()))
                } else {
                    None
                };
                if let Some((class, len)) = rank
                    && best.is_none_or(|(c, l, _)| (class, len) > (c, l))
                {
                    best = Some((class, len, vh));
                }
            }
        }
        best.map(|(_, _, vh)| vh.routes.as_slice())
    }

    /// Every cluster the table's routes name.
    pub(super) fn clusters(&self) -> impl Iterator<Item = &str> {
        self.virtual_hosts
            .iter()
            .flat_map(|vh| &vh.routes)
            .flat_map(|r| &r.split)
            .map(|w| w.cluster.as_str())
    }
}

/// A Cluster: its policies, and where its endpoints come from.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ClusterResource {
    /// Policies; the endpoints are in `inline` or come by EDS.
    pub(super) config: ClusterConfig,
    /// The assignment to subscribe to (EDS), or `None` when the endpoints
    /// came with the cluster (`load_assignment`, a STATIC cluster).
    pub(super) eds_name: Option<String>,
}
