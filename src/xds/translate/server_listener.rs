//! A server-side Listener (gRFC A36): the one a server asks for by its
//! listening address. Sinew reads its transport only: every filter chain
//! must agree on it, since Sinew's server applies one transport per
//! listening address.
//!
//! - no `transport_socket` (or one without typed config): plaintext
//!   (`disabled`);
//! - a `DownstreamTlsContext` with `require_client_certificate: true`:
//!   mutual TLS (`strict`).
//!
//! Anything else (TLS without client certificates, a SAN matcher on
//! callers, chains that disagree) is refused naming the field, rather
//! than served weaker or stronger than the control plane says.

use super::Invalid;
use super::rbac;
use crate::authz::{CompiledPolicies, PolicyGroup};
use crate::config::MtlsMode;
use crate::xds::resource::ServerListenerResource;
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket::ConfigType};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, common_tls_context::ValidationContextType,
};
use prost::Message;
use std::sync::Arc;

const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// Whether `listener` is shaped as a server's: no `api_listener`, and an
/// address or filter chains.
pub(crate) fn is_server(listener: &Listener) -> bool {
    listener.api_listener.is_none()
        && (listener.address.is_some()
            || !listener.filter_chains.is_empty()
            || listener.default_filter_chain.is_some())
}

/// The transport the server Listener asks for, and the policies of its
/// RBAC filters.
pub(crate) fn server_listener(listener: &Listener) -> Result<ServerListenerResource, Invalid> {
    let chains = listener
        .filter_chains
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("filter_chains[{i}]"), c))
        .chain(
            listener
                .default_filter_chain
                .iter()
                .map(|c| ("default_filter_chain".to_owned(), c)),
        );
    let mut first: Option<(String, MtlsMode, Vec<Rbac>, Vec<PolicyGroup>)> = None;
    for (at, chain) in chains {
        let (rbac, groups) = http_filters(chain).map_err(|e| format!("{at}.{e}"))?;
        let mode = transport(chain).map_err(|e| format!("{at}.{e}"))?;
        match &first {
            None => first = Some((at, mode, rbac, groups)),
            Some((first_at, first_mode, ..)) if *first_mode != mode => {
                return Err(format!(
                    "{at}.transport_socket: {} where {first_at} is {}; Sinew serves one transport per listening address",
                    name(mode),
                    name(*first_mode)
                ));
            }
            // Sinew's server applies one set of policies per listening
            // address, as it does one transport.
            Some((first_at, _, first_rbac, _)) if *first_rbac != rbac => {
                return Err(format!(
                    "{at}.filters: RBAC filters other than {first_at}'s; Sinew applies one set of policies per listening address"
                ));
            }
            Some(_) => {}
        }
    }
    let Some((_, mtls, rbac, groups)) = first else {
        return Err(
            "filter_chains: empty, and no default_filter_chain (no connection could be served)"
                .to_owned(),
        );
    };
    Ok(ServerListenerResource {
        mtls,
        rbac,
        authorization: Arc::new(CompiledPolicies { groups }),
    })
}

fn name(mode: MtlsMode) -> &'static str {
    match mode {
        MtlsMode::Strict => "mutual TLS",
        MtlsMode::Permissive => "permissive",
        MtlsMode::Disabled => "plaintext",
    }
}

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

