//! Malformed resources from a control plane: each is NACKed with the
//! resource and the field, the client stays up, and what it had accepted
//! stays in force (requests keep flowing).

use super::rules::{eventually, next_nack};
use super::*;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, OutlierDetection, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, Http3ProtocolOptions, SocketAddress, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, route,
    route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    },
};
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value};
use prost::Message;
use server::any;

const WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

fn good_cluster() -> Cluster {
    Cluster::decode(
        server::eds_cluster("reviews-v1", LbPolicy::RoundRobin)
            .value
            .as_slice(),
    )
    .unwrap()
}

fn cluster_with(f: impl FnOnce(&mut Cluster)) -> Any {
    let mut c = good_cluster();
    f(&mut c);
    any(CLUSTER, &c)
}

fn assignment_at(host: &str, port: u32, weight: Option<u32>) -> Any {
    any(
        ENDPOINTS,
        &ClusterLoadAssignment {
            cluster_name: "reviews-v1".to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(SocketAddress {
                                address: host.to_owned(),
                                port_specifier: Some(PortSpecifier::PortValue(port)),
                                ..SocketAddress::default()
                            })),
                        }),
                        ..Endpoint::default()
                    })),
                    load_balancing_weight: weight.map(|value| UInt32Value { value }),
                    ..LbEndpoint::default()
                }],
                ..LocalityLbEndpoints::default()
            }],
            ..ClusterLoadAssignment::default()
        },
    )
}

fn route_with(f: impl FnOnce(&mut Route)) -> Any {
    let mut r = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
            ..RouteMatch::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                "reviews-v1".to_owned(),
            )),
            ..RouteAction::default()
        })),
        ..Route::default()
    };
    f(&mut r);
    any(
        ROUTE,
        &RouteConfiguration {
            name: "reviews".to_owned(),
            virtual_hosts: vec![VirtualHost {
                name: "all".to_owned(),
                domains: vec!["*".to_owned()],
                routes: vec![r],
                ..VirtualHost::default()
            }],
            ..RouteConfiguration::default()
        },
    )
}

fn action(r: &mut Route) -> &mut RouteAction {
    match r.action.as_mut() {
        Some(route::Action::Route(a)) => a,
        _ => unreachable!("a route action"),
    }
}

fn listener_of(api: Option<Any>) -> Any {
    any(
        LISTENER,
        &Listener {
            name: "reviews".to_owned(),
            api_listener: Some(ApiListener { api_listener: api }),
            ..Listener::default()
        },
    )
}

