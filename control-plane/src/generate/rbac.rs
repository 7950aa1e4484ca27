//! A service's authorization policies (`services.<name>.inbound.
//! authorization`) as RBAC HTTP filters (gRFC A41) for the server
//! Listeners of its endpoints: a DENY filter, then an ALLOW filter, each
//! present when the service has enforced policies of that action, so that
//! a deny wins and, once an allow policy is in force, what none allows is
//! refused.
//!
//! - A mesh policy becomes one RBAC policy per rule (`name`, or
//!   `name.rules[i]` when it has several): RBAC's policy is any of its
//!   permissions and any of its principals, a rule is all of its
//!   conditions.
//! - Principals are matched on `authenticated.principal_name` (the
//!   caller's SPIFFE ID, its URI SAN): `id` exactly, `prefix` and
//!   `trust_domain` (`spiffe://<domain>/`) by prefix; `authenticated` is
//!   `authenticated {}`, `unauthenticated` its negation. `source_ips` are
//!   `direct_remote_ip` ranges, paths `url_path`, methods exact `:method`
//!   header matchers, headers header matchers.
//! - Dry-run policies go to the filter's `shadow_rules`, which gRPC does
//!   not evaluate: they are not enforced over xDS.
//! - A filter holding an audited policy asks for audit logging of every
//!   decision (gRFC A59's `audit_condition`), without loggers: each
//!   server logs with its own.

use super::pack;
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as Rules, permission, principal,
    rbac::{Action, AuditLoggingOptions, audit_logging_options::AuditCondition},
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, header_matcher::HeaderMatchSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter::ConfigType,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    PathMatcher, RegexMatcher, StringMatcher, path_matcher, string_matcher::MatchPattern,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use sinew::authz::IpRange;
use sinew::config::{
    AuthorizationPolicy, AuthorizationRule, HeaderMatch, PathMatch, PolicyAction, PrincipalMatch,
};
use std::collections::HashMap;

/// The RBAC filter's type URL.
pub const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// The HTTP filters, before the router, that enforce `service`'s
/// `policies`: none when it has none.
pub(crate) fn filters(service: &str, policies: &[AuthorizationPolicy]) -> Vec<HttpFilter> {
    let mut filters = Vec::new();
    for (action, word) in [(PolicyAction::Deny, "deny"), (PolicyAction::Allow, "allow")] {
        let of = |dry_run: bool| {
            policies
                .iter()
                .filter(move |p| p.action == action && p.dry_run == dry_run)
        };
        let (enforced, dry) = (rules(action, of(false)), rules(action, of(true)));
        if enforced.is_none() && dry.is_none() {
            continue;
        }
        let config = Rbac {
            rules: enforced,
            shadow_rules: dry,
            ..Rbac::default()
        };
        filters.push(HttpFilter {
            name: format!("sinew.authz.{service}.{word}"),
            config_type: Some(ConfigType::TypedConfig(pack(RBAC, &config))),
            ..HttpFilter::default()
        });
    }
    filters
}

fn rules<'a>(
    action: PolicyAction,
    policies: impl Iterator<Item = &'a AuthorizationPolicy>,
) -> Option<Rules> {
    let mut map = HashMap::new();
    let mut audit = false;
    for policy in policies {
        audit |= policy.audit;
        let several = policy.rules.len() > 1;
        for (i, rule) in policy.rules.iter().enumerate() {
            let name = if several {
                format!("{}.rules[{i}]", policy.name)
            } else {
                policy.name.clone()
            };
            map.insert(name, rbac_policy(rule));
        }
    }
    (!map.is_empty()).then(|| Rules {
        action: match action {
            PolicyAction::Allow => Action::Allow,
            PolicyAction::Deny => Action::Deny,
        } as i32,
        policies: map,
        audit_logging_options: audit.then(|| AuditLoggingOptions {
            audit_condition: AuditCondition::OnDenyAndAllow as i32,
            logger_configs: Vec::new(),
        }),
    })
}

