//! Listeners for xDS-enabled gRPC servers (gRFC A36). A server asks for
//! the Listener its bootstrap's `server_listener_resource_name_template`
//! names, its listening address in place of `%s` (for instance
//! `grpc/server?xds.resource.listening_address=10.0.0.1:8080`). The
//! control plane serves one for every address that is an endpoint of a
//! cluster: a filter chain whose HttpConnectionManager routes every
//! request to the server's own handlers (`non_forwarding_action`), over
//! STRICT mTLS when a cluster holding the endpoint requires it, with the
//! RBAC filters ([`rbac`](super::rbac)) of the authorization policies of
//! the services whose routes reach a cluster holding it. A server
//! listening on a wildcard address is the endpoint at that port of the
//! address its ADS connection comes from.
//!
//! The template is the workload's choice, so the name is not parsed
//! against one: the listening address is the text after the name's last
//! `=` or `/` (the whole name if it has neither), which covers gRPC's
//! documented template, `xdstp:` names and Istio's
//! `xds.istio.io/grpc/lds/inbound/%s`.

use super::{Encoded, HCM, LISTENER, ROUTER, ResourceSet, encoded, pack, tls};
use envoy_types::pb::envoy::config::core::v3::{
    Address, SocketAddress, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    NonForwardingAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route, route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType,
};
use prost::Message;
use sinew::config::{AuthorizationPolicy, ClusterConfig, ServiceConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Where the server Listeners are kept in a [`ResourceSet`]: by listening
/// address (`10.0.0.1:8080`, `[::1]:80`), without a name (a Listener's
/// name is the one its server asked for). Not a type URL: no client asks
/// for this type, only for Listeners.
pub const SERVER_LISTENER: &str = "sinew.server_listener";

/// The listening address a server Listener's name carries, if any.
pub fn listening_address(name: &str) -> Option<SocketAddr> {
    let tail = name.rsplit(['=', '/']).next().unwrap_or(name);
    tail.parse().ok()
}

fn socket_address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
            ..SocketAddress::default()
        })),
    }
}

/// The server Listener for `addr`, without its name: STRICT mTLS with the
/// provider instance `instance` when `mtls`, plaintext otherwise; the
/// authorization `filters` before the router.
pub(crate) fn server_listener(
    addr: SocketAddr,
    mtls: bool,
    instance: &str,
    mut filters: Vec<HttpFilter>,
) -> Arc<Encoded> {
    let router = HttpFilter {
        name: "envoy.filters.http.router".to_owned(),
        config_type: Some(ConfigType::TypedConfig(pack(ROUTER, &Router::default()))),
        ..HttpFilter::default()
    };
    // Requests go to the server's own handlers: one route for any path,
    // inline (a server has nothing to subscribe to beyond its Listener).
    let routes = RouteConfiguration {
        name: "inbound".to_owned(),
        virtual_hosts: vec![VirtualHost {
            name: "inbound".to_owned(),
            domains: vec!["*".to_owned()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix(String::new())),
                    ..RouteMatch::default()
                }),
                action: Some(route::Action::NonForwardingAction(NonForwardingAction {})),
                ..Route::default()
            }],
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "inbound".to_owned(),
        route_specifier: Some(RouteSpecifier::RouteConfig(routes)),
        http_filters: {
            filters.push(router);
            filters
        },
        ..HttpConnectionManager::default()
    };
    let listener = Listener {
        address: Some(socket_address(addr)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(HCM, &hcm))),
            }],
            transport_socket: mtls.then(|| tls::downstream(instance)),
            ..FilterChain::default()
        }],
        ..Listener::default()
    };
    encoded(LISTENER, listener.encode_to_vec())
}