/// Where a bad resource goes: in place of the good one of that name, or
/// beside every resource of its type.
enum Put {
    Replace(&'static str, &'static str),
    Extra(&'static str),
}

struct Case {
    what: &'static str,
    put: Put,
    resource: Any,
    /// The NACK's message (the whole of it).
    nack: &'static str,
}

fn cases() -> Vec<Case> {
    use Put::*;
    let garbage = vec![0xff, 0xff, 0xff, 0xff];
    vec![
        Case {
            what: "undecodable bytes",
            put: Replace(CLUSTER, "reviews-v1"),
            resource: Any {
                type_url: CLUSTER.to_owned(),
                value: garbage.clone(),
            },
            nack: "Cluster (unnamed): cannot decode: failed to decode Protobuf message: ",
        },
        Case {
            what: "undecodable assignment whose name can be read",
            put: Replace(ENDPOINTS, "reviews-v1"),
            resource: Any {
                type_url: ENDPOINTS.to_owned(),
                value: {
                    let mut bytes = vec![0x0a, 10];
                    bytes.extend_from_slice(b"reviews-v1");
                    bytes.extend_from_slice(&[0x12, 0x30, 0x0a]);
                    bytes
                },
            },
            nack: "ClusterLoadAssignment reviews-v1: ",
        },
        Case {
            what: "a wrong type URL in the response",
            put: Replace(ENDPOINTS, "reviews-v1"),
            resource: any(CLUSTER, &good_cluster()),
            nack: "ClusterLoadAssignment (unnamed): type_url: `type.googleapis.com/envoy.config.cluster.v3.Cluster` in a response for type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        },
        Case {
            what: "an undecodable Resource wrapper",
            put: Replace(ROUTE, "reviews"),
            resource: Any {
                type_url: WRAPPER.to_owned(),
                value: garbage.clone(),
            },
            nack: "RouteConfiguration (unnamed): cannot decode the Resource wrapper: ",
        },
        Case {
            what: "a duplicate name",
            put: Extra(CLUSTER),
            resource: server::eds_cluster("reviews-v1", LbPolicy::Maglev),
            nack: "Cluster reviews-v1: name: listed more than once in the response",
        },
        Case {
            what: "an empty name",
            put: Extra(CLUSTER),
            resource: cluster_with(|c| c.name.clear()),
            nack: "Cluster (unnamed): name: must not be empty",
        },
        Case {
            what: "an address that is not an IP",
            put: Replace(ENDPOINTS, "reviews-v1"),
            resource: assignment_at("reviews.example", 80, None),
            nack: "ClusterLoadAssignment reviews-v1: endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: `reviews.example` is not an IP address",
        },
        Case {
            what: "port 0",
            put: Replace(ENDPOINTS, "reviews-v1"),
            resource: assignment_at("127.0.0.1", 0, None),
            nack: "ClusterLoadAssignment reviews-v1: endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: must be between 1 and 65535",
        },
        Case {
            what: "a port above 65535",
            put: Replace(ENDPOINTS, "reviews-v1"),
            resource: assignment_at("127.0.0.1", 70_000, None),
            nack: "ClusterLoadAssignment reviews-v1: endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: must be between 1 and 65535",
        },
        Case {
            what: "an endpoint weight of 0",
            put: Replace(ENDPOINTS, "reviews-v1"),
            resource: assignment_at("127.0.0.1", 80, Some(0)),
            nack: "ClusterLoadAssignment reviews-v1: endpoints[0].lb_endpoints[0].load_balancing_weight: must be at least 1",
        },
        Case {
            what: "an unknown lb_policy value",
            put: Replace(CLUSTER, "reviews-v1"),
            resource: cluster_with(|c| c.lb_policy = 99),
            nack: "Cluster reviews-v1: lb_policy: unknown value 99",
        },
        Case {
            what: "an unknown discovery type value",
            put: Replace(CLUSTER, "reviews-v1"),
            resource: cluster_with(|c| {
                c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(42))
            }),
            nack: "Cluster reviews-v1: type: only EDS and STATIC clusters are supported",
        },
        Case {
            what: "EDS from a config source that is not ADS",
            put: Replace(CLUSTER, "reviews-v1"),
            resource: cluster_with(|c| {
                if let Some(e) = c.eds_cluster_config.as_mut() {
                    e.eds_config = None;
                }
            }),
            nack: "Cluster reviews-v1: eds_cluster_config.eds_config: missing (must be `ads` or `self`)",
        },
        Case {
            what: "load reports to a server other than self",
            put: Replace(CLUSTER, "reviews-v1"),
            resource: cluster_with(|c| c.lrs_server = Some(server::ads_source())),
            nack: "Cluster reviews-v1: lrs_server: only `self` is supported",
        },
        Case {
            what: "a percentage above 100",
            put: Replace(CLUSTER, "reviews-v1"),
            resource: cluster_with(|c| {
                c.outlier_detection = Some(OutlierDetection {
                    max_ejection_percent: Some(UInt32Value { value: 150 }),
                    ..OutlierDetection::default()
                })
            }),
            nack: "Cluster reviews-v1: outlier_detection.max_ejection_percent: must be at most 100",
        },
        Case {
            what: "HTTP/3 asked for",
            put: Replace(CLUSTER, "reviews-v1"),
            resource: cluster_with(|c| {
                let options = HttpProtocolOptions {
                    upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                        ExplicitHttpConfig {
                            protocol_config: Some(ProtocolConfig::Http3ProtocolOptions(
                                Http3ProtocolOptions::default(),
                            )),
                        },
                    )),
                    ..HttpProtocolOptions::default()
                };
                c.typed_extension_protocol_options.insert(
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_owned(),
                    any(
                        "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        &options,
                    ),
                );
            }),
            nack: "Cluster reviews-v1: typed_extension_protocol_options[envoy.extensions.upstreams.http.v3.HttpProtocolOptions].explicit_http_config.http3_protocol_options: HTTP/3 is not supported",
        },
        Case {
            what: "a negative duration",
            put: Replace(ROUTE, "reviews"),
            resource: route_with(|r| {
                action(r).timeout = Some(PbDuration {
                    seconds: -1,
                    nanos: 0,
                })
            }),
            nack: "RouteConfiguration reviews: virtual_hosts[0].routes[0].route.timeout: must not be negative",
        },
        Case {
            what: "an invalid regular expression",
            put: Replace(ROUTE, "reviews"),
            resource: route_with(|r| {
                r.r#match = Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
                        regex: "(".to_owned(),
                        ..RegexMatcher::default()
                    })),
                    ..RouteMatch::default()
                })
            }),
            nack: "RouteConfiguration reviews: virtual_hosts[0].routes[0].match.path.regex: ",
        },
        Case {
            what: "weights that are all zero",
            put: Replace(ROUTE, "reviews"),
            resource: route_with(|r| {
                action(r).cluster_specifier = Some(
                    route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
                        clusters: vec![ClusterWeight {
                            name: "reviews-v1".to_owned(),
                            weight: Some(UInt32Value { value: 0 }),
                            ..ClusterWeight::default()
                        }],
                        ..WeightedCluster::default()
                    }),
                )
            }),
            nack: "RouteConfiguration reviews: virtual_hosts[0].routes[0].route.weighted_clusters: no cluster has a weight above zero",
        },
        Case {
            what: "an empty cluster name",
            put: Replace(ROUTE, "reviews"),
            resource: route_with(|r| {
                action(r).cluster_specifier =
                    Some(route_action::ClusterSpecifier::Cluster(String::new()))
            }),
            nack: "RouteConfiguration reviews: virtual_hosts[0].routes[0].route.cluster_specifier: `cluster` or `weighted_clusters` required",
        },
        Case {
            what: "a Listener without its HttpConnectionManager",
            put: Replace(LISTENER, "reviews"),
            resource: listener_of(None),
            nack: "Listener reviews: api_listener: missing (a client's Listener holds an api_listener)",
        },
        Case {
            what: "an api_listener of another type",
            put: Replace(LISTENER, "reviews"),
            resource: listener_of(Some(any(CLUSTER, &good_cluster()))),
            nack: "Listener reviews: api_listener.api_listener.type_url: `type.googleapis.com/envoy.config.cluster.v3.Cluster` is not an HttpConnectionManager",
        },
        Case {
            what: "an empty RDS name",
            put: Replace(LISTENER, "reviews"),
            resource: listener_of(Some(any(
                HCM,
                &HttpConnectionManager {
                    route_specifier: Some(RouteSpecifier::Rds(Rds {
                        route_config_name: String::new(),
                        config_source: Some(server::ads_source()),
                    })),
                    http_filters: vec![server::router()],
                    ..HttpConnectionManager::default()
                },
            ))),
            nack: "Listener reviews: api_listener.rds.route_config_name: must not be empty",
        },
    ]
}

