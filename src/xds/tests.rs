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
    // Accepted, as gRPC does (gRFC A28): only this route's requests fail.
    assert_eq!(
        routed(redirect).fail.as_deref(),
        Some(
            "RouteConfiguration `r` virtual_hosts[0].routes[0].action: a missing action is not supported (only `route`)"
        )
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
    state.connected("http://cp", false);
    tokio::time::advance(Duration::from_secs(10)).await;
    state.disconnected("http://cp", "gone".to_owned());
    tokio::time::advance(Duration::from_secs(60)).await;
    let (expired, _) = state.expire(Duration::from_secs(15));
    assert!(!expired, "no timer while disconnected");
    state.connected("http://cp", false);
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

fn routed(r: Route) -> crate::config::RouteConfig {
    match decode(Kind::Route, &route_config(r)) {
        Ok((_, Resource::Route(table))) => table
            .routes_for("any")
            .and_then(|routes| routes.first().cloned())
            .unwrap_or_else(|| unreachable!("one route")),
        other => unreachable!("a valid route configuration: {other:?}"),
    }
}

fn with_action(f: impl FnOnce(&mut RouteAction)) -> Route {
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster("v1".to_owned())),
        ..RouteAction::default()
    };
    f(&mut action);
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
            ..RouteMatch::default()
        }),
        action: Some(route::Action::Route(action)),
        ..Route::default()
    }
}

fn pb_ms(ms: i32) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: 0,
        nanos: ms * 1_000_000,
    }
}

#[test]
fn retry_policies_translate_conditions_per_try_timeouts_and_hedging() {
    use envoy_types::pb::envoy::config::route::v3::{HedgePolicy, RetryPolicy};
    let policy = |retry_on: &str| RetryPolicy {
        retry_on: retry_on.to_owned(),
        num_retries: Some(UInt32Value { value: 2 }),
        per_try_timeout: Some(pb_ms(200)),
        ..RetryPolicy::default()
    };
    let route = routed(with_action(|a| {
        a.retry_policy = Some(policy("5xx, retriable-4xx,unavailable,envoy-ratelimited"))
    }));
    let retry = route
        .retry
        .unwrap_or_else(|| unreachable!("a retry policy"));
    assert_eq!(retry.max_attempts, 3);
    assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(200)));
    assert_eq!(retry.hedge, None);
    let on = retry.retry_on.unwrap_or_default();
    assert_eq!(on.statuses.first(), Some(&409));
    assert_eq!(on.statuses.len(), 101, "409 and 500 to 599");
    assert_eq!(on.grpc, vec!["unavailable".to_owned()]);
    assert!(on.errors);

    // Only conditions Sinew does not know: no policy, as in gRPC.
    let route = routed(with_action(|a| {
        a.retry_policy = Some(policy("envoy-ratelimited"))
    }));
    assert_eq!(route.retry, None);

    // Hedging on the per-try timeout uses it as the hedging delay.
    let route = routed(with_action(|a| {
        a.retry_policy = Some(policy("gateway-error"));
        a.hedge_policy = Some(HedgePolicy {
            hedge_on_per_try_timeout: true,
            ..HedgePolicy::default()
        });
    }));
    let retry = route
        .retry
        .unwrap_or_else(|| unreachable!("a retry policy"));
    assert_eq!(retry.per_try_timeout, None);
    assert_eq!(
        retry.hedge.map(|h| (h.delay, h.max_attempts)),
        Some((Duration::from_millis(200), 3))
    );
    assert_eq!(
        retry.retry_on.map(|on| on.statuses),
        Some(vec![502, 503, 504])
    );

    let bad = with_action(|a| {
        a.retry_policy = Some(RetryPolicy {
            retriable_status_codes: vec![700],
            ..policy("retriable-status-codes")
        })
    });
    assert_eq!(
        error_of(Kind::Route, &route_config(bad)),
        "r: virtual_hosts[0].routes[0].route.retry_policy.retriable_status_codes[0]: 700 is not an HTTP status from 400 to 599"
    );
}

#[test]
fn the_first_header_hash_policy_picks_the_hashed_header() {
    use route_action::hash_policy::{Cookie, Header, PolicySpecifier};
    let route = routed(with_action(|a| {
        a.hash_policy = vec![
            route_action::HashPolicy {
                policy_specifier: Some(PolicySpecifier::Cookie(Cookie::default())),
                ..Default::default()
            },
            route_action::HashPolicy {
                policy_specifier: Some(PolicySpecifier::Header(Header {
                    header_name: "X-User".to_owned(),
                    regex_rewrite: None,
                })),
                ..Default::default()
            },
        ]
    }));
    assert_eq!(route.hash_header.as_deref(), Some("x-user"));
}

