//! The mesh as xDS resources, in the shape gRPC's proxyless clients
//! require (gRFC A27/A28) and Sinew's discovery client reads: per service
//! a Listener holding an `api_listener` HttpConnectionManager (routes by
//! RDS over ADS, the router filter last) and a RouteConfiguration; per
//! cluster an EDS Cluster fed over ADS and a ClusterLoadAssignment with
//! weighted localities. A cluster that requires mTLS carries an
//! `UpstreamTlsContext` ([`tls`]); a gRPC server is served a Listener for
//! its endpoint address ([`server_listener`]).

pub mod rbac;
pub mod server_listener;
pub mod tls;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, LoadBalancingPolicy, OutlierDetection,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, CommonLbConfig, DiscoveryType, EdsClusterConfig, LbConfig,
        LbPolicy as EnvoyLb, RingHashLbConfig,
        common_lb_config::{LocalityConfigSpecifier, ZoneAwareLbConfig},
    },
    load_balancing_policy::Policy,
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, HealthStatus, Http2ProtocolOptions,
    Locality as PbLocality, Metadata, SocketAddress, TypedExtensionConfig, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, HedgePolicy, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost, WeightedCluster, header_matcher::HeaderMatchSpecifier, retry_policy::RetryBackOff,
    route, route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType,
};
use envoy_types::pb::envoy::extensions::load_balancing_policies::least_request::v3::LeastRequest;
use envoy_types::pb::envoy::extensions::load_balancing_policies::round_robin::v3::RoundRobin;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, Percent};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value, UInt64Value};
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use prost::Message;
use sinew::config::{
    ClusterConfig, EndpointConfig, FaultConfig, Health, LbPolicy, LocalityLbConfig, MeshConfig,
    OutlierDetectionConfig, PathMatch, Protocol, RouteConfig, ServiceConfig,
};
use sinew::retry::RetryConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The four resource types, by their type URLs.
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// RouteConfiguration.
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// Cluster.
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// ClusterLoadAssignment.
pub const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// The types in the order a change is pushed: clusters and their
/// endpoints before the listeners and routes that name them (make before
/// break).
pub const PUSH_ORDER: [&str; 4] = [CLUSTER, ENDPOINTS, LISTENER, ROUTE];

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
const FAULT_FILTER: &str = "envoy.filters.http.fault";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// Sinew's P2C Peak-EWMA policy, as Sinew's discovery client reads it.
pub const P2C_EWMA: &str = "type.googleapis.com/sinew.lb.v1.P2cEwma";
const LEAST_REQUEST: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
const ROUND_ROBIN: &str =
    "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";

/// One encoded resource and the version of its contents.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// A hash of the encoded bytes: equal contents, equal versions.
    pub version: u64,
    /// The resource, packed.
    pub any: Any,
}

/// Every resource of the mesh, per type URL, then per name; shared, so
/// that a version differing in one cluster from the last copies only
/// pointers.
pub type ResourceSet = BTreeMap<&'static str, BTreeMap<String, Arc<Encoded>>>;

fn encoded(type_url: &'static str, value: Vec<u8>) -> Arc<Encoded> {
    let version = hash(&value);
    Arc::new(Encoded {
        version,
        any: Any {
            type_url: type_url.to_owned(),
            value,
        },
    })
}