/// The resource of `type_url` named `name` in `set`: the one of that name,
/// or, for a Listener, the server Listener of the address the name
/// carries, named as asked. A server listening on a wildcard address
/// (`0.0.0.0:8080`, `[::]:8080`) is taken for the endpoint at that port
/// of `peer`, the address its ADS connection comes from, and its Listener
/// carries the wildcard address it listens on (gRPC requires the two to
/// be equal).
pub fn resolve(
    set: &ResourceSet,
    type_url: &str,
    name: &str,
    peer: Option<IpAddr>,
) -> Option<Arc<Encoded>> {
    if let Some(e) = set.get(type_url).and_then(|of_type| of_type.get(name)) {
        return Some(e.clone());
    }
    if type_url != LISTENER {
        return None;
    }
    let asked = listening_address(name)?;
    let endpoint = if asked.ip().is_unspecified() {
        SocketAddr::new(peer?.to_canonical(), asked.port())
    } else {
        asked
    };
    let body = set.get(SERVER_LISTENER)?.get(&endpoint.to_string())?;
    let rest = if endpoint == asked {
        body.any.value.clone()
    } else {
        let mut listener = Listener::decode(body.any.value.as_slice()).ok()?;
        listener.address = Some(socket_address(asked));
        listener.encode_to_vec()
    };
    // Two encoded messages one after the other decode as one (protobuf
    // merges them): the name, then the rest.
    let mut value = Listener {
        name: name.to_owned(),
        ..Listener::default()
    }
    .encode_to_vec();
    value.extend_from_slice(&rest);
    Some(Arc::new(Encoded {
        // The name is the subscription's own: the body alone versions it.
        version: body.version,
        any: envoy_types::pb::google::protobuf::Any {
            type_url: LISTENER.to_owned(),
            value,
        },
    }))
}

/// Which clusters hold each endpoint address, and whether each requires
/// mTLS: what decides the server Listener of that address. Kept so that a
/// registration re-encodes only the Listeners of the addresses it
/// touches.
#[derive(Clone, Debug, Default)]
pub(crate) struct Endpoints {
    by_addr: BTreeMap<SocketAddr, BTreeMap<String, bool>>,
    /// By cluster: the services with authorization policies whose routes
    /// reach it (or named as it: a registered workload's service), with
    /// their policies.
    policies: BTreeMap<String, BTreeMap<String, Arc<[AuthorizationPolicy]>>>,
}

