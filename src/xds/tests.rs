//! The protocol's rules and the translation, without a network.

use super::resource::{Kind, Resource};
use super::state::{ResourceState, State};
use super::translate::decode;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, Locality, SocketAddress, address, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    header_matcher::HeaderMatchSpecifier, route, route_action, route_match,
};
use envoy_types::pb::google::protobuf::{Any, BoolValue, UInt32Value};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn any<M: Message>(kind: Kind, m: &M) -> Any {
    Any {
        type_url: kind.type_url().to_owned(),
        value: m.encode_to_vec(),
    }
}

fn lb(ip: &str, port: u32, weight: Option<u32>, health: i32) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.to_owned(),
                    port_specifier: Some(PortSpecifier::PortValue(port)),
                    ..SocketAddress::default()
                })),
            }),
            ..Endpoint::default()
        })),
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        health_status: health,
        ..LbEndpoint::default()
    }
}

fn cla(name: &str, groups: Vec<(&str, Option<u32>, u32, Vec<LbEndpoint>)>) -> Any {
    any(
        Kind::Endpoints,
        &ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            endpoints: groups
                .into_iter()
                .map(
                    |(zone, weight, priority, lb_endpoints)| LocalityLbEndpoints {
                        locality: Some(Locality {
                            region: "eu".to_owned(),
                            zone: zone.to_owned(),
                            ..Locality::default()
                        }),
                        lb_endpoints,
                        load_balancing_weight: weight.map(|value| UInt32Value { value }),
                        priority,
                        ..LocalityLbEndpoints::default()
                    },
                )
                .collect(),
            ..ClusterLoadAssignment::default()
        },
    )
}

fn error_of(kind: Kind, any: &Any) -> String {
    match decode(kind, any) {
        Ok(_) => String::new(),
        Err((name, e)) => format!("{}: {e}", name.unwrap_or_default()),
    }
}

#[test]
fn assignments_translate_localities_weights_and_health() {
    let any = cla(
        "pool",
        vec![
            (
                "a",
                Some(3),
                0,
                vec![lb("10.0.0.1", 80, None, 0), lb("10.0.0.2", 80, Some(3), 3)],
            ),
            ("b", Some(1), 1, vec![lb("::1", 81, None, 2)]),
        ],
    );
    let Ok((name, Resource::Endpoints(endpoints))) = decode(Kind::Endpoints, &any) else {
        unreachable!("a valid assignment")
    };
    assert_eq!(name, "pool");
    let summary: Vec<(String, u32, &str, u32, crate::config::Health)> = endpoints
        .iter()
        .map(|e| {
            (
                e.address.to_string(),
                e.weight,
                e.locality.zone.as_str(),
                e.priority,
                e.health,
            )
        })
        .collect();
    use crate::config::Health::*;
    // Locality a (weight 3) shared 1:3 by its endpoints; b (weight 1) alone.
    assert_eq!(
        summary,
        [
            ("10.0.0.1:80".to_owned(), 750, "a", 0, Healthy),
            ("10.0.0.2:80".to_owned(), 2250, "a", 0, Draining),
            ("[::1]:81".to_owned(), 1000, "b", 1, Unhealthy),
        ]
    );
}

#[test]
fn bad_assignments_name_the_field() {
    let bad = |e: LbEndpoint| {
        error_of(
            Kind::Endpoints,
            &cla(
                "pool",
                vec![("a", None, 0, vec![lb("10.0.0.1", 80, None, 0), e])],
            ),
        )
    };
    assert_eq!(
        bad(lb("example.com", 80, None, 0)),
        "pool: endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address: `example.com` is not an IP address"
    );
    assert_eq!(
        bad(lb("10.0.0.2", 0, None, 0)),
        "pool: endpoints[0].lb_endpoints[1].endpoint.address.socket_address.port_value: must be between 1 and 65535"
    );
    assert_eq!(
        bad(lb("10.0.0.2", 80, Some(0), 0)),
        "pool: endpoints[0].lb_endpoints[1].load_balancing_weight: must be at least 1"
    );
    assert_eq!(
        bad(LbEndpoint::default()),
        "pool: endpoints[0].lb_endpoints[1].endpoint: missing"
    );
    let truncated = Any {
        type_url: Kind::Endpoints.type_url().to_owned(),
        value: vec![0x12, 0x05, 0x0a],
    };
    assert_eq!(error_of(Kind::Endpoints, &truncated), ": truncated field");
}

fn route_config(r: Route) -> Any {
    any(
        Kind::Route,
        &RouteConfiguration {
            name: "r".to_owned(),
            virtual_hosts: vec![VirtualHost {
                domains: vec!["*".to_owned()],
                routes: vec![r],
                ..VirtualHost::default()
            }],
            ..RouteConfiguration::default()
        },
    )
}

fn to(cluster: &str) -> Option<route::Action> {
    Some(route::Action::Route(RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_owned())),
        ..RouteAction::default()
    }))
}

