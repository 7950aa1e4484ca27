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
use crate::config::MtlsMode;
use envoy_types::pb::envoy::config::core::v3::{TransportSocket, transport_socket::ConfigType};
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, common_tls_context::ValidationContextType,
};
use prost::Message;

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

/// The transport the server Listener asks for.
pub(crate) fn server_listener(listener: &Listener) -> Result<MtlsMode, Invalid> {
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
    let mut first: Option<(String, MtlsMode)> = None;
    for (at, chain) in chains {
        let mode = transport(chain).map_err(|e| format!("{at}.{e}"))?;
        match &first {
            None => first = Some((at, mode)),
            Some((first_at, first_mode)) if *first_mode != mode => {
                return Err(format!(
                    "{at}.transport_socket: {} where {first_at} is {}; Sinew serves one transport per listening address",
                    name(mode),
                    name(*first_mode)
                ));
            }
            Some(_) => {}
        }
    }
    first.map(|(_, mode)| mode).ok_or_else(|| {
        "filter_chains: empty, and no default_filter_chain (no connection could be served)"
            .to_owned()
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
/// are the router and optional ones only. Sinew's server applies no HTTP
/// filter of a server Listener (an RBAC filter, say): one it would have to
/// apply is refused rather than ignored, which would fail open.
fn http_filters(chain: &FilterChain) -> Result<(), Invalid> {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, http_filter::ConfigType,
    };
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
        for (i, http) in hcm.http_filters.iter().enumerate() {
            let router = matches!(&http.config_type, Some(ConfigType::TypedConfig(a)) if a.type_url == ROUTER);
            if !router && !http.is_optional {
                return Err(format!(
                    "{at}.typed_config.http_filters[{i}]: filter `{}` is not supported on a server, and not marked is_optional",
                    http.name
                ));
            }
        }
    }
    Ok(())
}

fn transport(chain: &FilterChain) -> Result<MtlsMode, Invalid> {
    http_filters(chain)?;
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
        assert_eq!(server_listener(&strict), Ok(MtlsMode::Strict));
        let plain = listener(vec![None]);
        assert_eq!(server_listener(&plain), Ok(MtlsMode::Disabled));
        let mut default_only = listener(vec![]);
        default_only.default_filter_chain = Some(FilterChain {
            transport_socket: Some(socket(&mtls(Some(true)))),
            ..FilterChain::default()
        });
        assert_eq!(server_listener(&default_only), Ok(MtlsMode::Strict));
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_naming_the_field() {
        for require in [None, Some(false)] {
            assert_eq!(
                server_listener(&listener(vec![Some(socket(&mtls(require)))])),
                Err("filter_chains[0].transport_socket.typed_config.require_client_certificate: must be true (Sinew's servers do not serve TLS without a client certificate)".to_owned())
            );
        }
        assert_eq!(
            server_listener(&listener(vec![Some(socket(&mtls(Some(true)))), None])),
            Err("filter_chains[1].transport_socket: plaintext where filter_chains[0] is mutual TLS; Sinew serves one transport per listening address".to_owned())
        );
        assert_eq!(
            server_listener(&listener(vec![])),
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
            server_listener(&listener(vec![Some(wrong_type)])).is_err_and(|e| e.starts_with(
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
            server_listener(&listener(vec![Some(socket(&san))])),
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
        const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
        let with = |filters: &[(&str, &str, bool)]| {
            let mut l = listener(vec![Some(socket(&mtls(Some(true))))]);
            l.filter_chains[0].filters = vec![hcm(filters)];
            server_listener(&l)
        };
        assert_eq!(
            with(&[("envoy.filters.http.router", ROUTER, false)]),
            Ok(MtlsMode::Strict)
        );
        assert_eq!(
            with(&[
                ("rbac", RBAC, true),
                ("envoy.filters.http.router", ROUTER, false)
            ]),
            Ok(MtlsMode::Strict)
        );
        assert_eq!(
            with(&[("rbac", RBAC, false), ("envoy.filters.http.router", ROUTER, false)]),
            Err("filter_chains[0].filters[0].typed_config.http_filters[0]: filter `rbac` is not supported on a server, and not marked is_optional".to_owned())
        );
    }

    #[test]
    fn a_client_listener_is_not_taken_for_a_server_one() {
        assert!(!is_server(&Listener::default()));
    }
}
