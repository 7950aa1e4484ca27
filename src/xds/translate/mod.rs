//! From Envoy's protobuf resources to Sinew's model. Each function checks
//! what it translates and fails with `field: message`, the field named by
//! its protobuf path, so that a NACK says what to fix.

mod cluster;
mod endpoint;
mod fault;
mod listener;
mod metadata;
mod rbac;
mod route;
mod server_listener;
mod tls;
mod wire;

pub(super) use cluster::cluster;
pub(super) use endpoint::assignment;
pub(super) use listener::listener;
pub(super) use metadata::KEY as METADATA_KEY;
pub(super) use route::route_table;

use super::resource::{Kind, Resource};
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::Message;
use std::time::Duration;

/// A translation error: the field and what is wrong with it.
pub(super) type Invalid = String;

const RESOURCE_WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

/// Decodes one resource of a response: its name and its translation (an
/// error names the field). A resource wrapped in Envoy's `Resource`
/// message is unwrapped first.
pub(super) fn decode(
    kind: Kind,
    any: &Any,
) -> Result<(String, Resource), (Option<String>, Invalid)> {
    let (type_url, bytes, wrapped_name) = if any.type_url == RESOURCE_WRAPPER {
        let wrapper =
            envoy_types::pb::envoy::service::discovery::v3::Resource::decode(any.value.as_slice())
                .map_err(|e| (None, format!("cannot decode the Resource wrapper: {e}")))?;
        let inner = wrapper
            .resource
            .ok_or_else(|| (None, "the Resource wrapper is empty".to_owned()))?;
        (
            inner.type_url,
            inner.value,
            Some(wrapper.name).filter(|n| !n.is_empty()),
        )
    } else {
        (any.type_url.clone(), any.value.clone(), None)
    };
    if type_url != kind.type_url() {
        return Err((
            wrapped_name,
            format!(
                "type_url: `{type_url}` in a response for {}",
                kind.type_url()
            ),
        ));
    }
    let bytes = bytes.as_slice();
    let named = |name: String, r: Result<Resource, Invalid>| match r {
        Ok(resource) => Ok((name, resource)),
        Err(e) => Err((Some(name), e)),
    };
    let undecodable = |e: prost::DecodeError| (wrapped_name.clone(), format!("cannot decode: {e}"));
    match kind {
        Kind::Listener => {
            let l = envoy_types::pb::envoy::config::listener::v3::Listener::decode(bytes)
                .map_err(undecodable)?;
            let name = l.name.clone();
            // A server's Listener (gRFC A36) has filter chains where a
            // client's has an api_listener; which one a name should be
            // is checked against the subscription.
            if server_listener::is_server(&l) {
                named(
                    name,
                    server_listener::server_listener(&l).map(Resource::ServerListener),
                )
            } else {
                named(name, listener(l).map(Resource::Listener))
            }
        }
        Kind::Route => {
            let r = envoy_types::pb::envoy::config::route::v3::RouteConfiguration::decode(bytes)
                .map_err(undecodable)?;
            let name = r.name.clone();
            named(name, route_table(r).map(Resource::Route))
        }
        Kind::Cluster => {
            let c = envoy_types::pb::envoy::config::cluster::v3::Cluster::decode(bytes)
                .map_err(undecodable)?;
            let name = c.name.clone();
            named(name, cluster(c).map(|c| Resource::Cluster(Box::new(c))))
        }
        Kind::Endpoints => {
            // Read from the wire: see `wire`.
            let (name, endpoints) =
                assignment(bytes).map_err(|e| (endpoint::assignment_name(bytes), e))?;
            Ok((name, Resource::Endpoints(endpoints)))
        }
    }
}

/// A protobuf duration, refused when negative, when its nanos are out of
/// range, or when longer than [`MAX_DURATION`](crate::bounds::MAX_DURATION)
/// (so that no clock arithmetic on it can overflow).
fn duration(field: &str, d: &PbDuration) -> Result<Duration, Invalid> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(format!("{field}: must not be negative"));
    }
    if d.nanos > 999_999_999 {
        return Err(format!("{field}.nanos: must be at most 999999999"));
    }
    let value = Duration::new(d.seconds as u64, d.nanos as u32);
    if value > crate::bounds::MAX_DURATION {
        return Err(format!("{field}: must be at most 365 days"));
    }
    Ok(value)
}

/// Prefixes a nested error with the field it came from.
fn within(field: &str) -> impl Fn(Invalid) -> Invalid + '_ {
    move |e| format!("{field}.{e}")
}

/// A config source that points to the stream the resource came on: ADS or
/// `self`. gRPC refuses any other (a path, a REST or gRPC API source), and
/// so does Sinew rather than ignore where the control plane says to look.
fn config_source(
    source: Option<&envoy_types::pb::envoy::config::core::v3::ConfigSource>,
) -> Result<(), Invalid> {
    use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
    match source.and_then(|s| s.config_source_specifier.as_ref()) {
        Some(ConfigSourceSpecifier::Ads(_) | ConfigSourceSpecifier::Self_(_)) => Ok(()),
        None => Err("missing (must be `ads` or `self`)".to_owned()),
        Some(_) => Err("only `ads` and `self` are supported".to_owned()),
    }
}