/// The chain's network filters: HttpConnectionManagers whose HTTP filters
/// are RBAC filters (gRFC A41), optional ones (passed over) and the router,
/// last. Any other filter is refused rather than ignored, which would
/// fail open. Returns the RBAC filters as they came, and the policy
/// groups of those that do something, in order.
fn http_filters(chain: &FilterChain) -> Result<(Vec<Rbac>, Vec<PolicyGroup>), Invalid> {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, http_filter::ConfigType,
    };
    let (mut filters, mut groups) = (Vec::new(), Vec::new());
    for (j, filter) in chain.filters.iter().enumerate() {
        let at = format!("filters[{j}]");
        let Some(FilterConfig::TypedConfig(any)) = &filter.config_type else {
            return Err(format!(
                "{at}.typed_config: missing (filter `{}`)",
                filter.name
            ));
        };
        if any.type_url != HCM {
            return Err(format!(
                "{at}.typed_config: `{}` is not an HttpConnectionManager",
                any.type_url
            ));
        }
        let hcm = HttpConnectionManager::decode(any.value.as_slice())
            .map_err(|e| format!("{at}.typed_config: cannot decode: {e}"))?;
        let at = format!("{at}.typed_config");
        // gRFC A41: the caller's address is the TCP peer's, so nothing may
        // say to take it from elsewhere.
        if hcm.xff_num_trusted_hops != 0 {
            return Err(format!(
                "{at}.xff_num_trusted_hops: must be 0 (remote_ip is the connection's peer)"
            ));
        }
        if !hcm.original_ip_detection_extensions.is_empty() {
            return Err(format!(
                "{at}.original_ip_detection_extensions: must be empty (remote_ip is the connection's peer)"
            ));
        }
        let mut rbac_names = Vec::new();
        let mut names = std::collections::HashSet::new();
        let last = hcm.http_filters.len().saturating_sub(1);
        for (i, http) in hcm.http_filters.iter().enumerate() {
            let here = format!("{at}.http_filters[{i}]");
            // gRFC A39: names are unique and not empty (an override is
            // found by its filter's name).
            if http.name.is_empty() {
                return Err(format!("{here}.name: must not be empty"));
            }
            if !names.insert(http.name.as_str()) {
                return Err(format!("{here}.name: `{}` names two filters", http.name));
            }
            let typed = match &http.config_type {
                Some(ConfigType::TypedConfig(a)) => Some(a),
                _ => None,
            };
            match typed {
                Some(a) if a.type_url == ROUTER && i == last => {}
                Some(a) if a.type_url == ROUTER => {
                    return Err(format!(
                        "{here}: the router must be the last filter (gRFC A39)"
                    ));
                }
                Some(a) if a.type_url == rbac::RBAC => {
                    let config = Rbac::decode(a.value.as_slice())
                        .map_err(|e| format!("{here}.typed_config: cannot decode: {e}"))?;
                    if let Some(group) =
                        rbac::group(&config).map_err(|e| format!("{here}.typed_config.{e}"))?
                    {
                        groups.push(group);
                    }
                    filters.push(config);
                    rbac_names.push(http.name.as_str());
                }
                _ if http.is_optional => {}
                _ => {
                    return Err(format!(
                        "{here}: filter `{}` is not supported on a server, and not marked is_optional",
                        http.name
                    ));
                }
            }
        }
        let routed = hcm.http_filters.last().is_some_and(
            |f| matches!(&f.config_type, Some(ConfigType::TypedConfig(a)) if a.type_url == ROUTER),
        );
        if !routed {
            return Err(format!(
                "{at}.http_filters: no router filter last (gRFC A39)"
            ));
        }
        if !rbac_names.is_empty() {
            per_route(&hcm, &rbac_names).map_err(|e| format!("{at}.{e}"))?;
        }
    }
    Ok((filters, groups))
}

/// Sinew applies a server Listener's RBAC filters to every request: a
/// per-route override of one (`RBACPerRoute`) in the inline route
/// configuration is refused rather than not applied.
fn per_route(
    hcm: &envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager,
    rbac_names: &[&str],
) -> Result<(), Invalid> {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
    use envoy_types::pb::google::protobuf::Any;
    use std::collections::HashMap;
    let Some(RouteSpecifier::RouteConfig(routes)) = &hcm.route_specifier else {
        return Ok(());
    };
    let overrides = |map: &HashMap<String, Any>, at: &str| -> Result<(), Invalid> {
        match map.keys().find(|k| rbac_names.contains(&k.as_str())) {
            Some(name) => Err(format!(
                "{at}typed_per_filter_config[\"{name}\"]: per-route RBAC overrides are not supported"
            )),
            None => Ok(()),
        }
    };
    overrides(&routes.typed_per_filter_config, "route_config.")?;
    for (v, host) in routes.virtual_hosts.iter().enumerate() {
        let at = format!("route_config.virtual_hosts[{v}].");
        overrides(&host.typed_per_filter_config, &at)?;
        for (r, route) in host.routes.iter().enumerate() {
            overrides(&route.typed_per_filter_config, &format!("{at}routes[{r}]."))?;
        }
    }
    Ok(())
}