fn http_fault(
    delay_ms: Option<i32>,
    abort_status: Option<u32>,
    percent: u32,
) -> envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault {
    use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
        FaultDelay, fault_delay::FaultDelaySecifier,
    };
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
        FaultAbort, HttpFault, fault_abort::ErrorType,
    };
    use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
    // Per ten thousand, to check the denominator is read.
    let share = Some(FractionalPercent {
        numerator: percent * 100,
        denominator: 1,
    });
    HttpFault {
        delay: delay_ms.map(|ms| FaultDelay {
            percentage: share,
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(pb_ms(ms))),
        }),
        abort: abort_status.map(|status| FaultAbort {
            percentage: share,
            error_type: Some(ErrorType::HttpStatus(status)),
            ..FaultAbort::default()
        }),
        ..HttpFault::default()
    }
}

#[test]
fn fault_filters_give_routes_their_faults_with_per_route_overrides() {
    use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
        http_filter::ConfigType,
    };
    const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
    let listener = |filters: Vec<HttpFilter>| {
        let hcm = HttpConnectionManager {
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                route_config_name: "r".to_owned(),
                config_source: Some(ads_source()),
            })),
            http_filters: filters,
            ..HttpConnectionManager::default()
        };
        let l = Listener {
            name: "svc".to_owned(),
            api_listener: Some(ApiListener {
                api_listener: Some(Any {
                    type_url: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager".to_owned(),
                    value: hcm.encode_to_vec(),
                }),
            }),
            ..Listener::default()
        };
        match decode(Kind::Listener, &any(Kind::Listener, &l)) {
            Ok((_, Resource::Listener(l))) => l,
            other => unreachable!("a valid listener: {other:?}"),
        }
    };
    let fault_filter = HttpFilter {
        name: "envoy.filters.http.fault".to_owned(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: FAULT.to_owned(),
            value: http_fault(None, Some(503), 25).encode_to_vec(),
        })),
        ..HttpFilter::default()
    };
    let router = HttpFilter {
        name: "envoy.filters.http.router".to_owned(),
        config_type: Some(ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                .to_owned(),
            value: Vec::new(),
        })),
        ..HttpFilter::default()
    };
    let with_fault = listener(vec![fault_filter, router.clone()]);
    let without = listener(vec![router]);

    let plain = routed(with_action(|_| {}));
    let mut overriding = with_action(|_| {});
    overriding.typed_per_filter_config.insert(
        "envoy.filters.http.fault".to_owned(),
        Any {
            type_url: FAULT.to_owned(),
            value: http_fault(Some(300), None, 50).encode_to_vec(),
        },
    );
    let overriding = routed(overriding);

    // The filter's default.
    let fault = with_fault.shape(&plain).fault;
    let abort = fault.as_ref().and_then(|f| f.abort.clone());
    assert_eq!(abort.as_ref().and_then(|a| a.http_status), Some(503));
    assert_eq!(abort.map(|a| a.percent), Some(25.0));
    assert_eq!(fault.and_then(|f| f.delay), None);
    // The route's override.
    let fault = with_fault.shape(&overriding).fault;
    let delay = fault.as_ref().and_then(|f| f.delay);
    assert_eq!(
        delay.map(|d| (d.fixed, d.percent)),
        Some((Duration::from_millis(300), 50.0))
    );
    assert_eq!(fault.and_then(|f| f.abort), None);
    // No filter, no faults, whatever the route says.
    assert_eq!(without.shape(&overriding).fault, None);
}