/// A service's Listener and RouteConfiguration.
pub fn service_resources(name: &str, service: &ServiceConfig) -> [(&'static str, Arc<Encoded>); 2] {
    [
        (
            LISTENER,
            encoded(LISTENER, listener(name, &service.routes).encode_to_vec()),
        ),
        (
            ROUTE,
            encoded(
                ROUTE,
                route_configuration(name, &service.routes).encode_to_vec(),
            ),
        ),
    ]
}

/// A cluster's Cluster and ClusterLoadAssignment; a cluster requiring
/// mTLS names the certificate provider instance `certificate_provider`.
pub fn cluster_resources(
    name: &str,
    cluster: &ClusterConfig,
    certificate_provider: &str,
) -> [(&'static str, Arc<Encoded>); 2] {
    [
        (
            CLUSTER,
            encoded(
                CLUSTER,
                cluster_resource(name, cluster, certificate_provider).encode_to_vec(),
            ),
        ),
        (
            ENDPOINTS,
            encoded(
                ENDPOINTS,
                assignment(name, &cluster.endpoints).encode_to_vec(),
            ),
        ),
    ]
}

/// The resources of `mesh` (already validated), naming the default
/// certificate provider instance.
pub fn resources(mesh: &MeshConfig) -> ResourceSet {
    resources_with(mesh, tls::DEFAULT_CERTIFICATE_PROVIDER)
}

/// The resources of `mesh` (already validated), the server Listeners
/// among them; TLS contexts name the certificate provider instance
/// `certificate_provider`.
pub fn resources_with(mesh: &MeshConfig, certificate_provider: &str) -> ResourceSet {
    let mut set: ResourceSet = PUSH_ORDER.iter().map(|t| (*t, BTreeMap::new())).collect();
    let mut put = |name: &str, pairs: [(&'static str, Arc<Encoded>); 2]| {
        for (type_url, e) in pairs {
            if let Some(of_type) = set.get_mut(type_url) {
                of_type.insert(name.to_owned(), e);
            }
        }
    };
    for (name, service) in &mesh.services {
        put(name, service_resources(name, service));
    }
    for (name, cluster) in &mesh.clusters {
        put(name, cluster_resources(name, cluster, certificate_provider));
    }
    server_listener::Endpoints::with_policies(&mesh.clusters, &mesh.services)
        .encode_all(&mut set, certificate_provider);
    set
}

fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn pack<M: Message>(type_url: &str, message: &M) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: message.encode_to_vec(),
    }
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..ConfigSource::default()
    }
}

fn duration(d: Duration) -> PbDuration {
    PbDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn u32_value(value: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value })
}

fn listener(service: &str, routes: &[RouteConfig]) -> Listener {
    let mut http_filters = Vec::new();
    // The fault filter only where a route injects faults; its default
    // injects nothing, routes override it.
    if routes.iter().any(|r| r.fault.is_some()) {
        http_filters.push(HttpFilter {
            name: FAULT_FILTER.to_owned(),
            config_type: Some(ConfigType::TypedConfig(pack(FAULT, &HttpFault::default()))),
            ..HttpFilter::default()
        });
    }
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".to_owned(),
        config_type: Some(ConfigType::TypedConfig(pack(ROUTER, &Router::default()))),
        ..HttpFilter::default()
    });
    let hcm = HttpConnectionManager {
        stat_prefix: service.to_owned(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: service.to_owned(),
        })),
        http_filters,
        ..HttpConnectionManager::default()
    };
    Listener {
        name: service.to_owned(),
        api_listener: Some(ApiListener {
            api_listener: Some(pack(HCM, &hcm)),
        }),
        ..Listener::default()
    }
}

fn route_configuration(service: &str, routes: &[RouteConfig]) -> RouteConfiguration {
    RouteConfiguration {
        name: service.to_owned(),
        virtual_hosts: vec![VirtualHost {
            name: service.to_owned(),
            // The configuration is the service's own: any authority.
            domains: vec!["*".to_owned()],
            routes: routes.iter().map(route_entry).collect(),
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    }
}

fn string_matcher(pattern: MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(pattern),
        ..StringMatcher::default()
    }
}

fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.to_owned(),
        ..RegexMatcher::default()
    }
}