fn transport(chain: &FilterChain) -> Result<MtlsMode, Invalid> {
    let Some(TransportSocket {
        config_type: Some(ConfigType::TypedConfig(any)),
        ..
    }) = &chain.transport_socket
    else {
        return Ok(MtlsMode::Disabled);
    };
    let at = "transport_socket.typed_config";
    if any.type_url != DOWNSTREAM_TLS {
        return Err(format!(
            "{at}: `{}` is not a DownstreamTlsContext",
            any.type_url
        ));
    }
    let tls = DownstreamTlsContext::decode(any.value.as_slice())
        .map_err(|e| format!("{at}: cannot decode: {e}"))?;
    if !tls.require_client_certificate.is_some_and(|b| b.value) {
        return Err(format!(
            "{at}.require_client_certificate: must be true (Sinew's servers do not serve TLS without a client certificate)"
        ));
    }
    // Sinew checks a caller's certificate against its trust bundle only:
    // a matcher on the caller's SANs would be ignored, so widened.
    #[allow(deprecated)]
    let restricted = match tls
        .common_tls_context
        .and_then(|c| c.validation_context_type)
    {
        Some(ValidationContextType::ValidationContext(v)) => {
            (!v.match_typed_subject_alt_names.is_empty() || !v.match_subject_alt_names.is_empty())
                .then_some("validation_context")
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => c
            .default_validation_context
            .filter(|v| {
                !v.match_typed_subject_alt_names.is_empty() || !v.match_subject_alt_names.is_empty()
            })
            .map(|_| "combined_validation_context.default_validation_context"),
        _ => None,
    };
    if let Some(field) = restricted {
        return Err(format!(
            "{at}.common_tls_context.{field}: matchers on the caller's SANs are not supported on a server"
        ));
    }
    Ok(MtlsMode::Strict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, HttpFilter, http_filter,
    };
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher,
        subject_alt_name_matcher::SanType,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::{
        StringMatcher, string_matcher::MatchPattern,
    };
    use envoy_types::pb::google::protobuf::{Any, BoolValue};

    fn socket(tls: &DownstreamTlsContext) -> TransportSocket {
        TransportSocket {
            name: "envoy.transport_sockets.tls".to_owned(),
            config_type: Some(ConfigType::TypedConfig(Any {
                type_url: DOWNSTREAM_TLS.to_owned(),
                value: tls.encode_to_vec(),
            })),
        }
    }

    fn mtls(require: Option<bool>) -> DownstreamTlsContext {
        DownstreamTlsContext {
            require_client_certificate: require.map(|value| BoolValue { value }),
            ..DownstreamTlsContext::default()
        }
    }

    fn listener(chains: Vec<Option<TransportSocket>>) -> Listener {
        Listener {
            name: "grpc/server?xds.resource.listening_address=127.0.0.1:50051".to_owned(),
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: "127.0.0.1".to_owned(),
                    ..SocketAddress::default()
                })),
            }),
            filter_chains: chains
                .into_iter()
                .map(|transport_socket| FilterChain {
                    transport_socket,
                    ..FilterChain::default()
                })
                .collect(),
            ..Listener::default()
        }
    }

    #[test]
    fn required_client_certificates_are_strict_and_no_socket_is_plaintext() {
        let strict = listener(vec![Some(socket(&mtls(Some(true))))]);
        assert!(is_server(&strict));
        assert_eq!(
            server_listener(&strict).map(|s| s.mtls),
            Ok(MtlsMode::Strict)
        );
        let plain = listener(vec![None]);
        assert_eq!(
            server_listener(&plain).map(|s| s.mtls),
            Ok(MtlsMode::Disabled)
        );
        let mut default_only = listener(vec![]);
        default_only.default_filter_chain = Some(FilterChain {
            transport_socket: Some(socket(&mtls(Some(true)))),
            ..FilterChain::default()
        });
        assert_eq!(
            server_listener(&default_only).map(|s| s.mtls),
            Ok(MtlsMode::Strict)
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_naming_the_field() {
        for require in [None, Some(false)] {
            assert_eq!(
                server_listener(&listener(vec![Some(socket(&mtls(require)))])).map(|s| s.mtls),
                Err("filter_chains[0].transport_socket.typed_config.require_client_certificate: must be true (Sinew's servers do not serve TLS without a client certificate)".to_owned())
            );
        }
        assert_eq!(
            server_listener(&listener(vec![Some(socket(&mtls(Some(true)))), None])).map(|s| s.mtls),
            Err("filter_chains[1].transport_socket: plaintext where filter_chains[0] is mutual TLS; Sinew serves one transport per listening address".to_owned())
        );
        assert_eq!(
            server_listener(&listener(vec![])).map(|s| s.mtls),
            Err(
                "filter_chains: empty, and no default_filter_chain (no connection could be served)"
                    .to_owned()
            )
        );
        let mut wrong_type = socket(&mtls(Some(true)));
        if let Some(ConfigType::TypedConfig(any)) = &mut wrong_type.config_type {
            any.type_url =
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
                    .to_owned();
        }
        assert!(
            server_listener(&listener(vec![Some(wrong_type)])).map(|s| s.mtls).is_err_and(|e| e.starts_with(
                "filter_chains[0].transport_socket.typed_config: `type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext` is not a DownstreamTlsContext"
            ))
        );
        let mut san = mtls(Some(true));
        san.common_tls_context = Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: SanType::Uri as i32,
                        matcher: Some(StringMatcher {
                            match_pattern: Some(MatchPattern::Exact("spiffe://a/b".to_owned())),
                            ..StringMatcher::default()
                        }),
                        ..SubjectAltNameMatcher::default()
                    }],
                    ..CertificateValidationContext::default()
                },
            )),
            ..CommonTlsContext::default()
        });
        assert_eq!(
            server_listener(&listener(vec![Some(socket(&san))])).map(|s| s.mtls),
            Err("filter_chains[0].transport_socket.typed_config.common_tls_context.validation_context: matchers on the caller's SANs are not supported on a server".to_owned())
        );
    }

    fn hcm(filters: &[(&str, &str, bool)]) -> Filter {
        let hcm = HttpConnectionManager {
            http_filters: filters
                .iter()
                .map(|(name, type_url, is_optional)| HttpFilter {
                    name: (*name).to_owned(),
                    is_optional: *is_optional,
                    config_type: Some(http_filter::ConfigType::TypedConfig(Any {
                        type_url: (*type_url).to_owned(),
                        value: Vec::new(),
                    })),
                    ..HttpFilter::default()
                })
                .collect(),
            ..HttpConnectionManager::default()
        };
        Filter {
            name: "envoy.filters.network.http_connection_manager".to_owned(),
            config_type: Some(filter::ConfigType::TypedConfig(Any {
                type_url: HCM.to_owned(),
                value: hcm.encode_to_vec(),
            })),
        }
    }

    #[test]
    fn an_http_filter_the_server_would_not_apply_is_refused_unless_optional() {
        const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
        let with = |filters: &[(&str, &str, bool)]| {
            let mut l = listener(vec![Some(socket(&mtls(Some(true))))]);
            l.filter_chains[0].filters = vec![hcm(filters)];
            server_listener(&l).map(|s| s.mtls)
        };
        assert_eq!(
            with(&[("envoy.filters.http.router", ROUTER, false)]),
            Ok(MtlsMode::Strict)
        );
        assert_eq!(
            with(&[
                ("fault", FAULT, true),
                ("envoy.filters.http.router", ROUTER, false)
            ]),
            Ok(MtlsMode::Strict)
        );
        assert_eq!(
            with(&[("fault", FAULT, false), ("envoy.filters.http.router", ROUTER, false)]),
            Err("filter_chains[0].filters[0].typed_config.http_filters[0]: filter `fault` is not supported on a server, and not marked is_optional".to_owned())
        );
    }

    #[test]
    fn a_client_listener_is_not_taken_for_a_server_one() {
        assert!(!is_server(&Listener::default()));
    }
}