fn addresses(cluster: Option<&ClusterConfig>) -> BTreeSet<SocketAddr> {
    cluster
        .map(|c| {
            c.endpoints
                .iter()
                .filter_map(|e| e.address.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Endpoints {
    /// The index of these clusters.
    pub(crate) fn of<'a>(
        clusters: impl IntoIterator<Item = (&'a String, &'a ClusterConfig)>,
    ) -> Self {
        let mut index = Self::default();
        for (name, cluster) in clusters {
            index.set(name, None, Some(cluster));
        }
        index
    }

    /// The index of these clusters, and of these services' authorization
    /// policies.
    pub(crate) fn with_policies<'a>(
        clusters: impl IntoIterator<Item = (&'a String, &'a ClusterConfig)>,
        services: &BTreeMap<String, ServiceConfig>,
    ) -> Self {
        let mut index = Self::of(clusters);
        for (name, service) in services {
            let Some(policies) = service
                .inbound
                .as_ref()
                .filter(|i| !i.authorization.is_empty())
                .map(|i| Arc::<[AuthorizationPolicy]>::from(i.authorization.clone()))
            else {
                continue;
            };
            let reached = service
                .routes
                .iter()
                .flat_map(|r| r.split.iter().map(|w| w.cluster.clone()))
                .chain([name.clone()]);
            for cluster in reached {
                index
                    .policies
                    .entry(cluster)
                    .or_default()
                    .insert(name.clone(), policies.clone());
            }
        }
        index
    }

    /// The authorization filters of the server at `addr`: those of every
    /// service reaching a cluster that holds it, by service name (a
    /// request must get through all of them).
    fn filters(&self, addr: &SocketAddr) -> Vec<HttpFilter> {
        let mut services: BTreeMap<&str, &Arc<[AuthorizationPolicy]>> = BTreeMap::new();
        for cluster in self.by_addr.get(addr).into_iter().flat_map(|h| h.keys()) {
            for (service, policies) in self.policies.get(cluster).into_iter().flatten() {
                services.insert(service, policies);
            }
        }
        services
            .into_iter()
            .flat_map(|(service, policies)| super::rbac::filters(service, policies))
            .collect()
    }

    /// Cluster `name` held `before`'s endpoints and now holds `after`'s
    /// (`None`: no cluster); returns the addresses whose Listener may
    /// differ.
    fn set(
        &mut self,
        name: &str,
        before: Option<&ClusterConfig>,
        after: Option<&ClusterConfig>,
    ) -> Vec<SocketAddr> {
        let (old, new) = (addresses(before), addresses(after));
        let mtls = after.is_some_and(ClusterConfig::requires_mtls);
        let mut touched = Vec::new();
        for addr in old.difference(&new) {
            if let Some(holders) = self.by_addr.get_mut(addr) {
                holders.remove(name);
                if holders.is_empty() {
                    self.by_addr.remove(addr);
                }
            }
            touched.push(*addr);
        }
        for addr in new {
            let holders = self.by_addr.entry(addr).or_default();
            if holders.insert(name.to_owned(), mtls) != Some(mtls) {
                touched.push(addr);
            }
        }
        touched
    }

    /// Whether a server at `addr` is served a Listener, and whether it is
    /// STRICT: any cluster holding the address that requires mTLS makes
    /// it so (plaintext would be refused by that cluster's clients).
    fn strict(&self, addr: &SocketAddr) -> Option<bool> {
        self.by_addr
            .get(addr)
            .map(|holders| holders.values().any(|m| *m))
    }

    fn put(
        &self,
        addrs: impl IntoIterator<Item = SocketAddr>,
        set: &mut ResourceSet,
        instance: &str,
    ) {
        let of_type = set.entry(SERVER_LISTENER).or_default();
        for addr in addrs {
            match self.strict(&addr) {
                Some(mtls) => {
                    let filters = self.filters(&addr);
                    of_type.insert(
                        addr.to_string(),
                        server_listener(addr, mtls, instance, filters),
                    );
                }
                None => {
                    of_type.remove(&addr.to_string());
                }
            }
        }
    }

    /// Every server Listener, into `set`.
    pub(crate) fn encode_all(&self, set: &mut ResourceSet, instance: &str) {
        self.put(
            self.by_addr.keys().copied().collect::<Vec<_>>(),
            set,
            instance,
        );
    }

    /// Cluster `name` changed from `before` to `after`: its addresses'
    /// Listeners in `set` are made again.
    pub(crate) fn update(
        &mut self,
        name: &str,
        before: Option<&ClusterConfig>,
        after: Option<&ClusterConfig>,
        set: &mut ResourceSet,
        instance: &str,
    ) {
        let touched = self.set(name, before, after);
        self.put(touched, set, instance);
    }
}

#[cfg(test)]
mod tests {
    use super::{Endpoints, listening_address};
    use sinew::config::MeshConfig;

    #[test]
    fn an_endpoint_gets_the_filters_of_every_service_reaching_it() {
        let mesh = MeshConfig::from_yaml(
            "services:\n  a:\n    routes: [{ split: [{ cluster: c1 }] }]\n    inbound: { authorization: [{ name: p, action: allow, rules: [{}] }] }\n  b:\n    routes: [{ split: [{ cluster: c1 }, { cluster: c2 }] }]\n    inbound: { authorization: [{ name: q, action: deny, rules: [{}] }, { name: r, action: allow, rules: [{}] }] }\n  open:\n    routes: [{ split: [{ cluster: c3 }] }]\nclusters:\n  c1: { endpoints: [{ address: \"127.0.0.1:1\" }] }\n  c2: { endpoints: [{ address: \"127.0.0.1:2\" }] }\n  c3: { endpoints: [{ address: \"127.0.0.1:3\" }, { address: \"127.0.0.1:2\" }] }\n  a: { endpoints: [{ address: \"127.0.0.1:4\" }] }\n",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let index = Endpoints::with_policies(&mesh.clusters, &mesh.services);
        let names = |port: u16| -> Vec<String> {
            index
                .filters(&std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .into_iter()
                .map(|f| f.name)
                .collect()
        };
        assert_eq!(
            names(1),
            [
                "sinew.authz.a.allow",
                "sinew.authz.b.deny",
                "sinew.authz.b.allow"
            ]
        );
        // Held by c2 (b's) and c3 (open's, no policies).
        assert_eq!(names(2), ["sinew.authz.b.deny", "sinew.authz.b.allow"]);
        assert!(names(3).is_empty());
        // The cluster named after the service: its registered workloads.
        assert_eq!(names(4), ["sinew.authz.a.allow"]);
    }

    #[test]
    fn the_listening_address_is_the_names_last_part() {
        let v4 = "10.0.0.1:8080".parse().ok();
        let v6 = "[::1]:80".parse().ok();
        for (name, addr) in [
            (
                "grpc/server?xds.resource.listening_address=10.0.0.1:8080",
                v4,
            ),
            ("xds.istio.io/grpc/lds/inbound/10.0.0.1:8080", v4),
            (
                "xdstp://cp/envoy.config.listener.v3.Listener/grpc/server/[::1]:80",
                v6,
            ),
            ("[::1]:80", v6),
            ("reviews", None),
            ("grpc/server?xds.resource.listening_address=", None),
            ("grpc/server?xds.resource.listening_address=host:80", None),
        ] {
            assert_eq!(listening_address(name), addr, "{name}");
        }
    }
}