fn route_entry(r: &RouteConfig) -> Route {
    let path_specifier = match &r.matcher.path {
        Some(PathMatch { exact: Some(p), .. }) => route_match::PathSpecifier::Path(p.clone()),
        Some(PathMatch {
            prefix: Some(p), ..
        }) => route_match::PathSpecifier::Prefix(p.clone()),
        Some(PathMatch { regex: Some(p), .. }) => route_match::PathSpecifier::SafeRegex(regex(p)),
        _ => route_match::PathSpecifier::Prefix("/".to_owned()),
    };
    let mut headers: Vec<HeaderMatcher> = r
        .matcher
        .headers
        .iter()
        .map(|h| {
            let specifier = match (&h.exact, &h.prefix, &h.regex, h.present) {
                (Some(v), _, _, _) => HeaderMatchSpecifier::StringMatch(string_matcher(
                    MatchPattern::Exact(v.clone()),
                )),
                (_, Some(v), _, _) => HeaderMatchSpecifier::StringMatch(string_matcher(
                    MatchPattern::Prefix(v.clone()),
                )),
                (_, _, Some(v), _) => HeaderMatchSpecifier::StringMatch(string_matcher(
                    MatchPattern::SafeRegex(regex(v)),
                )),
                (_, _, _, Some(present)) => HeaderMatchSpecifier::PresentMatch(present),
                _ => HeaderMatchSpecifier::PresentMatch(true),
            };
            HeaderMatcher {
                name: h.name.clone(),
                header_match_specifier: Some(specifier),
                ..HeaderMatcher::default()
            }
        })
        .collect();
    if let Some(method) = &r.matcher.method {
        headers.push(HeaderMatcher {
            name: ":method".to_owned(),
            header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(string_matcher(
                MatchPattern::Exact(method.clone()),
            ))),
            ..HeaderMatcher::default()
        });
    }
    let r#match = Some(RouteMatch {
        path_specifier: Some(path_specifier),
        headers,
        ..RouteMatch::default()
    });
    if let Some(reason) = &r.fail {
        // A route that fails its requests: gRPC (gRFC A28) and Sinew fail
        // the requests a `direct_response` route takes, and keep the rest
        // of the resource. The reason travels in the body.
        return Route {
            r#match,
            action: Some(route::Action::DirectResponse(
                envoy_types::pb::envoy::config::route::v3::DirectResponseAction {
                    status: 503,
                    body: Some(envoy_types::pb::envoy::config::core::v3::DataSource {
                        specifier: Some(
                            envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineString(
                                reason.clone(),
                            ),
                        ),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )),
            metadata: route_metadata(r),
            ..Route::default()
        };
    }
    let cluster_specifier = match r.split.as_slice() {
        [only] => route_action::ClusterSpecifier::Cluster(only.cluster.clone()),
        split => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: split
                .iter()
                .map(|w| ClusterWeight {
                    name: w.cluster.clone(),
                    weight: u32_value(w.weight),
                    ..ClusterWeight::default()
                })
                .collect(),
            ..WeightedCluster::default()
        }),
    };
    let (retry_policy, hedge_policy) = match &r.retry {
        Some(retry) => retry_policy(retry),
        None => (None, None),
    };
    let mut action = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: r.timeout.map(duration),
        // gRPC reads the timeout from here (gRFC A31).
        max_stream_duration: r.timeout.map(|t| route_action::MaxStreamDuration {
            max_stream_duration: Some(duration(t)),
            ..route_action::MaxStreamDuration::default()
        }),
        retry_policy,
        hedge_policy,
        ..RouteAction::default()
    };
    if let Some(header) = &r.hash_header {
        action.hash_policy = vec![route_action::HashPolicy {
            policy_specifier: Some(route_action::hash_policy::PolicySpecifier::Header(
                route_action::hash_policy::Header {
                    header_name: header.clone(),
                    regex_rewrite: None,
                },
            )),
            ..route_action::HashPolicy::default()
        }];
    }
    let mut entry = Route {
        r#match,
        action: Some(route::Action::Route(action)),
        metadata: route_metadata(r),
        ..Route::default()
    };
    if let Some(fault) = &r.fault {
        entry
            .typed_per_filter_config
            .insert(FAULT_FILTER.to_owned(), pack(FAULT, &http_fault(fault)));
    }
    entry
}

