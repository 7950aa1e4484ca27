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
            let mut name = if several {
                format!("{}.rules[{i}]", policy.name)
            } else {
                policy.name.clone()
            };
            // A policy may be named like another's rule (`a.rules[0]`):
            // each keeps its place in the map, under a name made unique.
            let taken = name.clone();
            let mut n = 2;
            while map.contains_key(&name) {
                name = format!("{taken}#{n}");
                n += 1;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::rbac::v3::principal::Identifier;
    use prost::Message;
    use sinew::config::MeshConfig;

    fn decoded(filter: &HttpFilter) -> Rbac {
        match &filter.config_type {
            Some(ConfigType::TypedConfig(any)) => {
                assert_eq!(any.type_url, RBAC);
                Rbac::decode(any.value.as_slice()).unwrap_or_else(|e| unreachable!("{e}"))
            }
            other => unreachable!("{other:?}"),
        }
    }

    fn policies(yaml: &str) -> Vec<AuthorizationPolicy> {
        let mesh = MeshConfig::from_yaml(&format!(
            "services:\n  s:\n    inbound:\n      authorization:\n{yaml}"
        ))
        .unwrap_or_else(|e| unreachable!("{e}"));
        mesh.services["s"]
            .inbound
            .as_ref()
            .map(|i| i.authorization.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_policy_named_like_anothers_rule_is_kept() {
        let filters = filters(
            "s",
            &policies(
                "        - { name: a, action: deny, rules: [{ paths: [{ exact: /x }] }, { paths: [{ exact: /y }] }] }\n        - { name: \"a.rules[0]\", action: deny, rules: [{ paths: [{ exact: /z }] }] }\n",
            ),
        );
        let rules = decoded(&filters[0]).rules.unwrap_or_default();
        let mut names: Vec<&String> = rules.policies.keys().collect();
        names.sort();
        assert_eq!(names, ["a.rules[0]", "a.rules[0]#2", "a.rules[1]"]);
    }

    #[test]
    fn deny_comes_before_allow_and_dry_runs_are_shadows() {
        let filters = filters(
            "s",
            &policies(
                "        - { name: a, action: allow, rules: [{}] }\n        - { name: d, action: deny, rules: [{ paths: [{ exact: /x }] }] }\n        - { name: try, action: deny, dry_run: true, audit: true, rules: [{}, { methods: [GET] }] }\n",
            ),
        );
        let names: Vec<&str> = filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["sinew.authz.s.deny", "sinew.authz.s.allow"]);
        let deny = decoded(&filters[0]);
        let rules = deny.rules.unwrap_or_default();
        assert_eq!(rules.action, Action::Deny as i32);
        assert_eq!(rules.policies.keys().collect::<Vec<_>>(), ["d"]);
        assert!(rules.audit_logging_options.is_none());
        let shadow = deny.shadow_rules.unwrap_or_default();
        let mut shadowed: Vec<&String> = shadow.policies.keys().collect();
        shadowed.sort();
        assert_eq!(shadowed, ["try.rules[0]", "try.rules[1]"]);
        assert_eq!(
            shadow.audit_logging_options.map(|o| o.audit_condition),
            Some(AuditCondition::OnDenyAndAllow as i32)
        );
        let allow = decoded(&filters[1]).rules.unwrap_or_default();
        assert_eq!(allow.action, Action::Allow as i32);
        // `rules: [{}]`: any request, from anyone.
        let any = &allow.policies["a"];
        assert_eq!(any.permissions, [perm(permission::Rule::Any(true))]);
        assert_eq!(any.principals, [id(Identifier::Any(true))]);
        // Only dry runs: the filter is there, and enforces nothing.
        let only_dry =
            filters_of("        - { name: t, action: allow, dry_run: true, rules: [{}] }\n");
        assert_eq!(only_dry.len(), 1);
        assert!(decoded(&only_dry[0]).rules.is_none());
        assert!(filters_of("        []\n").is_empty());
    }

    fn filters_of(yaml: &str) -> Vec<HttpFilter> {
        filters("s", &policies(yaml))
    }

    #[test]
    fn principals_and_request_conditions_map_to_rbac_fields() {
        let allow = decoded(&filters_of(
            "        - name: p\n          action: allow\n          rules:\n            - principals: [{ id: \"spiffe://td/a\" }, { prefix: \"spiffe://td/ns/\" }, { trust_domain: td }, authenticated, unauthenticated]\n              source_ips: [10.0.0.0/8, \"fd00::1\"]\n              paths: [{ exact: /a }, { prefix: /b/ }, { regex: \"/c.*\" }]\n              methods: [GET]\n              headers: [{ name: X-Team, exact: shop }, { name: x-p, present: false }]\n",
        )[0])
        .rules
        .unwrap_or_default();
        let policy = &allow.policies["p"];
        let name = |p: MatchPattern| {
            id(Identifier::Authenticated(principal::Authenticated {
                principal_name: Some(string(p)),
            }))
        };
        let callers = any_principal(vec![
            name(MatchPattern::Exact("spiffe://td/a".to_owned())),
            name(MatchPattern::Prefix("spiffe://td/ns/".to_owned())),
            name(MatchPattern::Prefix("spiffe://td/".to_owned())),
            authenticated(None),
            id(Identifier::NotId(Box::new(authenticated(None)))),
        ]);
        let range = |address: &str, value| {
            id(Identifier::DirectRemoteIp(CidrRange {
                address_prefix: address.to_owned(),
                prefix_len: Some(UInt32Value { value }),
            }))
        };
        let sources = any_principal(vec![range("10.0.0.0", 8), range("fd00::1", 128)]);
        assert_eq!(policy.principals, [all_principals(vec![callers, sources])]);
        let path = |p| {
            perm(permission::Rule::UrlPath(PathMatcher {
                rule: Some(path_matcher::Rule::Path(string(p))),
            }))
        };
        let header = |name: &str, spec| perm(permission::Rule::Header(header_matcher(name, spec)));
        assert_eq!(
            policy.permissions,
            [all_permissions(vec![
                any_permission(vec![
                    path(MatchPattern::Exact("/a".to_owned())),
                    path(MatchPattern::Prefix("/b/".to_owned())),
                    path(regex("/c.*")),
                ]),
                any_permission(vec![header(
                    ":method",
                    HeaderMatchSpecifier::StringMatch(string(MatchPattern::Exact(
                        "GET".to_owned()
                    )))
                )]),
                header(
                    "x-team",
                    HeaderMatchSpecifier::StringMatch(string(MatchPattern::Exact(
                        "shop".to_owned()
                    )))
                ),
                header("x-p", HeaderMatchSpecifier::PresentMatch(false)),
            ])]
        );
    }
}
