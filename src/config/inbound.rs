use crate::deadline::EnforceDeadlineConfig;
use crate::error::{ConfigError, check};
use crate::limit::{AdaptiveLimitConfig, ConcurrencyLimitConfig, RateLimitConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The inbound half of a service: what a process that serves it enforces
/// on the requests it receives (through [`Mesh::server`](crate::mesh::Mesh::server)).
///
/// Each block is the configuration of the layer that enforces it, checked
/// by the same `validate()`, so an error names the field as
/// `services.reviews.inbound.rate_limit.per_second`. Limits that are not
/// set do not apply. The block applies live: a new configuration changes
/// the limits of a running server, and a limit whose settings did not
/// change keeps its state (requests in flight, tokens, learned limit).
///
/// ```
/// use sinew::config::MeshConfig;
///
/// let config = MeshConfig::from_yaml(r#"
/// services:
///   reviews:
///     inbound:
///       deadline: { max: 5s, default: 1s }
///       concurrency_limit: { max_concurrent: 64, max_queue: 16 }
///       rate_limit: { per_second: 500, burst: 50 }
///       connections: { max: 1000, header_read_timeout: 10s }
/// "#).unwrap();
/// let inbound = config.services["reviews"].inbound.as_ref().unwrap();
/// assert_eq!(inbound.connections.max, 1000);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// The callers' deadlines: the longest budget accepted and the one
    /// given to requests that carry none. Callers' deadlines are enforced
    /// whatever this says.
    pub deadline: EnforceDeadlineConfig,
    /// Requests handled at once, with a bounded queue. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<ConcurrencyLimitConfig>,
    /// A token bucket over the service's requests. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
    /// A concurrency limit learned from latency. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_limit: Option<AdaptiveLimitConfig>,
    /// Refuse a request at once when the application's service is not
    /// ready for it (its own backpressure), rather than wait. Default: false.
    pub load_shed: bool,
    /// Connections accepted for the service.
    pub connections: ConnectionsConfig,
    /// Whether callers must present a workload certificate. Default (not
    /// set): `strict` when the mesh has an identity of its own, plaintext
    /// when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsMode>,
    /// Who may call the service, and what: see [`AuthorizationPolicy`](super::AuthorizationPolicy).
    /// Default: none (the service is open).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<super::AuthorizationPolicy>,
}

/// How a served service treats its callers' transport.
///
/// ```
/// use sinew::config::{MeshConfig, MtlsMode};
///
/// let config = MeshConfig::from_yaml(
///     "services:\n  reviews:\n    inbound: { mtls: permissive }\n",
/// ).unwrap();
/// let inbound = config.services["reviews"].inbound.as_ref().unwrap();
/// assert_eq!(inbound.mtls, Some(MtlsMode::Permissive));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MtlsMode {
    /// Mutual TLS only: a caller without a certificate the mesh's trust
    /// bundle vouches for is refused at the handshake.
    Strict,
    /// Mutual TLS, and plaintext too (told apart by the connection's first
    /// byte): for moving a service's callers to mTLS one at a time. A
    /// plaintext caller has no peer identity.
    Permissive,
    /// Plaintext only, even when the mesh has an identity.
    Disabled,
}

/// Connection acceptance of a served service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections open at once; one more is closed as soon as it is
    /// accepted. Default: 10,000.
    pub max: usize,
    /// How long a connection may take to send a complete request head:
    /// the first one after it opens (HTTP/1.1 and HTTP/2), and each next
    /// one on an HTTP/1.1 connection. An HTTP/2 connection is then pinged
    /// at this interval and closed when a ping goes unanswered for as
    /// long; an idle HTTP/2 connection that answers its pings keeps its
    /// place under `max`. Default: 30 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            max: 10_000,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