/// The retry policy, and the hedge policy when the route hedges (the
/// hedging delay travels as the per-try timeout, hedged on).
fn retry_policy(retry: &RetryConfig) -> (Option<RetryPolicy>, Option<HedgePolicy>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut statuses = Vec::new();
    match &retry.retry_on {
        // The default classifier's choice, in Envoy's words.
        None => conditions.extend(
            ["gateway-error", "reset", "connect-failure", "unavailable"].map(str::to_owned),
        ),
        Some(on) => {
            if on.errors {
                conditions.push("reset".to_owned());
            }
            if !on.statuses.is_empty() {
                conditions.push("retriable-status-codes".to_owned());
                statuses = on.statuses.iter().map(|s| u32::from(*s)).collect();
            }
            conditions.extend(
                on.grpc
                    .iter()
                    .map(|c| c.to_ascii_lowercase().replace('_', "-")),
            );
            conditions.push("connect-failure".to_owned());
        }
    }
    let (per_try, hedge) = match (retry.hedge, retry.per_try_timeout) {
        (Some(hedge), _) => (
            Some(hedge.delay),
            Some(HedgePolicy {
                hedge_on_per_try_timeout: true,
                ..HedgePolicy::default()
            }),
        ),
        (None, per_try) => (per_try, None),
    };
    let attempts = retry.hedge.map_or(retry.max_attempts, |h| h.max_attempts);
    let policy = RetryPolicy {
        retry_on: conditions.join(","),
        num_retries: u32_value(attempts.saturating_sub(1)),
        per_try_timeout: per_try.map(duration),
        retry_back_off: Some(RetryBackOff {
            base_interval: Some(duration(retry.backoff.base)),
            max_interval: Some(duration(retry.backoff.max)),
        }),
        retriable_status_codes: statuses,
        ..RetryPolicy::default()
    };
    (Some(policy), hedge)
}

/// A percentage in parts per million.
fn per_million(percent: f64) -> Option<FractionalPercent> {
    Some(FractionalPercent {
        numerator: (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32,
        denominator: 2,
    })
}

fn http_fault(fault: &FaultConfig) -> HttpFault {
    HttpFault {
        delay: fault.delay.map(|d| FaultDelay {
            percentage: per_million(d.percent),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(duration(d.fixed))),
        }),
        abort: fault.abort.as_ref().map(|a| FaultAbort {
            percentage: per_million(a.percent),
            error_type: match (a.http_status, &a.grpc_status) {
                (Some(status), _) => Some(ErrorType::HttpStatus(u32::from(status))),
                (None, Some(name)) => sinew::grpc::Code::from_name(name)
                    .map(|c| ErrorType::GrpcStatus(u32::from(c.value()))),
                (None, None) => None,
            },
            ..FaultAbort::default()
        }),
        max_active_faults: fault.max_active.and_then(u32_value),
        ..HttpFault::default()
    }
}

// `http2_protocol_options` is deprecated in Envoy's API, and is what gRPC
// and Sinew's client read.
#[allow(deprecated)]
fn cluster_resource(name: &str, c: &ClusterConfig, certificate_provider: &str) -> Cluster {
    let (lb_policy, lb_config) = match &c.lb {
        LbPolicy::RoundRobin => (EnvoyLb::RoundRobin, None),
        // Envoy has no Peak-EWMA; least request is its nearest (and
        // gRPC's, gRFC A48).
        LbPolicy::P2cEwma | LbPolicy::LeastRequest => (EnvoyLb::LeastRequest, None),
        LbPolicy::Random => (EnvoyLb::Random, None),
        LbPolicy::RingHash { min_ring_size, .. } => (
            EnvoyLb::RingHash,
            Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: Some(UInt64Value {
                    value: u64::from(*min_ring_size),
                }),
                ..RingHashLbConfig::default()
            })),
        ),
        LbPolicy::Maglev { .. } => (EnvoyLb::Maglev, None),
    };
    // Envoy has no Peak-EWMA: Sinew's own policy goes first in the list,
    // then least request and round robin for every other client (gRFC
    // A52: the first policy a client supports is used).
    let load_balancing_policy = matches!(c.lb, LbPolicy::P2cEwma).then(|| LoadBalancingPolicy {
        policies: vec![
            Policy {
                typed_extension_config: Some(TypedExtensionConfig {
                    name: "sinew.p2c_ewma".to_owned(),
                    typed_config: Some(Any {
                        type_url: P2C_EWMA.to_owned(),
                        value: Vec::new(),
                    }),
                }),
            },
            Policy {
                typed_extension_config: Some(TypedExtensionConfig {
                    name: "envoy.load_balancing_policies.least_request".to_owned(),
                    typed_config: Some(pack(LEAST_REQUEST, &LeastRequest::default())),
                }),
            },
            // gRPC has least request only behind an opt-in: round robin
            // last, so that every client finds one it has.
            Policy {
                typed_extension_config: Some(TypedExtensionConfig {
                    name: "envoy.load_balancing_policies.round_robin".to_owned(),
                    typed_config: Some(pack(ROUND_ROBIN, &RoundRobin::default())),
                }),
            },
        ],
    });
    let t = &c.thresholds;
    Cluster {
        load_balancing_policy,
        name: name.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.to_owned(),
        }),
        lb_policy: lb_policy as i32,
        lb_config,
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                max_requests: u32_value(t.max_requests),
                max_pending_requests: u32_value(t.max_pending),
                max_retries: u32_value(t.max_retries),
                ..Thresholds::default()
            }],
            ..CircuitBreakers::default()
        }),
        outlier_detection: c.outlier_detection.as_ref().map(outlier_detection),
        common_lb_config: Some(CommonLbConfig {
            healthy_panic_threshold: Some(Percent {
                value: f64::from(c.locality_lb.panic_threshold_percent),
            }),
            // Envoy routes to the local zone by default: said only when
            // it is off.
            locality_config_specifier: (!c.locality_lb.prefer_local_zone).then(|| {
                LocalityConfigSpecifier::ZoneAwareLbConfig(ZoneAwareLbConfig {
                    routing_enabled: Some(Percent { value: 0.0 }),
                    ..ZoneAwareLbConfig::default()
                })
            }),
            ..CommonLbConfig::default()
        }),
        metadata: sinew_metadata(c),
        transport_socket: c
            .requires_mtls()
            .then(|| tls::upstream(&c.identities, certificate_provider)),
        http2_protocol_options: (c.protocol == Protocol::Http2).then(Http2ProtocolOptions::default),
        ..Cluster::default()
    }
}

