use super::super::resource::ClusterResource;
use super::{Invalid, assignment, duration, within};
use crate::config::{
    ClusterConfig, FailurePercentageConfig, LbPolicy, OutlierDetectionConfig, Protocol,
    SuccessRateConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster, OutlierDetection,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy as EnvoyLb},
};
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use std::time::Duration;

/// A Cluster: EDS (endpoints by subscription) or STATIC (endpoints inline),
/// with its load-balancing policy, circuit-breaker thresholds, outlier
/// detection and protocol; and, from its `sinew` filter metadata, its
/// service breaker and classifier.
// `http2_protocol_options` is deprecated in Envoy's API, and is still how
// control planes (and gRPC's examples) mark an HTTP/2 cluster.
#[allow(deprecated)]
pub(crate) fn cluster(c: Cluster) -> Result<ClusterResource, Invalid> {
    let mut config = ClusterConfig::default();
    let kind = match c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).ok(),
        Some(ClusterDiscoveryType::ClusterType(_)) => {
            return Err("cluster_type: custom cluster types are not supported".to_owned());
        }
        None => Some(DiscoveryType::Static),
    };
    let eds_name = match kind {
        Some(DiscoveryType::Eds) => {
            super::config_source(
                c.eds_cluster_config
                    .as_ref()
                    .and_then(|e| e.eds_config.as_ref()),
            )
            .map_err(|e| format!("eds_cluster_config.eds_config: {e}"))?;
            Some(
                c.eds_cluster_config
                    .as_ref()
                    .map(|e| e.service_name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| c.name.clone()),
            )
        }
        Some(DiscoveryType::Static) => {
            let inline = c.load_assignment.clone().unwrap_or_default();
            // The same reader as for EDS, on the message's bytes.
            let (_, endpoints) = assignment(&prost::Message::encode_to_vec(&inline))
                .map_err(within("load_assignment"))?;
            config.endpoints = endpoints
                .iter()
                .map(crate::config::Endpoint::to_config)
                .collect();
            None
        }
        _ => return Err("type: only EDS and STATIC clusters are supported".to_owned()),
    };
    config.lb = match &c.load_balancing_policy {
        Some(policy) => load_balancing_policy(policy).map_err(within("load_balancing_policy"))?,
        None => legacy_lb(&c)?,
    };
    if let Some(breakers) = &c.circuit_breakers {
        // The default priority's thresholds.
        if let Some(t) = breakers.thresholds.iter().find(|t| t.priority == 0) {
            let value = |field: &str, v: &Option<UInt32Value>, default: u32| match v {
                Some(v) if v.value == 0 => Err(format!(
                    "circuit_breakers.thresholds.{field}: must be at least 1"
                )),
                Some(v) => Ok(v.value),
                None => Ok(default),
            };
            config.thresholds.max_requests = value("max_requests", &t.max_requests, 1024)?;
            config.thresholds.max_pending =
                value("max_pending_requests", &t.max_pending_requests, 1024)?;
            config.thresholds.max_retries = value("max_retries", &t.max_retries, 3)?;
        }
    }
    if let Some(od) = &c.outlier_detection {
        config.outlier_detection = Some(outlier(od).map_err(within("outlier_detection"))?);
    }
    if let Some(panic) = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.healthy_panic_threshold.as_ref())
    {
        if !(0.0..=100.0).contains(&panic.value) {
            return Err(
                "common_lb_config.healthy_panic_threshold: must be between 0 and 100".to_owned(),
            );
        }
        config.locality_lb.panic_threshold_percent = panic.value.round() as u32;
    }
    locality(&c, &mut config.locality_lb)?;
    let sinew = super::metadata::fields(c.metadata.as_ref());
    config.breaker = super::metadata::breaker(sinew)?;
    config.classifier = super::metadata::classifier(sinew)?;
    // Sockets chosen per endpoint by metadata (Istio's automatic mTLS)
    // are not supported: refused, rather than speak plaintext to
    // endpoints the control plane meant for TLS.
    if !c.transport_socket_matches.is_empty() {
        return Err(
            "transport_socket_matches: per-endpoint transport sockets are not supported; \
             put the UpstreamTlsContext in transport_socket"
                .to_owned(),
        );
    }
    if let Some(socket) = &c.transport_socket {
        // Named identities already make the cluster mTLS-only; `mtls`
        // says so for a context without any (the mesh file's same form).
        let identities = super::tls::upstream(socket)?;
        config.mtls = identities.as_ref().is_some_and(Vec::is_empty);
        config.identities = identities.unwrap_or_default();
    }
    if c.http2_protocol_options.is_some() {
        config.protocol = Protocol::Http2;
    }
    if let Some(options) = c.typed_extension_protocol_options.get(HTTP_OPTIONS_NAME) {
        let at = format!("typed_extension_protocol_options[{HTTP_OPTIONS_NAME}]");
        if let Some(protocol) = http_protocol(options).map_err(|e| format!("{at}{e}"))? {
            config.protocol = protocol;
        }
    }
    if let Some(lrs) = &c.lrs_server {
        // Load reports go to the control plane itself, or nowhere.
        match &lrs.config_source_specifier {
            Some(ConfigSourceSpecifier::Self_(_)) => {}
            _ => return Err("lrs_server: only `self` is supported".to_owned()),
        }
    }
    Ok(ClusterResource { config, eds_name })
}

