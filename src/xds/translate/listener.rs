use super::super::resource::{ListenerResource, ListenerRoutes};
use super::fault::{HTTP_FAULT, fault};
use super::{Invalid, route_table, within};
use crate::config::FaultConfig;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType,
};
use prost::Message;

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// A client-side Listener: an `api_listener` holding an
/// HttpConnectionManager, whose routes are inline or named for RDS.
pub(crate) fn listener(listener: Listener) -> Result<ListenerResource, Invalid> {
    let Some(api) = listener.api_listener.and_then(|a| a.api_listener) else {
        return Err("api_listener: missing (a client's Listener holds an api_listener)".to_owned());
    };
    if api.type_url != HCM {
        return Err(format!(
            "api_listener.api_listener.type_url: `{}` is not an HttpConnectionManager",
            api.type_url
        ));
    }
    let hcm = HttpConnectionManager::decode(api.value.as_slice())
        .map_err(|e| format!("api_listener.api_listener: cannot decode: {e}"))?;
    // gRFC A41 refuses these on every Listener, client or server: the
    // caller's address is the connection's peer.
    if hcm.xff_num_trusted_hops != 0 {
        return Err("api_listener.api_listener.xff_num_trusted_hops: must be 0".to_owned());
    }
    if !hcm.original_ip_detection_extensions.is_empty() {
        return Err(
            "api_listener.api_listener.original_ip_detection_extensions: must be empty".to_owned(),
        );
    }
    let fault_filter = filters(&hcm.http_filters)?;
    let routes = match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            super::config_source(rds.config_source.as_ref())
                .map_err(|e| format!("api_listener.rds.config_source: {e}"))?;
            if rds.route_config_name.is_empty() {
                return Err("api_listener.rds.route_config_name: must not be empty".to_owned());
            }
            ListenerRoutes::Rds(rds.route_config_name)
        }
        Some(RouteSpecifier::RouteConfig(config)) => route_table(config)
            .map(ListenerRoutes::Inline)
            .map_err(within("api_listener.route_config"))?,
        Some(_) => {
            return Err("api_listener.route_specifier: scoped routes are not supported".to_owned());
        }
        None => {
            return Err("api_listener.route_specifier: missing (rds or route_config)".to_owned());
        }
    };
    Ok(ListenerResource {
        routes,
        fault_filter,
    })
}

const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const TYPED_STRUCTS: [&str; 2] = [
    "type.googleapis.com/xds.type.v3.TypedStruct",
    "type.googleapis.com/udpa.type.v1.TypedStruct",
];

/// `xds.type.v3.TypedStruct` (and its `udpa` twin), which wraps a filter's
/// configuration as JSON: only its inner type URL matters here.
#[derive(Clone, PartialEq, prost::Message)]
struct TypedStruct {
    #[prost(string, tag = "1")]
    type_url: String,
}

/// The HTTP filter chain, checked as gRPC does (gRFC A39): every filter
/// named once and configured; the router present, and last; a filter Sinew
/// does not implement refused unless marked `is_optional`, since ignoring
/// it (an RBAC or ext_authz filter, say) would fail open. Returns the
/// fault filter's defaults when the chain has one.
fn filters(chain: &[HttpFilter]) -> Result<Option<FaultConfig>, Invalid> {
    let mut fault_filter = None;
    let mut names = std::collections::HashSet::new();
    let mut router = None;
    for (i, filter) in chain.iter().enumerate() {
        let at = format!("api_listener.http_filters[{i}]");
        if filter.name.is_empty() {
            return Err(format!("{at}.name: must not be empty"));
        }
        if !names.insert(filter.name.as_str()) {
            return Err(format!(
                "{at}.name: `{}` names two filters of the chain",
                filter.name
            ));
        }
        let any = match &filter.config_type {
            Some(ConfigType::TypedConfig(any)) => any,
            _ if filter.is_optional => continue,
            Some(ConfigType::ConfigDiscovery(_)) => {
                return Err(format!(
                    "{at}.config_discovery: not supported (filter `{}`)",
                    filter.name
                ));
            }
            None => {
                return Err(format!(
                    "{at}.typed_config: missing (filter `{}`)",
                    filter.name
                ));
            }
        };
        let type_url = if TYPED_STRUCTS.contains(&any.type_url.as_str()) {
            TypedStruct::decode(any.value.as_slice())
                .map_err(|e| format!("{at}.typed_config: cannot decode TypedStruct: {e}"))?
                .type_url
        } else {
            any.type_url.clone()
        };
        if let Some(r) = router {
            return Err(format!(
                "api_listener.http_filters[{r}]: the router must be the last filter, and `{}` follows it",
                filter.name
            ));
        }
        match type_url.as_str() {
            ROUTER => router = Some(i),
            HTTP_FAULT => {
                let at = format!("{at}.typed_config");
                fault_filter = Some(fault(&any.value).map_err(within(&at))?);
            }
            _ if filter.is_optional => {}
            other => {
                return Err(format!(
                    "{at}: filter `{}` of type `{other}` is not supported, and not marked is_optional",
                    filter.name
                ));
            }
        }
    }
    if router.is_none() {
        return Err("api_listener.http_filters: no router filter (it must be the last)".to_owned());
    }
    Ok(fault_filter)
}