/// What Envoy's Cluster has no field for, under the `sinew` filter
/// metadata: the failover threshold (Envoy's overprovisioning factor
/// lives in each assignment, and is read by no proxyless client).
fn sinew_metadata(c: &ClusterConfig) -> Option<Metadata> {
    let mut fields = BTreeMap::new();
    let threshold = c.locality_lb.failover_threshold_percent;
    if threshold != LocalityLbConfig::default().failover_threshold_percent {
        fields.insert(
            "failover_threshold_percent".to_owned(),
            Value {
                kind: Some(value::Kind::NumberValue(f64::from(threshold))),
            },
        );
    }
    if let Some(breaker) = &c.breaker {
        // The mesh file's fields, as the file has them (durations as text).
        fields.insert("breaker".to_owned(), to_value(&breaker_json(breaker)));
    }
    if let Some(classifier) = &c.classifier {
        fields.insert("classifier".to_owned(), string_value(classifier));
    }
    metadata_of(fields)
}

/// A route's classifier, under the `sinew` filter metadata: Envoy has no
/// outcome classifier to select.
fn route_metadata(r: &RouteConfig) -> Option<Metadata> {
    let mut fields = BTreeMap::new();
    if let Some(classifier) = &r.classifier {
        fields.insert("classifier".to_owned(), string_value(classifier));
    }
    metadata_of(fields)
}

fn metadata_of(fields: BTreeMap<String, Value>) -> Option<Metadata> {
    if fields.is_empty() {
        return None;
    }
    let mut metadata = Metadata::default();
    metadata.filter_metadata.insert(
        "sinew".to_owned(),
        Struct {
            fields: fields.into_iter().collect(),
        },
    );
    Some(metadata)
}

fn string_value(text: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(text.to_owned())),
    }
}

/// A validated breaker as JSON; it always serializes (plain numbers,
/// options and durations), and `null` stands for the impossible failure.
fn breaker_json(breaker: &sinew::breaker::BreakerConfig) -> serde_json::Value {
    serde_json::to_value(breaker).unwrap_or(serde_json::Value::Null)
}