#[test]
fn routes_translate_matchers_and_refuse_what_they_cannot_express() {
    let r = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/Api".to_owned())),
            case_sensitive: Some(BoolValue { value: false }),
            headers: vec![HeaderMatcher {
                name: ":method".to_owned(),
                header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(
                    envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher {
                        match_pattern: Some(
                            envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern::Exact("GET".to_owned()),
                        ),
                        ..Default::default()
                    },
                )),
                ..HeaderMatcher::default()
            }],
            ..RouteMatch::default()
        }),
        action: to("v1"),
        ..Route::default()
    };
    let Ok((_, Resource::Route(table))) = decode(Kind::Route, &route_config(r)) else {
        unreachable!("a valid route configuration")
    };
    let routes = table.routes_for("anything").unwrap_or_default();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].matcher.method.as_deref(), Some("GET"));
    assert_eq!(
        routes[0]
            .matcher
            .path
            .as_ref()
            .and_then(|p| p.regex.as_deref()),
        Some("(?i)/Api.*")
    );

    let redirect = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
            ..RouteMatch::default()
        }),
        action: None,
        ..Route::default()
    };
    assert_eq!(
        error_of(Kind::Route, &route_config(redirect)),
        "r: virtual_hosts[0].routes[0].action: only `route` actions are supported"
    );
}

#[test]
fn clusters_refuse_unsupported_policies_by_field() {
    let c = Cluster {
        name: "c".to_owned(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        )),
        ..Cluster::default()
    };
    assert_eq!(
        error_of(Kind::Cluster, &any(Kind::Cluster, &c)),
        "c: type: only EDS and STATIC clusters are supported"
    );
}

/// A state with one service whose Listener, routes, cluster and assignment
/// are all subscribed.
fn subscribed() -> State {
    let mut state = State::new("http://cp");
    state.watch("svc");
    let wanted = state.wanted();
    state.subscribe(&wanted, true);
    state
}

fn wanted_names(state: &State) -> BTreeMap<Kind, BTreeSet<String>> {
    state.wanted()
}

#[tokio::test(start_paused = true)]
async fn the_does_not_exist_timer_runs_only_while_connected() {
    let mut state = subscribed();
    state.connected("http://cp");
    tokio::time::advance(Duration::from_secs(10)).await;
    state.disconnected("http://cp", "gone".to_owned());
    tokio::time::advance(Duration::from_secs(60)).await;
    let (expired, _) = state.expire(Duration::from_secs(15));
    assert!(!expired, "no timer while disconnected");
    state.connected("http://cp");
    tokio::time::advance(Duration::from_secs(14)).await;
    assert!(
        !state.expire(Duration::from_secs(15)).0,
        "the timer starts over on connect"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(state.expire(Duration::from_secs(15)).0);
    assert_eq!(
        state.statuses().first().map(|s| s.state),
        Some(ResourceState::DoesNotExist)
    );
    assert_eq!(
        state.missing("svc").as_deref(),
        Some("the control plane has no Listener `svc`")
    );
}

#[test]
fn a_rejected_assignment_keeps_the_last_good_one_and_its_siblings_apply() {
    let mut state = subscribed();
    // Subscribe two assignments directly, as a cascade would.
    let mut wanted = wanted_names(&state);
    wanted
        .entry(Kind::Endpoints)
        .or_default()
        .extend(["a".to_owned(), "b".to_owned()]);
    state.subscribe(&wanted, true);
    let good = |name: &str, ip: &str| cla(name, vec![("z", None, 0, vec![lb(ip, 80, None, 0)])]);
    let first = state.apply_response(
        Kind::Endpoints,
        "1",
        "n1",
        &[good("a", "10.0.0.1"), good("b", "10.0.0.2")],
    );
    assert!(first.rejected.is_none());
    assert_eq!(first.changed.len(), 2);
    let bad_a = cla("a", vec![("z", None, 0, vec![lb("nope", 80, None, 0)])]);
    let second = state.apply_response(Kind::Endpoints, "2", "n2", &[bad_a, good("b", "10.0.0.3")]);
    assert_eq!(
        second.rejected.as_deref(),
        Some(
            "ClusterLoadAssignment a: endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: `nope` is not an IP address"
        )
    );
    assert_eq!(
        second.changed,
        [(Kind::Endpoints, "b".to_owned())],
        "the valid sibling applied"
    );
    assert_eq!(
        state.version(Kind::Endpoints),
        "1",
        "a NACK keeps the accepted version"
    );
    assert_eq!(
        state
            .endpoints("a")
            .map(|e| e[0].address.to_string())
            .as_deref(),
        Some("10.0.0.1:80"),
        "the rejected one kept its last good value"
    );
    let a = state.statuses().into_iter().find(|s| s.name == "a");
    assert!(a.is_some_and(|s| s.state == ResourceState::Nacked && s.has_value && s.version == "1"));
}
