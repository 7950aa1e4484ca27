//! Authorization policies: who may call a served service, and what.

use super::{HeaderMatch, PathMatch};
use serde::{Deserialize, Serialize};

/// One named authorization policy of a served service
/// (`services.<name>.inbound.authorization`), with the semantics of gRPC's
/// xDS RBAC (gRFC A41) and Istio's AuthorizationPolicy:
///
/// - a request that matches an enforced `deny` policy is refused, whatever
///   else allows it;
/// - once any enforced `allow` policy covers the service, a request that
///   matches none of them is refused (default deny);
/// - a service without enforced policies is open.
///
/// A policy matches a request when any of its rules does. A refused
/// caller gets 403 (gRPC `PERMISSION_DENIED`) and nothing about why; the
/// decision and the policy's name go to the log and the metrics.
///
/// ```
/// use sinew::config::{MeshConfig, PolicyAction, PrincipalMatch};
///
/// let config = MeshConfig::from_yaml(r#"
/// services:
///   reviews:
///     inbound:
///       authorization:
///         - name: shop-reads
///           action: allow
///           rules:
///             - principals: [{ prefix: "spiffe://example.org/ns/shop/" }]
///               methods: [GET]
///               paths: [{ prefix: /reviews/ }]
///         - name: no-legacy
///           action: deny
///           dry_run: true
///           audit: true
///           rules:
///             - principals: [unauthenticated]
///             - source_ips: ["10.9.0.0/16"]
/// "#).unwrap();
/// let policies = &config.services["reviews"].inbound.as_ref().unwrap().authorization;
/// assert_eq!(policies[0].action, PolicyAction::Allow);
/// assert_eq!(policies[1].rules[0].principals, [PrincipalMatch::Unauthenticated]);
/// assert_eq!(
///     policies[0].rules[0].principals,
///     [PrincipalMatch::Prefix("spiffe://example.org/ns/shop/".into())]
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// The policy's name, unique within the service: logs, metrics and
    /// errors name it.
    pub name: String,
    /// What a request that matches the policy gets.
    pub action: PolicyAction,
    /// The policy matches a request when any of these does. At least one:
    /// `rules: [{}]` matches every request.
    pub rules: Vec<AuthorizationRule>,
    /// Evaluate and log the policy's decisions without enforcing them, to
    /// try a policy before it bites. Default: false.
    #[serde(default)]
    pub dry_run: bool,
    /// Log every decision the policy takes part in (allowed and denied),
    /// with the caller, the request and the policy (gRFC A59's spirit).
    /// Default: false.
    #[serde(default)]
    pub audit: bool,
}

/// What a matching request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    /// Allowed (and, once any allow policy is in force, only what such a
    /// policy matches is).
    Allow,
    /// Refused, whatever allows it.
    Deny,
}

/// One rule of a policy: it matches a request when every condition that
/// is set holds. Within a list, any entry will do (`methods: [GET, HEAD]`),
/// except `headers`, which must all match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationRule {
    /// Who is calling. Default: anyone, with or without a certificate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<PrincipalMatch>,
    /// The request path. Default: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathMatch>,
    /// The request method, e.g. `GET`. Default: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Headers that must all match. Default: none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// The caller's address: an IP address or a CIDR range
    /// (`10.0.0.0/8`, `fd00::/8`). Default: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
}

/// Who a rule applies to, by the SPIFFE ID of the caller's certificate.
/// In the mesh file: `{ id: ... }`, `{ prefix: ... }`,
/// `{ trust_domain: ... }`, `authenticated` or `unauthenticated`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PrincipalForm", into = "PrincipalForm")]
pub enum PrincipalMatch {
    /// This SPIFFE ID exactly: `{ id: "spiffe://example.org/ns/shop/sa/cart" }`.
    Id(String),
    /// SPIFFE IDs starting with this: `{ prefix: "spiffe://example.org/ns/shop/" }`.
    Prefix(String),
    /// Every workload of a trust domain: `{ trust_domain: example.org }`.
    TrustDomain(String),
    /// Any caller with a verified certificate: `authenticated`.
    Authenticated,
    /// A caller without one (plaintext, under `mtls: permissive` or
    /// `disabled`): `unauthenticated`.
    Unauthenticated,
}

/// How a principal is written in YAML or JSON.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum PrincipalForm {
    Word(String),
    Map(PrincipalMap),
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PrincipalMap {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_domain: Option<String>,
}

impl TryFrom<PrincipalForm> for PrincipalMatch {
    type Error = String;

    fn try_from(form: PrincipalForm) -> Result<Self, String> {
        match form {
            PrincipalForm::Word(word) => match word.as_str() {
                "authenticated" => Ok(Self::Authenticated),
                "unauthenticated" => Ok(Self::Unauthenticated),
                other => Err(format!(
                    "`{other}`: expected `authenticated`, `unauthenticated`, or a map with one of id, prefix and trust_domain"
                )),
            },
            PrincipalForm::Map(map) => match (map.id, map.prefix, map.trust_domain) {
                (Some(id), None, None) => Ok(Self::Id(id)),
                (None, Some(prefix), None) => Ok(Self::Prefix(prefix)),
                (None, None, Some(domain)) => Ok(Self::TrustDomain(domain)),
                _ => Err("set exactly one of id, prefix and trust_domain".to_owned()),
            },
        }
    }
}

impl From<PrincipalMatch> for PrincipalForm {
    fn from(principal: PrincipalMatch) -> Self {
        let map = PrincipalMap::default();
        match principal {
            PrincipalMatch::Id(id) => Self::Map(PrincipalMap {
                id: Some(id),
                ..map
            }),
            PrincipalMatch::Prefix(prefix) => Self::Map(PrincipalMap {
                prefix: Some(prefix),
                ..map
            }),
            PrincipalMatch::TrustDomain(domain) => Self::Map(PrincipalMap {
                trust_domain: Some(domain),
                ..map
            }),
            PrincipalMatch::Authenticated => Self::Word("authenticated".to_owned()),
            PrincipalMatch::Unauthenticated => Self::Word("unauthenticated".to_owned()),
        }
    }
}