#[test]
fn upstream_tls_contexts_give_the_identities_endpoints_may_present() {
    use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
        common_tls_context, subject_alt_name_matcher::SanType,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
    let san = |san_type: SanType, pattern: string_matcher::MatchPattern| SubjectAltNameMatcher {
        san_type: san_type as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(pattern),
            ..StringMatcher::default()
        }),
        ..SubjectAltNameMatcher::default()
    };
    let cluster_with = |sans: Vec<SubjectAltNameMatcher>| {
        let tls = UpstreamTlsContext {
            common_tls_context: Some(CommonTlsContext {
                validation_context_type: Some(
                    common_tls_context::ValidationContextType::CombinedValidationContext(
                        common_tls_context::CombinedCertificateValidationContext {
                            default_validation_context: Some(CertificateValidationContext {
                                match_typed_subject_alt_names: sans,
                                ..CertificateValidationContext::default()
                            }),
                            ..Default::default()
                        },
                    ),
                ),
                ..CommonTlsContext::default()
            }),
            ..UpstreamTlsContext::default()
        };
        let c = Cluster {
            name: "c".to_owned(),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".to_owned(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                    type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext".to_owned(),
                    value: tls.encode_to_vec(),
                })),
            }),
            ..Cluster::default()
        };
        any(Kind::Cluster, &c)
    };
    use string_matcher::MatchPattern::{Exact, Prefix};
    let ids = [
        "spiffe://example.org/ns/shop/sa/reviews",
        "spiffe://example.org/ns/shop/sa/reviews-canary",
    ];
    let good = cluster_with(
        ids.iter()
            .map(|id| san(SanType::Uri, Exact((*id).to_owned())))
            .collect(),
    );
    match decode(Kind::Cluster, &good) {
        Ok((_, Resource::Cluster(c))) => {
            assert_eq!(c.config.identities, ids);
            assert!(c.config.requires_mtls());
        }
        other => unreachable!("a valid cluster: {other:?}"),
    }
    // A TLS context with no SAN matcher still means mTLS only: never
    // plaintext, any identity the trust bundle vouches for.
    match decode(Kind::Cluster, &cluster_with(Vec::new())) {
        Ok((_, Resource::Cluster(c))) => {
            assert!(c.config.identities.is_empty());
            assert!(c.config.mtls && c.config.requires_mtls());
        }
        other => unreachable!("a valid cluster: {other:?}"),
    }
    let prefix = cluster_with(vec![san(
        SanType::Uri,
        Prefix("spiffe://example.org/".to_owned()),
    )]);
    assert_eq!(
        error_of(Kind::Cluster, &prefix),
        "c: transport_socket.typed_config.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher: only an exact match on a SPIFFE ID (spiffe://...) is supported"
    );
    let dns = cluster_with(vec![san(SanType::Dns, Exact("reviews".to_owned()))]);
    assert!(
        error_of(Kind::Cluster, &dns)
            .ends_with("[0].san_type: only URI SANs (SPIFFE IDs) are supported")
    );
}

#[test]
fn load_balancing_policy_lists_give_the_first_policy_sinew_knows() {
    use envoy_types::pb::envoy::config::cluster::v3::{
        LoadBalancingPolicy, load_balancing_policy::Policy,
    };
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use envoy_types::pb::envoy::extensions::load_balancing_policies::ring_hash::v3::RingHash;
    use envoy_types::pb::google::protobuf::UInt64Value;
    let policy = |type_url: &str, value: Vec<u8>| Policy {
        typed_extension_config: Some(TypedExtensionConfig {
            name: "p".to_owned(),
            typed_config: Some(Any {
                type_url: type_url.to_owned(),
                value,
            }),
        }),
    };
    let cluster = |policies: Vec<Policy>| {
        let c = Cluster {
            name: "c".to_owned(),
            load_balancing_policy: Some(LoadBalancingPolicy { policies }),
            ..Cluster::default()
        };
        any(Kind::Cluster, &c)
    };
    let ring = RingHash {
        minimum_ring_size: Some(UInt64Value { value: 4096 }),
        ..RingHash::default()
    };
    let listed = cluster(vec![
        policy("type.googleapis.com/some.other.Policy", Vec::new()),
        policy(
            "type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash",
            ring.encode_to_vec(),
        ),
    ]);
    match decode(Kind::Cluster, &listed) {
        Ok((_, Resource::Cluster(c))) => assert_eq!(
            c.config.lb,
            crate::config::LbPolicy::RingHash {
                header: None,
                min_ring_size: 4096
            }
        ),
        other => unreachable!("a valid cluster: {other:?}"),
    }
    let unknown = cluster(vec![policy(
        "type.googleapis.com/some.other.Policy",
        Vec::new(),
    )]);
    assert_eq!(
        error_of(Kind::Cluster, &unknown),
        "c: load_balancing_policy.policies: none of them is supported"
    );
}