/// JSON as a protobuf `Value` (numbers become doubles, which hold every
/// count and ratio a breaker has exactly).
fn to_value(json: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    let kind = match json {
        Json::Null => value::Kind::NullValue(0),
        Json::Bool(b) => value::Kind::BoolValue(*b),
        Json::Number(n) => value::Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => value::Kind::StringValue(s.clone()),
        Json::Array(items) => {
            value::Kind::ListValue(envoy_types::pb::google::protobuf::ListValue {
                values: items.iter().map(to_value).collect(),
            })
        }
        Json::Object(map) => value::Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

fn outlier_detection(od: &OutlierDetectionConfig) -> OutlierDetection {
    let on_off = |on: bool| u32_value(if on { 100 } else { 0 });
    let mut pb = OutlierDetection {
        consecutive_5xx: u32_value(od.consecutive_5xx.unwrap_or(5)),
        enforcing_consecutive_5xx: on_off(od.consecutive_5xx.is_some()),
        consecutive_gateway_failure: u32_value(od.consecutive_gateway_failure.unwrap_or(5)),
        enforcing_consecutive_gateway_failure: on_off(od.consecutive_gateway_failure.is_some()),
        split_external_local_origin_errors: od.consecutive_local_origin_failure.is_some(),
        consecutive_local_origin_failure: u32_value(
            od.consecutive_local_origin_failure.unwrap_or(5),
        ),
        enforcing_consecutive_local_origin_failure: on_off(
            od.consecutive_local_origin_failure.is_some(),
        ),
        interval: Some(duration(od.interval)),
        base_ejection_time: Some(duration(od.base_ejection_time)),
        max_ejection_time: Some(duration(od.max_ejection_time)),
        max_ejection_percent: u32_value(od.max_ejection_percent),
        enforcing_success_rate: on_off(od.success_rate.is_some()),
        enforcing_failure_percentage: on_off(od.failure_percentage.is_some()),
        ..OutlierDetection::default()
    };
    if let Some(sr) = &od.success_rate {
        pb.success_rate_minimum_hosts = u32_value(sr.minimum_hosts);
        pb.success_rate_request_volume = u32_value(sr.request_volume);
        pb.success_rate_stdev_factor = u32_value((sr.stdev_factor * 1000.0).round() as u32);
    }
    if let Some(fp) = &od.failure_percentage {
        pb.failure_percentage_threshold = u32_value(fp.threshold);
        pb.failure_percentage_minimum_hosts = u32_value(fp.minimum_hosts);
        pb.failure_percentage_request_volume = u32_value(fp.request_volume);
    }
    pb
}

/// The endpoints grouped by locality and priority. A locality's weight is
/// the sum of its endpoints' weights, so each endpoint's share is its own
/// weight whichever client reads it (gRPC weighs localities, then
/// endpoints within them).
fn assignment(name: &str, endpoints: &[EndpointConfig]) -> ClusterLoadAssignment {
    let mut groups: BTreeMap<(u32, &str, &str), Vec<&EndpointConfig>> = BTreeMap::new();
    for e in endpoints {
        groups
            .entry((e.priority, &e.locality.region, &e.locality.zone))
            .or_default()
            .push(e);
    }
    let localities = groups
        .into_iter()
        .map(|((priority, region, zone), members)| {
            let weight: u32 = members
                .iter()
                .map(|e| e.weight)
                .fold(0, u32::saturating_add);
            LocalityLbEndpoints {
                locality: Some(PbLocality {
                    region: region.to_owned(),
                    zone: zone.to_owned(),
                    ..PbLocality::default()
                }),
                lb_endpoints: members.into_iter().filter_map(lb_endpoint).collect(),
                load_balancing_weight: u32_value(weight.max(1)),
                priority,
                ..LocalityLbEndpoints::default()
            }
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_owned(),
        endpoints: localities,
        ..ClusterLoadAssignment::default()
    }
}

fn lb_endpoint(e: &EndpointConfig) -> Option<LbEndpoint> {
    let address: std::net::SocketAddr = e.address.parse().ok()?;
    let health = match e.health {
        Health::Healthy => HealthStatus::Healthy,
        Health::Draining => HealthStatus::Draining,
        Health::Unhealthy => HealthStatus::Unhealthy,
    };
    Some(LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: address.ip().to_string(),
                    port_specifier: Some(PortSpecifier::PortValue(u32::from(address.port()))),
                    ..SocketAddress::default()
                })),
            }),
            ..Endpoint::default()
        })),
        health_status: health as i32,
        load_balancing_weight: u32_value(e.weight),
        ..LbEndpoint::default()
    })
}