/// Zone-aware routing (Envoy's `zone_aware_lb_config.routing_enabled`,
/// off at 0 %) and the failover threshold, which Envoy's Cluster has no
/// field for: Sinew's control plane sends it in the `sinew` filter
/// metadata.
fn locality(c: &Cluster, into: &mut crate::config::LocalityLbConfig) -> Result<(), Invalid> {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::LocalityConfigSpecifier;
    use envoy_types::pb::google::protobuf::value::Kind;
    if let Some(LocalityConfigSpecifier::ZoneAwareLbConfig(zone)) = c
        .common_lb_config
        .as_ref()
        .and_then(|l| l.locality_config_specifier.as_ref())
    {
        into.prefer_local_zone = zone.routing_enabled.as_ref().is_none_or(|p| p.value > 0.0);
    }
    let threshold = super::metadata::fields(c.metadata.as_ref())
        .and_then(|s| s.fields.get("failover_threshold_percent"));
    if let Some(value) = threshold {
        match value.kind {
            Some(Kind::NumberValue(n)) if (0.0..=100.0).contains(&n) => {
                into.failover_threshold_percent = n.round() as u32;
            }
            _ => {
                return Err(
                    "metadata.filter_metadata.sinew.failover_threshold_percent: must be a number from 0 to 100"
                        .to_owned(),
                );
            }
        }
    }
    Ok(())
}

/// Envoy's outlier detection, with Envoy's defaults and its `enforcing_*`
/// percentages read as on (above zero) or off.
fn outlier(od: &OutlierDetection) -> Result<OutlierDetectionConfig, Invalid> {
    let u = |v: &Option<UInt32Value>, default: u32| v.as_ref().map_or(default, |v| v.value);
    let on = |v: &Option<UInt32Value>, default: u32| u(v, default) > 0;
    let time =
        |field: &str, v: &Option<envoy_types::pb::google::protobuf::Duration>, default: u64| {
            v.as_ref()
                .map_or(Ok(Duration::from_millis(default)), |d| duration(field, d))
        };
    let percent = |field: &str, v: u32| {
        if v > 100 {
            Err(format!("{field}: must be at most 100"))
        } else {
            Ok(v)
        }
    };
    Ok(OutlierDetectionConfig {
        consecutive_5xx: on(&od.enforcing_consecutive_5xx, 100).then(|| u(&od.consecutive_5xx, 5)),
        consecutive_gateway_failure: on(&od.enforcing_consecutive_gateway_failure, 0)
            .then(|| u(&od.consecutive_gateway_failure, 5)),
        consecutive_local_origin_failure: (od.split_external_local_origin_errors
            && on(&od.enforcing_consecutive_local_origin_failure, 100))
        .then(|| u(&od.consecutive_local_origin_failure, 5)),
        interval: time("interval", &od.interval, 10_000)?,
        base_ejection_time: time("base_ejection_time", &od.base_ejection_time, 30_000)?,
        max_ejection_time: time("max_ejection_time", &od.max_ejection_time, 300_000)?,
        max_ejection_percent: percent("max_ejection_percent", u(&od.max_ejection_percent, 10))?,
        success_rate: on(&od.enforcing_success_rate, 100).then(|| SuccessRateConfig {
            minimum_hosts: u(&od.success_rate_minimum_hosts, 5),
            request_volume: u(&od.success_rate_request_volume, 100),
            stdev_factor: f64::from(u(&od.success_rate_stdev_factor, 1900)) / 1000.0,
        }),
        failure_percentage: match on(&od.enforcing_failure_percentage, 0) {
            true => Some(FailurePercentageConfig {
                threshold: percent(
                    "failure_percentage_threshold",
                    u(&od.failure_percentage_threshold, 85),
                )?,
                minimum_hosts: u(&od.failure_percentage_minimum_hosts, 5),
                request_volume: u(&od.failure_percentage_request_volume, 50),
            }),
            false => None,
        },
    })
}