#[test]
fn durations_past_the_cap_are_refused_by_field_and_backoff_without_max_stays_bounded() {
    use envoy_types::pb::envoy::config::route::v3::{RetryPolicy, retry_policy::RetryBackOff};
    use envoy_types::pb::google::protobuf::Duration as PbDuration;
    let forever = PbDuration {
        seconds: i64::MAX,
        nanos: 0,
    };
    let refused = |f: fn(&mut RouteAction, PbDuration), d: PbDuration| {
        error_of(Kind::Route, &route_config(with_action(|a| f(a, d))))
    };
    assert_eq!(
        refused(|a, d| a.timeout = Some(d), forever),
        "r: virtual_hosts[0].routes[0].route.timeout: must be at most 365 days"
    );
    let retry = |a: &mut RouteAction, d: PbDuration| {
        a.retry_policy = Some(RetryPolicy {
            retry_on: "5xx".to_owned(),
            per_try_timeout: Some(d),
            ..RetryPolicy::default()
        })
    };
    assert!(refused(retry, forever).ends_with("per_try_timeout: must be at most 365 days"));
    let bad_nanos = PbDuration {
        seconds: 1,
        nanos: 2_000_000_000,
    };
    assert!(
        refused(retry, bad_nanos).ends_with("per_try_timeout.nanos: must be at most 999999999")
    );

    // 2e18 s was accepted and then overflowed `base * 10` in the discovery
    // task; a year's base with no maximum is capped, not multiplied past it.
    let backoff = |a: &mut RouteAction, d: PbDuration| {
        a.retry_policy = Some(RetryPolicy {
            retry_on: "5xx".to_owned(),
            retry_back_off: Some(RetryBackOff {
                base_interval: Some(d),
                max_interval: None,
            }),
            ..RetryPolicy::default()
        })
    };
    assert!(
        refused(
            backoff,
            PbDuration {
                seconds: 2_000_000_000_000_000_000,
                nanos: 0
            }
        )
        .ends_with("retry_back_off.base_interval: must be at most 365 days")
    );
    let year = PbDuration {
        seconds: crate::bounds::MAX_DURATION.as_secs() as i64,
        nanos: 0,
    };
    let route = routed(with_action(|a| backoff(a, year)));
    let retry = route
        .retry
        .unwrap_or_else(|| unreachable!("a retry policy"));
    assert_eq!(retry.backoff.max, crate::bounds::MAX_DURATION);
    assert_eq!(retry.validate(), Ok(()));
}

#[test]
fn the_largest_locality_and_endpoint_weights_do_not_overflow() {
    let any = cla(
        "pool",
        vec![
            (
                "a",
                Some(u32::MAX),
                0,
                vec![
                    lb("10.0.0.1", 80, Some(u32::MAX), 0),
                    lb("10.0.0.2", 80, Some(1), 0),
                ],
            ),
            ("b", Some(1), 0, vec![lb("10.0.0.3", 80, Some(u32::MAX), 0)]),
        ],
    );
    let Ok((_, Resource::Endpoints(endpoints))) = decode(Kind::Endpoints, &any) else {
        unreachable!("a valid assignment")
    };
    let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
    // Each endpoint's share of its locality, scaled by 1000 and capped at
    // the model's largest weight.
    assert_eq!(weights, [1_000_000, 999, 1000]);
}

/// A config source pointing at the ADS stream.
pub(super) fn ads_source() -> envoy_types::pb::envoy::config::core::v3::ConfigSource {
    use envoy_types::pb::envoy::config::core::v3::{
        AggregatedConfigSource, ConfigSource, config_source::ConfigSourceSpecifier,
    };
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..ConfigSource::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_discovery_task_is_restarted_and_says_so() {
    // The task runs on this test's thread (a current-thread runtime).
    super::ads::tests::panic_next_session();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| unreachable!("{e}"));
    let mesh = crate::mesh::Mesh::builder()
        .control_plane(&format!("http://{closed}"))
        .build()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let status = || {
        mesh.xds_status()
            .unwrap_or_else(|| unreachable!("an xDS mesh"))
    };
    // Restarted, and then at work again: it tried the server after.
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let now = status();
            if now.task_restarts == 1
                && matches!(now.connection, super::ConnectionState::Disconnected { .. })
            {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| unreachable!("restarted within a minute: {:?}", status()));
    assert_eq!(
        seen.last_task_failure.as_deref(),
        Some("a bug, injected by a test")
    );
}