impl InboundConfig {
    /// Checks the values, naming the field that is wrong (relative to the
    /// block: `rate_limit.per_second`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.deadline.validate()?;
        if let Some(limit) = &self.concurrency_limit {
            limit.validate()?;
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        if let Some(limit) = &self.adaptive_limit {
            limit.validate()?;
        }
        check::at_least("connections.max", self.connections.max, 1)?;
        check::duration(
            "connections.header_read_timeout",
            self.connections.header_read_timeout,
        )?;
        // Without the `authz` feature nothing in this process enforces
        // policies: they are read, and left to the processes that do.
        #[cfg(feature = "authz")]
        super::compile_policies("authorization", &self.authorization)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MeshConfig, Snapshot};

    fn error_of(yaml: &str) -> String {
        let config = MeshConfig::from_yaml(yaml).unwrap_or_else(|e| unreachable!("{e}"));
        Snapshot::build(config, 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn errors_name_the_field_under_the_service() {
        assert_eq!(
            error_of("services:\n  reviews:\n    inbound: { rate_limit: { per_second: 0 } }\n"),
            "services.reviews.inbound.rate_limit.per_second: must be between 0.001 and 1000000000"
        );
        assert_eq!(
            error_of("services:\n  reviews:\n    inbound: { connections: { max: 0 } }\n"),
            "services.reviews.inbound.connections.max: must be at least 1"
        );
        assert_eq!(
            error_of(
                "services:\n  reviews:\n    inbound: { adaptive_limit: { min_limit: 5, max_limit: 4 } }\n"
            ),
            "services.reviews.inbound.adaptive_limit.max_limit: must not be less than min_limit"
        );
        assert_eq!(
            error_of("services:\n  reviews:\n    inbound: { deadline: { max: 0s } }\n"),
            "services.reviews.inbound.deadline.max: must be greater than zero"
        );
        assert_eq!(
            error_of(
                "services:\n  reviews:\n    inbound: { connections: { header_read_timeout: 0s } }\n"
            ),
            "services.reviews.inbound.connections.header_read_timeout: must be greater than zero"
        );
    }

    #[test]
    fn an_unknown_field_is_named() {
        let err = MeshConfig::from_yaml("services:\n  reviews:\n    inbound: { rate: {} }\n")
            .err()
            .map(|e| e.field().to_owned());
        assert_eq!(err.as_deref(), Some("services.reviews.inbound.rate"));
    }

    #[test]
    fn mtls_modes_parse_and_a_wrong_one_is_named() {
        for (text, mode) in [
            ("strict", MtlsMode::Strict),
            ("permissive", MtlsMode::Permissive),
            ("disabled", MtlsMode::Disabled),
        ] {
            let yaml = format!("services:\n  reviews:\n    inbound: {{ mtls: {text} }}\n");
            let config = MeshConfig::from_yaml(&yaml).unwrap_or_else(|e| unreachable!("{e}"));
            let inbound = config.services["reviews"].inbound.as_ref();
            assert_eq!(inbound.and_then(|i| i.mtls), Some(mode));
        }
        let err = MeshConfig::from_yaml("services:\n  reviews:\n    inbound: { mtls: lax }\n")
            .err()
            .map(|e| e.field().to_owned());
        assert_eq!(err.as_deref(), Some("services.reviews.inbound.mtls"));
    }

    #[test]
    fn a_service_may_have_only_its_inbound_half() {
        let config = MeshConfig::from_yaml(
            "services:\n  reviews:\n    inbound: { concurrency_limit: { max_concurrent: 2 } }\n",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let snapshot = Snapshot::build(config, 1).unwrap_or_else(|e| unreachable!("{e}"));
        let inbound = snapshot.service("reviews").and_then(|s| s.inbound());
        assert_eq!(
            inbound.and_then(|i| i.concurrency_limit),
            Some(ConcurrencyLimitConfig {
                max_concurrent: 2,
                max_queue: 1024
            })
        );
        // Without an inbound block a service still needs a route.
        assert_eq!(
            error_of("services:\n  reviews: {}\n"),
            "services.reviews.routes: must have at least one route"
        );
    }
}
