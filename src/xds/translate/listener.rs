use super::super::resource::{ListenerResource, ListenerRoutes};
use super::fault::{HTTP_FAULT, fault};
use super::{Invalid, route_table, within};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier, http_filter::ConfigType,
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
    if let Some(last) = hcm.http_filters.last()
        && !last.name.contains("router")
    {
        return Err(format!(
            "api_listener.http_filters: the last filter must be the router, not `{}`",
            last.name
        ));
    }
    let mut fault_filter = None;
    for (i, filter) in hcm.http_filters.iter().enumerate() {
        if let Some(ConfigType::TypedConfig(any)) = &filter.config_type
            && any.type_url == HTTP_FAULT
        {
            let at = format!("api_listener.http_filters[{i}].typed_config");
            fault_filter = Some(fault(&any.value).map_err(within(&at))?);
        }
    }
    let routes = match hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) if !rds.route_config_name.is_empty() => {
            ListenerRoutes::Rds(rds.route_config_name)
        }
        Some(RouteSpecifier::Rds(_)) => {
            return Err("api_listener.rds.route_config_name: must not be empty".to_owned());
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