/// A Cluster whose transport socket is this `UpstreamTlsContext`.
fn cluster_with_tls(
    tls: &envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext,
) -> Any {
    use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
    let c = Cluster {
        name: "c".to_owned(),
        transport_socket: Some(TransportSocket {
            name: "envoy.transport_sockets.tls".to_owned(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                type_url:
                    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
                        .to_owned(),
                value: tls.encode_to_vec(),
            })),
        }),
        ..Cluster::default()
    };
    any(Kind::Cluster, &c)
}

/// Certificates from the bootstrap's provider instances (gRFC A29), in
/// each of the forms control planes send: the client keeps its own
/// certificate and roots, mTLS only, with the SAN matchers' identities.
#[test]
#[allow(deprecated)]
fn tls_contexts_naming_certificate_provider_instances_are_accepted_in_every_form() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CertificateProviderPluginInstance, CertificateValidationContext, CommonTlsContext,
        SubjectAltNameMatcher, UpstreamTlsContext,
        common_tls_context::{
            CertificateProviderInstance, CombinedCertificateValidationContext,
            ValidationContextType,
        },
        subject_alt_name_matcher::SanType,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
    let id = "spiffe://example.org/ns/default/sa/greeter";
    let exact = || StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(id.to_owned())),
        ..StringMatcher::default()
    };
    let plugin = || {
        Some(CertificateProviderPluginInstance {
            instance_name: "default".to_owned(),
            certificate_name: String::new(),
        })
    };
    let old = || {
        Some(CertificateProviderInstance {
            instance_name: "default".to_owned(),
            certificate_name: String::new(),
        })
    };
    let with = |context: CommonTlsContext| UpstreamTlsContext {
        common_tls_context: Some(context),
        ..UpstreamTlsContext::default()
    };
    let forms = [
        // What Sinew's control plane sends (and Istio's for proxyless
        // gRPC): both instances, the matchers in the field gRPC reads.
        (
            "validation_context",
            with(CommonTlsContext {
                tls_certificate_provider_instance: plugin(),
                validation_context_type: Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        ca_certificate_provider_instance: plugin(),
                        match_subject_alt_names: vec![exact()],
                        ..CertificateValidationContext::default()
                    },
                )),
                ..CommonTlsContext::default()
            }),
            vec![id.to_owned()],
        ),
        (
            "combined_validation_context.default_validation_context",
            with(CommonTlsContext {
                tls_certificate_provider_instance: plugin(),
                validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                    CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext {
                            ca_certificate_provider_instance: plugin(),
                            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                                san_type: SanType::Uri as i32,
                                matcher: Some(exact()),
                                ..SubjectAltNameMatcher::default()
                            }],
                            ..CertificateValidationContext::default()
                        }),
                        ..CombinedCertificateValidationContext::default()
                    },
                )),
                ..CommonTlsContext::default()
            }),
            vec![id.to_owned()],
        ),
        // The deprecated fields older control planes send.
        (
            "combined_validation_context.validation_context_certificate_provider_instance",
            with(CommonTlsContext {
                tls_certificate_certificate_provider_instance: old(),
                validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                    CombinedCertificateValidationContext {
                        default_validation_context: Some(CertificateValidationContext {
                            match_subject_alt_names: vec![exact()],
                            ..CertificateValidationContext::default()
                        }),
                        validation_context_certificate_provider_instance: old(),
                        ..CombinedCertificateValidationContext::default()
                    },
                )),
                ..CommonTlsContext::default()
            }),
            vec![id.to_owned()],
        ),
        (
            "validation_context_certificate_provider_instance",
            with(CommonTlsContext {
                tls_certificate_certificate_provider_instance: old(),
                validation_context_type: Some(
                    ValidationContextType::ValidationContextCertificateProviderInstance(
                        old().unwrap_or_default(),
                    ),
                ),
                ..CommonTlsContext::default()
            }),
            Vec::new(),
        ),
        // Only the roots named, no matcher: any identity they vouch for.
        (
            "validation_context without matchers",
            with(CommonTlsContext {
                validation_context_type: Some(ValidationContextType::ValidationContext(
                    CertificateValidationContext {
                        ca_certificate_provider_instance: plugin(),
                        ..CertificateValidationContext::default()
                    },
                )),
                ..CommonTlsContext::default()
            }),
            Vec::new(),
        ),
    ];
    for (form, tls, identities) in forms {
        match decode(Kind::Cluster, &cluster_with_tls(&tls)) {
            Ok((_, Resource::Cluster(c))) => {
                assert_eq!(c.config.identities, identities, "{form}");
                assert!(c.config.requires_mtls(), "{form}");
            }
            other => unreachable!("{form}: a valid cluster: {other:?}"),
        }
    }
}

