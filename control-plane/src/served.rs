//! The mesh file's fields that xDS does not carry to clients. A field the
//! control plane would drop on the way is refused instead (in `sinew
//! check`, at start and on reload), so that what a file says is what
//! clients get. (A cluster's `breaker` and `classifier` and a route's
//! `classifier`, which Envoy has no field for, travel in the resources'
//! `sinew` filter metadata.)

use sinew::config::{InboundConfig, LbPolicy, MeshConfig};
use sinew::error::ConfigError;
use sinew::retry::RetryConfig;

fn dropped(field: String, what: &str) -> ConfigError {
    ConfigError::new(
        field,
        format!("{what}; the control plane refuses it rather than drop it on the way to clients"),
    )
}

/// Refuses a mesh the control plane cannot serve whole, naming the first
/// field xDS would lose.
pub(crate) fn check(mesh: &MeshConfig) -> Result<(), ConfigError> {
    for (name, service) in &mesh.services {
        // Authorization travels as RBAC filters on the server Listeners
        // of the service's endpoints (gRFC A41); nothing else inbound does.
        let limits_only = service.inbound.as_ref().map(|i| InboundConfig {
            authorization: Vec::new(),
            ..i.clone()
        });
        if limits_only.is_some_and(|i| i != InboundConfig::default()) {
            return Err(dropped(
                format!("services.{name}.inbound"),
                "xDS carries no inbound limits a client reads, only `authorization` (docs/adr/0011-server-stack.md); \
                 give them to the serving processes, in their own mesh configuration or ServerBuilder::inbound",
            ));
        }
        for (i, route) in service.routes.iter().enumerate() {
            if let Some(retry) = &route.retry {
                check_retry(retry, &format!("services.{name}.routes[{i}].retry"))?;
            }
        }
    }
    for (name, cluster) in &mesh.clusters {
        let at = format!("clusters.{name}");
        if let LbPolicy::RingHash {
            header: Some(_), ..
        }
        | LbPolicy::Maglev { header: Some(_) } = &cluster.lb
        {
            return Err(dropped(
                format!("{at}.lb.header"),
                "xDS carries the hashed header on routes: set `hash_header` on the routes to this cluster instead",
            ));
        }
        for (i, endpoint) in cluster.endpoints.iter().enumerate() {
            if !endpoint.metadata.is_empty() {
                return Err(dropped(
                    format!("{at}.endpoints[{i}].metadata"),
                    "Sinew's discovery client does not read endpoint metadata from xDS yet",
                ));
            }
        }
    }
    Ok(())
}

/// The retry settings Envoy's `RetryPolicy` has no place for must keep
/// their defaults.
fn check_retry(retry: &RetryConfig, at: &str) -> Result<(), ConfigError> {
    let default = RetryConfig::default();
    let client_side = "xDS has no such setting (it is the client's own)";
    let checks = [
        ("budget", retry.budget == default.budget),
        (
            "max_replay_bytes",
            retry.max_replay_bytes == default.max_replay_bytes,
        ),
        (
            "min_attempt_time",
            retry.min_attempt_time == default.min_attempt_time,
        ),
        (
            "assume_idempotent",
            retry.assume_idempotent == default.assume_idempotent,
        ),
        (
            "backoff.jitter",
            retry.backoff.jitter == default.backoff.jitter,
        ),
    ];
    for (field, same) in checks {
        if !same {
            return Err(dropped(format!("{at}.{field}"), client_side));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;
    use sinew::config::MeshConfig;

    fn field(yaml: &str) -> Option<String> {
        let mesh = MeshConfig::from_yaml(yaml).unwrap_or_else(|e| unreachable!("{e}"));
        check(&mesh).err().map(|e| e.field().to_owned())
    }

    #[test]
    fn a_field_xds_would_drop_is_refused_by_name() {
        assert_eq!(field("clusters:\n  c: {}\n"), None);
        // Carried in the resources' `sinew` filter metadata.
        assert_eq!(
            field(
                "services:\n  s: { routes: [{ split: [{ cluster: c }], classifier: mine }] }\nclusters:\n  c: { breaker: { consecutive_failures: 2 }, classifier: mine }\n"
            ),
            None
        );
        assert_eq!(
            field("clusters:\n  c: { lb: { policy: maglev, header: x-user } }\n"),
            Some("clusters.c.lb.header".to_owned())
        );
        assert_eq!(
            field(
                "clusters:\n  c: { endpoints: [{ address: \"127.0.0.1:1\", metadata: { a: b } }] }\n"
            ),
            Some("clusters.c.endpoints[0].metadata".to_owned())
        );
        assert_eq!(
            field(
                "services:\n  s: { routes: [{ split: [{ cluster: c }], retry: { budget: { ratio: 0.5 } } }] }\nclusters:\n  c: {}\n"
            ),
            Some("services.s.routes[0].retry.budget".to_owned())
        );
        assert_eq!(
            field(
                "services:\n  s: { routes: [{ split: [{ cluster: c }], retry: { assume_idempotent: true } }] }\nclusters:\n  c: {}\n"
            ),
            Some("services.s.routes[0].retry.assume_idempotent".to_owned())
        );
        assert_eq!(
            field("services:\n  s: { inbound: { load_shed: true } }\n"),
            Some("services.s.inbound".to_owned())
        );
        assert_eq!(
            field(
                "services:\n  s: { inbound: { authorization: [{ name: p, action: allow, rules: [{}] }] } }\n"
            ),
            None,
            "authorization travels as RBAC filters"
        );
        assert_eq!(
            field(
                "services:\n  s: { inbound: { mtls: strict, authorization: [{ name: p, action: allow, rules: [{}] }] } }\n"
            ),
            Some("services.s.inbound".to_owned())
        );
    }
}