#[tokio::test]
async fn malformed_resources_are_nacked_by_name_and_field_and_lose_nothing() {
    let (a, _) = named("a").await;
    let ads = Ads::default();
    reviews(&ads, &[("reviews-v1", &[a.addr])]);
    let control = ads.serve().await;
    let (mesh, client) = reviews_client(&control.url("")).await;
    assert_eq!(get(&client).await.unwrap(), "a");
    let good = |r: &mut server::Resources| {
        r.put(LISTENER, "reviews", server::listener("reviews", "reviews"));
        r.put(
            ROUTE,
            "reviews",
            server::route_config("reviews", &[("reviews-v1", 1)]),
        );
        r.put(
            CLUSTER,
            "reviews-v1",
            server::eds_cluster("reviews-v1", LbPolicy::RoundRobin),
        );
        r.put(
            ENDPOINTS,
            "reviews-v1",
            server::assignment("reviews-v1", &[a.addr]),
        );
        r.extra.clear();
    };
    let mut table = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        ads.update(|r| {
            good(r);
            match case.put {
                Put::Replace(type_url, name) => r.put(type_url, name, case.resource),
                Put::Extra(type_url) => r.extra.entry(type_url).or_default().push(case.resource),
            }
        });
        let message = next_nack(&ads, i).await;
        table.push(format!("| {} | NACK: `{message}` |", case.what));
        assert!(
            message.starts_with(case.nack),
            "{}: {message}\n  wanted: {}",
            case.what,
            case.nack
        );
        // The client is up, and nothing it had accepted is lost.
        for _ in 0..3 {
            assert_eq!(get(&client).await.unwrap(), "a", "{}", case.what);
        }
        for (kind, name) in [
            (Kind::Listener, "reviews"),
            (Kind::Route, "reviews"),
            (Kind::Cluster, "reviews-v1"),
            (Kind::Endpoints, "reviews-v1"),
        ] {
            let status = mesh
                .xds_status()
                .unwrap()
                .resources
                .into_iter()
                .find(|r| r.kind == kind && r.name == name)
                .unwrap();
            assert!(status.has_value, "{}: {kind:?} {name} lost", case.what);
        }
    }
    // What each case got, as a table (shown with `--nocapture`).
    #[allow(clippy::print_stdout)]
    {
        println!("{}", table.join("\n"));
    }

    // A resource past tonic's 4 MiB default message size is taken, not a
    // broken stream.
    let huge = listener_of(Some(any(
        HCM,
        &HttpConnectionManager {
            stat_prefix: "x".repeat(5 << 20),
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                route_config_name: "reviews".to_owned(),
                config_source: Some(server::ads_source()),
            })),
            http_filters: vec![server::router()],
            ..HttpConnectionManager::default()
        },
    )));
    ads.update(|r| {
        good(r);
        r.put(LISTENER, "reviews", huge);
    });
    let version = ads.version().to_string();
    eventually("the 5 MiB Listener is ACKed", || {
        mesh.xds_status()
            .unwrap()
            .resources
            .iter()
            .any(|r| r.kind == Kind::Listener && r.version == version)
    })
    .await;
    assert!(matches!(
        mesh.xds_status().map(|s| s.connection),
        Some(sinew::xds::ConnectionState::Connected { .. })
    ));
    assert_eq!(get(&client).await.unwrap(), "a");
}
