//! Readiness goes by what is in force in the mesh, not by what has
//! arrived: between a response's arrival and its application the cache
//! runs ahead of the mesh.

use super::discovery::{Discovery, Settings};
use super::resource::Kind;
use super::tests::ads_source;
use super::{Bootstrap, state::State};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, SocketAddress, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use std::time::Duration;

fn any<M: Message>(type_url: &str, m: &M) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: m.encode_to_vec(),
    }
}

/// A router filter configured directly, or wrapped in a TypedStruct.
fn router(typed_struct: bool) -> HttpFilter {
    const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    let config = if typed_struct {
        // xds.type.v3.TypedStruct { type_url = 1 }
        let mut value = vec![0x0a, ROUTER.len() as u8];
        value.extend_from_slice(ROUTER.as_bytes());
        Any {
            type_url: "type.googleapis.com/xds.type.v3.TypedStruct".to_owned(),
            value,
        }
    } else {
        Any {
            type_url: ROUTER.to_owned(),
            value: Vec::new(),
        }
    };
    HttpFilter {
        name: "router".to_owned(),
        config_type: Some(ConfigType::TypedConfig(config)),
        ..HttpFilter::default()
    }
}

fn listener(filter: HttpFilter) -> Any {
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: "svc".to_owned(),
            config_source: Some(ads_source()),
        })),
        http_filters: vec![filter],
        ..HttpConnectionManager::default()
    };
    any(
        Kind::Listener.type_url(),
        &Listener {
            name: "svc".to_owned(),
            api_listener: Some(ApiListener {
                api_listener: Some(any(
                    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    &hcm,
                )),
            }),
            ..Listener::default()
        },
    )
}

/// Applies each type's response in turn, following the cascade, as the
/// ADS task does, but publishes nothing.
fn apply_all(state: &mut State) {
    let routes = any(
        Kind::Route.type_url(),
        &RouteConfiguration {
            name: "svc".to_owned(),
            virtual_hosts: vec![VirtualHost {
                domains: vec!["*".to_owned()],
                routes: vec![Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
                        ..RouteMatch::default()
                    }),
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                            "c".to_owned(),
                        )),
                        ..RouteAction::default()
                    })),
                    ..Route::default()
                }],
                ..VirtualHost::default()
            }],
            ..RouteConfiguration::default()
        },
    );
    let cluster = any(
        Kind::Cluster.type_url(),
        &Cluster {
            name: "c".to_owned(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                service_name: "c".to_owned(),
                eds_config: Some(ads_source()),
            }),
            ..Cluster::default()
        },
    );
    let endpoints = any(
        Kind::Endpoints.type_url(),
        &ClusterLoadAssignment {
            cluster_name: "c".to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(SocketAddress {
                                address: "127.0.0.1".to_owned(),
                                port_specifier: Some(PortSpecifier::PortValue(80)),
                                ..SocketAddress::default()
                            })),
                        }),
                        ..Endpoint::default()
                    })),
                    ..LbEndpoint::default()
                }],
                ..LocalityLbEndpoints::default()
            }],
            ..ClusterLoadAssignment::default()
        },
    );
    for (kind, resource) in [
        (Kind::Listener, listener(router(true))),
        (Kind::Route, routes),
        (Kind::Cluster, cluster),
        (Kind::Endpoints, endpoints),
    ] {
        let wanted = state.wanted();
        state.subscribe(&wanted, true);
        let applied = state.apply_response(kind, "1", "n", &[resource]);
        assert_eq!(applied.rejected, None, "{kind:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiting_request_goes_on_only_once_the_configuration_is_in_force() {
    let (discovery, _task) = Discovery::start(Settings {
        bootstrap: Bootstrap::for_server("http://cp"),
        initial_fetch_timeout: Duration::from_secs(15),
        cache: None,
        classifiers: Default::default(),
        identity: None,
    });
    discovery.watch("svc");
    {
        let mut state = discovery.state();
        state.connected("http://cp", false);
        apply_all(&mut state);
        // Everything has arrived...
        assert!(state.ready("svc"));
    }
    // ...but the mesh has not taken it yet (the task applies it next): a
    // request let through now would meet a cluster without endpoints,
    // even though the service is in the snapshot (from the assembly when
    // the cluster arrived).
    let early = tokio::time::timeout(
        Duration::from_millis(100),
        discovery.settled("svc", || true),
    )
    .await;
    assert!(
        early.is_err(),
        "went on before the configuration was in force"
    );
    // The task applies the configuration, then publishes.
    assert!(discovery.state().publish());
    let settled = tokio::time::timeout(
        Duration::from_millis(100),
        discovery.settled("svc", || true),
    )
    .await;
    assert_eq!(settled, Ok(Ok(())));
}