fn perm(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

fn id(identifier: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}

/// All of `conditions` (any when there are none).
fn all_permissions(mut conditions: Vec<Permission>) -> Permission {
    match conditions.len() {
        0 => perm(permission::Rule::Any(true)),
        1 => conditions.remove(0),
        _ => perm(permission::Rule::AndRules(permission::Set {
            rules: conditions,
        })),
    }
}

fn any_permission(rules: Vec<Permission>) -> Permission {
    perm(permission::Rule::OrRules(permission::Set { rules }))
}

fn all_principals(mut conditions: Vec<Principal>) -> Principal {
    match conditions.len() {
        0 => id(principal::Identifier::Any(true)),
        1 => conditions.remove(0),
        _ => id(principal::Identifier::AndIds(principal::Set {
            ids: conditions,
        })),
    }
}

fn any_principal(ids: Vec<Principal>) -> Principal {
    id(principal::Identifier::OrIds(principal::Set { ids }))
}

fn rbac_policy(rule: &AuthorizationRule) -> Policy {
    let mut what = Vec::new();
    if !rule.paths.is_empty() {
        what.push(any_permission(
            rule.paths
                .iter()
                .map(|p| perm(permission::Rule::UrlPath(url_path(p))))
                .collect(),
        ));
    }
    if !rule.methods.is_empty() {
        what.push(any_permission(
            rule.methods
                .iter()
                .map(|m| {
                    perm(permission::Rule::Header(header_matcher(
                        ":method",
                        HeaderMatchSpecifier::StringMatch(string(MatchPattern::Exact(m.clone()))),
                    )))
                })
                .collect(),
        ));
    }
    for h in &rule.headers {
        what.push(perm(permission::Rule::Header(header(h))));
    }
    let mut who = Vec::new();
    if !rule.principals.is_empty() {
        who.push(any_principal(rule.principals.iter().map(caller).collect()));
    }
    if !rule.source_ips.is_empty() {
        who.push(any_principal(
            rule.source_ips
                .iter()
                .map(|ip| id(principal::Identifier::DirectRemoteIp(cidr(ip))))
                .collect(),
        ));
    }
    Policy {
        permissions: vec![all_permissions(what)],
        principals: vec![all_principals(who)],
        ..Policy::default()
    }
}

fn string(pattern: MatchPattern) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(pattern),
        ..StringMatcher::default()
    }
}

fn regex(pattern: &str) -> MatchPattern {
    MatchPattern::SafeRegex(RegexMatcher {
        regex: pattern.to_owned(),
        ..RegexMatcher::default()
    })
}

fn url_path(p: &PathMatch) -> PathMatcher {
    let pattern = match p {
        PathMatch { exact: Some(e), .. } => MatchPattern::Exact(e.clone()),
        PathMatch {
            prefix: Some(pre), ..
        } => MatchPattern::Prefix(pre.clone()),
        PathMatch { regex: Some(r), .. } => regex(r),
        // Validation requires one of the three; nothing is any path.
        _ => MatchPattern::Prefix(String::new()),
    };
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(string(pattern))),
    }
}

fn header_matcher(name: &str, spec: HeaderMatchSpecifier) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(spec),
        ..HeaderMatcher::default()
    }
}

fn header(h: &HeaderMatch) -> HeaderMatcher {
    let spec = match h {
        HeaderMatch { exact: Some(e), .. } => {
            HeaderMatchSpecifier::StringMatch(string(MatchPattern::Exact(e.clone())))
        }
        HeaderMatch {
            prefix: Some(p), ..
        } => HeaderMatchSpecifier::StringMatch(string(MatchPattern::Prefix(p.clone()))),
        HeaderMatch { regex: Some(r), .. } => HeaderMatchSpecifier::StringMatch(string(regex(r))),
        HeaderMatch {
            present: Some(p), ..
        } => HeaderMatchSpecifier::PresentMatch(*p),
        _ => HeaderMatchSpecifier::PresentMatch(true),
    };
    header_matcher(&h.name.to_ascii_lowercase(), spec)
}

fn authenticated(name: Option<MatchPattern>) -> Principal {
    id(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: name.map(string),
        },
    ))
}

fn caller(p: &PrincipalMatch) -> Principal {
    match p {
        PrincipalMatch::Id(spiffe) => authenticated(Some(MatchPattern::Exact(spiffe.clone()))),
        PrincipalMatch::Prefix(prefix) => authenticated(Some(MatchPattern::Prefix(prefix.clone()))),
        PrincipalMatch::TrustDomain(domain) => {
            authenticated(Some(MatchPattern::Prefix(format!("spiffe://{domain}/"))))
        }
        PrincipalMatch::Authenticated => authenticated(None),
        PrincipalMatch::Unauthenticated => {
            id(principal::Identifier::NotId(Box::new(authenticated(None))))
        }
    }
}

/// A CIDR range from the mesh file's form; one that does not parse (which
/// validation refuses) is the empty address, which every client refuses.
fn cidr(text: &str) -> CidrRange {
    match text.parse::<IpRange>() {
        Ok(range) => {
            let shown = range.to_string();
            let (address, len) = shown.split_once('/').unwrap_or((shown.as_str(), "0"));
            CidrRange {
                address_prefix: address.to_owned(),
                prefix_len: Some(UInt32Value {
                    value: len.parse().unwrap_or(0),
                }),
            }
        }
        Err(_) => CidrRange::default(),
    }
}