/// The legacy `lb_policy` field (with `lb_config` for ring hash).
fn legacy_lb(c: &Cluster) -> Result<LbPolicy, Invalid> {
    Ok(match EnvoyLb::try_from(c.lb_policy) {
            Ok(EnvoyLb::RoundRobin) => LbPolicy::RoundRobin,
            Ok(EnvoyLb::LeastRequest) => LbPolicy::LeastRequest,
            Ok(EnvoyLb::Random) => LbPolicy::Random,
            Ok(EnvoyLb::RingHash) => LbPolicy::RingHash {
                header: None,
                min_ring_size: c
                    .lb_config
                    .as_ref()
                    .and_then(|l| match l {
                        envoy_types::pb::envoy::config::cluster::v3::cluster::LbConfig::RingHashLbConfig(r) => {
                            r.minimum_ring_size.as_ref().map(|m| m.value.min(u64::from(crate::config::MAX_RING_SIZE)) as u32)
                        }
                        _ => None,
                    })
                    .unwrap_or(1024)
                    .max(1),
            },
            Ok(EnvoyLb::Maglev) => LbPolicy::Maglev { header: None },
            Ok(other) => return Err(format!("lb_policy: {} is not supported", other.as_str_name())),
            Err(_) => return Err(format!("lb_policy: unknown value {}", c.lb_policy)),
        })
}

/// Sinew's own P2C Peak-EWMA, which Envoy's policies do not have: the
/// control plane lists it first, with least request after it for other
/// clients.
pub(crate) const P2C_EWMA: &str = "type.googleapis.com/sinew.lb.v1.P2cEwma";
const POLICIES: &str = "type.googleapis.com/envoy.extensions.load_balancing_policies.";

/// `load_balancing_policy`: the first policy of the list Sinew knows, as
/// gRPC picks (gRFC A52).
fn load_balancing_policy(
    policy: &envoy_types::pb::envoy::config::cluster::v3::LoadBalancingPolicy,
) -> Result<LbPolicy, Invalid> {
    for p in &policy.policies {
        let Some(any) = p
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            continue;
        };
        let lb = match any.type_url.strip_prefix(POLICIES) {
            _ if any.type_url == P2C_EWMA => LbPolicy::P2cEwma,
            Some("least_request.v3.LeastRequest") => LbPolicy::LeastRequest,
            Some("round_robin.v3.RoundRobin") => LbPolicy::RoundRobin,
            Some("random.v3.Random") => LbPolicy::Random,
            Some("maglev.v3.Maglev") => LbPolicy::Maglev { header: None },
            Some("ring_hash.v3.RingHash") => {
                use envoy_types::pb::envoy::extensions::load_balancing_policies::ring_hash::v3::RingHash;
                let ring = <RingHash as prost::Message>::decode(any.value.as_slice())
                    .map_err(|e| format!("policies: cannot decode RingHash: {e}"))?;
                LbPolicy::RingHash {
                    header: None,
                    min_ring_size: ring
                        .minimum_ring_size
                        .map_or(1024, |m| {
                            m.value.min(u64::from(crate::config::MAX_RING_SIZE)) as u32
                        })
                        .max(1),
                }
            }
            _ => continue,
        };
        return Ok(lb);
    }
    Err("policies: none of them is supported".to_owned())
}

const HTTP_OPTIONS_NAME: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const HTTP_OPTIONS: &str =
    "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The protocol an `HttpProtocolOptions` (the modern form of
/// `http2_protocol_options`) asks for: HTTP/2 or HTTP/1.1 when explicit;
/// `None` (the cluster's default) for the automatic choices, which need
/// ALPN or the downstream's protocol, neither of which a client has. An
/// error starts with the field below the options.
fn http_protocol(any: &Any) -> Result<Option<Protocol>, Invalid> {
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
        HttpProtocolOptions,
        http_protocol_options::{UpstreamProtocolOptions, explicit_http_config::ProtocolConfig},
    };
    if any.type_url != HTTP_OPTIONS {
        return Err(format!(
            ".type_url: `{}` is not {HTTP_OPTIONS}",
            any.type_url
        ));
    }
    let options = <HttpProtocolOptions as prost::Message>::decode(any.value.as_slice())
        .map_err(|e| format!(": cannot decode: {e}"))?;
    Ok(match options.upstream_protocol_options {
        Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
            match explicit.protocol_config {
                Some(ProtocolConfig::Http2ProtocolOptions(_)) => Some(Protocol::Http2),
                Some(ProtocolConfig::HttpProtocolOptions(_)) => Some(Protocol::Http1),
                Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                    return Err(
                        ".explicit_http_config.http3_protocol_options: HTTP/3 is not supported"
                            .to_owned(),
                    );
                }
                None => None,
            }
        }
        _ => None,
    })
}