/// An exact matcher that ignores case matches IDs Sinew's exact match
/// would refuse: refused by name, not narrowed silently.
#[test]
#[allow(deprecated)]
fn a_san_matcher_ignoring_case_is_refused_by_field() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CertificateValidationContext, CommonTlsContext, UpstreamTlsContext,
        common_tls_context::ValidationContextType,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
    let tls = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    match_subject_alt_names: vec![StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::Exact(
                            "spiffe://example.org/ns/default/sa/greeter".to_owned(),
                        )),
                        ignore_case: true,
                    }],
                    ..CertificateValidationContext::default()
                },
            )),
            ..CommonTlsContext::default()
        }),
        ..UpstreamTlsContext::default()
    };
    assert_eq!(
        error_of(Kind::Cluster, &cluster_with_tls(&tls)),
        "c: transport_socket.typed_config.common_tls_context.validation_context.match_subject_alt_names[0].ignore_case: SPIFFE IDs are matched exactly; a matcher ignoring case is not supported"
    );
}

/// Review: Envoy's `transport_socket_matches` carry a cluster's TLS per
/// endpoint (Istio's auto mTLS sends its `UpstreamTlsContext` there).
/// Sinew does not read them, so a cluster whose only TLS is there is
/// taken as plaintext: a control plane's "mTLS" becomes a plaintext
/// wire. It must be refused (a NACK naming the field) or read.
#[test]
fn a_cluster_whose_tls_is_in_transport_socket_matches_is_not_plaintext() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
    use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    let c = Cluster {
        name: "c".to_owned(),
        transport_socket_matches: vec![TransportSocketMatch {
            name: "tls".to_owned(),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".to_owned(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                    type_url:
                        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
                            .to_owned(),
                    value: UpstreamTlsContext::default().encode_to_vec(),
                })),
            }),
            ..TransportSocketMatch::default()
        }],
        ..Cluster::default()
    };
    // Refused, naming the field: not plaintext.
    assert!(
        error_of(Kind::Cluster, &any(Kind::Cluster, &c)).contains("transport_socket_matches:"),
        "a cluster with an UpstreamTlsContext in transport_socket_matches was not refused"
    );
}

#[test]
fn tls_that_cannot_be_honoured_is_refused_not_widened_or_dropped() {
    use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CommonTlsContext, SdsSecretConfig, UpstreamTlsContext, common_tls_context,
    };
    let with_socket = |socket: TransportSocket| {
        let c = Cluster {
            name: "c".to_owned(),
            transport_socket: Some(socket),
            ..Cluster::default()
        };
        any(Kind::Cluster, &c)
    };
    // Matchers from SDS: refused, not taken for "any identity".
    let sds = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(
                common_tls_context::ValidationContextType::ValidationContextSdsSecretConfig(
                    SdsSecretConfig {
                        name: "roots".to_owned(),
                        ..SdsSecretConfig::default()
                    },
                ),
            ),
            ..CommonTlsContext::default()
        }),
        ..UpstreamTlsContext::default()
    };
    let error = error_of(
        Kind::Cluster,
        &with_socket(TransportSocket {
            name: "envoy.transport_sockets.tls".to_owned(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext".to_owned(),
                value: sds.encode_to_vec(),
            })),
        }),
    );
    assert!(error.contains("validation_context_type"), "{error}");
    // A TLS socket without a config: refused, not taken for plaintext.
    let error = error_of(
        Kind::Cluster,
        &with_socket(TransportSocket {
            name: "envoy.transport_sockets.tls".to_owned(),
            config_type: None,
        }),
    );
    assert!(error.contains("transport_socket"), "{error}");
    // The plaintext socket by name is plaintext.
    match decode(
        Kind::Cluster,
        &with_socket(TransportSocket {
            name: "envoy.transport_sockets.raw_buffer".to_owned(),
            config_type: None,
        }),
    ) {
        Ok((_, Resource::Cluster(c))) => assert!(!c.config.requires_mtls()),
        other => unreachable!("{other:?}"),
    }
}
