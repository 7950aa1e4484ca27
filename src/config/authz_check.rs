//! Checking a service's authorization policies, and compiling them into
//! the RBAC-shaped form the server evaluates (see [`crate::authz`]).
//!
//! Each rule of a policy becomes one compiled policy under the policy's
//! name (as Istio turns an AuthorizationPolicy's rules into RBAC
//! policies): a policy matches when any of its rules does, and a group
//! lets a request through when any of its compiled policies does.

use super::snapshot::{PathMatcher, ValueMatcher};
use super::validate::{Fields, checked_header, checked_path};
use super::{AuthorizationPolicy, AuthorizationRule, PolicyAction, PrincipalMatch};
use crate::authz::{
    CompiledPolicies, CompiledPolicy, HeaderCondition, IpRange, Permission, PolicyGroup, Principal,
    StringMatch,
};
use crate::error::ConfigError;
use crate::tls::{SpiffeId, TrustDomain};
use std::collections::HashMap;
use std::sync::Arc;

/// Checks `policies` (the list at `at`, e.g. `authorization`) and
/// compiles them: the deny group first, then the allow group; a group
/// with no policies is left out, so no policies at all is an open
/// service.
pub(crate) fn compile_policies(
    at: &str,
    policies: &[AuthorizationPolicy],
) -> Result<CompiledPolicies, ConfigError> {
    let at = Fields::root(at);
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(policies.len());
    let mut deny = Vec::new();
    let mut allow = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        let at = at.index(i);
        let name = policy.name.trim();
        if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
            return Err(at
                .field("name")
                .error("must be 1 to 253 characters without control characters"));
        }
        if let Some(first) = names.insert(policy.name.as_str(), i) {
            return Err(at
                .field("name")
                .error(format!("duplicate of authorization[{first}].name")));
        }
        if policy.rules.is_empty() {
            return Err(at
                .field("rules")
                .error("must have at least one rule (`[{}]` matches every request)"));
        }
        let shared: Arc<str> = Arc::from(policy.name.as_str());
        let group = match policy.action {
            PolicyAction::Deny => &mut deny,
            PolicyAction::Allow => &mut allow,
        };
        for (r, rule) in policy.rules.iter().enumerate() {
            let (permission, principal) = compile_rule(&at.field("rules").index(r), rule)?;
            group.push(CompiledPolicy {
                name: shared.clone(),
                permission,
                principal,
                dry_run: policy.dry_run,
                audit: policy.audit,
            });
        }
    }
    let mut groups = Vec::with_capacity(2);
    for (action, policies) in [(PolicyAction::Deny, deny), (PolicyAction::Allow, allow)] {
        if !policies.is_empty() {
            groups.push(PolicyGroup { action, policies });
        }
    }
    Ok(CompiledPolicies { groups })
}

/// One rule: what the request is (every set condition, any entry of
/// each list) and who sends it (any principal, from any source range).
fn compile_rule(
    at: &Fields,
    rule: &AuthorizationRule,
) -> Result<(Permission, Principal), ConfigError> {
    let mut permissions = Vec::new();
    if !rule.paths.is_empty() {
        let paths = rule
            .paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                Ok(Permission::Path(path_match(checked_path(
                    &at.field("paths").index(i),
                    path,
                )?)))
            })
            .collect::<Result<_, ConfigError>>()?;
        permissions.push(any_permission(paths));
    }
    if !rule.methods.is_empty() {
        let methods = rule
            .methods
            .iter()
            .enumerate()
            .map(|(i, method)| {
                let at = at.field("methods").index(i);
                let upper = method.to_ascii_uppercase();
                // Methods are case-sensitive: `get` would never match a GET.
                if upper != *method && STANDARD_METHODS.contains(&upper.as_str()) {
                    return Err(at.error(format!(
                        "`{method}` never matches: methods are case-sensitive (`{upper}`)"
                    )));
                }
                method_token(method)
                    .map(Permission::Method)
                    .ok_or_else(|| at.error(format!("`{method}` is not a method")))
            })
            .collect::<Result<_, _>>()?;
        permissions.push(any_permission(methods));
    }
    for (i, header) in rule.headers.iter().enumerate() {
        let at = at.field("headers").index(i);
        // Over HTTP/2 the authority is in the URI, not a `host` header, so
        // a rule on it would hold on one protocol and not the other; the
        // others are the transport's (as gRFC A41 has them).
        let lower = header.name.to_ascii_lowercase();
        if lower == "host" || lower.starts_with("grpc-") || lower.starts_with(':') {
            return Err(at.field("name").error(format!(
                "`{}` cannot be matched by an authorization rule",
                header.name
            )));
        }
        let (name, matcher) = checked_header(&at, header)?;
        permissions.push(Permission::Header(header_condition(name, matcher)));
    }
    let mut principals = Vec::new();
    if !rule.principals.is_empty() {
        let who = rule
            .principals
            .iter()
            .enumerate()
            .map(|(i, p)| principal(&at.field("principals").index(i), p))
            .collect::<Result<_, _>>()?;
        principals.push(any_principal(who));
    }
    if !rule.source_ips.is_empty() {
        let sources = rule
            .source_ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                ip.parse::<IpRange>()
                    .map(Principal::SourceIp)
                    .map_err(|e| at.field("source_ips").index(i).error(e))
            })
            .collect::<Result<_, _>>()?;
        principals.push(any_principal(sources));
    }
    let permission = match permissions.len() {
        0 => Permission::Any,
        1 => permissions.swap_remove(0),
        _ => Permission::And(permissions),
    };
    let principal = match principals.len() {
        0 => Principal::Any,
        1 => principals.swap_remove(0),
        _ => Principal::And(principals),
    };
    Ok((permission, principal))
}

/// `Or` of the list, or its one entry (a level less to evaluate).
fn any_permission(mut list: Vec<Permission>) -> Permission {
    if list.len() == 1 {
        list.swap_remove(0)
    } else {
        Permission::Or(list)
    }
}

fn any_principal(mut list: Vec<Principal>) -> Principal {
    if list.len() == 1 {
        list.swap_remove(0)
    } else {
        Principal::Or(list)
    }
}

/// An HTTP method token (RFC 9110: `tchar`s), taken as written: methods
/// are case-sensitive.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn method_token(method: &str) -> Option<http::Method> {
    let token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return None;
    }
    http::Method::from_bytes(method.as_bytes()).ok()
}

fn principal(at: &Fields, principal: &PrincipalMatch) -> Result<Principal, ConfigError> {
    Ok(match principal {
        PrincipalMatch::Id(id) => {
            SpiffeId::new(id).map_err(|e| at.field("id").error(e.to_string()))?;
            Principal::Authenticated(Some(StringMatch::Exact(id.clone(), false)))
        }
        PrincipalMatch::Prefix(prefix) => {
            if !prefix.starts_with("spiffe://") || prefix.len() <= "spiffe://".len() {
                return Err(at
                    .field("prefix")
                    .error("must start with `spiffe://` and a trust domain"));
            }
            Principal::Authenticated(Some(StringMatch::Prefix(prefix.clone(), false)))
        }
        PrincipalMatch::TrustDomain(domain) => {
            let domain = TrustDomain::new(domain.as_str())
                .map_err(|e| at.field("trust_domain").error(e.to_string()))?;
            Principal::Authenticated(Some(StringMatch::Prefix(
                format!("spiffe://{domain}/"),
                false,
            )))
        }
        PrincipalMatch::Authenticated => Principal::Authenticated(None),
        PrincipalMatch::Unauthenticated => Principal::Not(Box::new(Principal::Authenticated(None))),
    })
}

fn path_match(path: PathMatcher) -> StringMatch {
    match path {
        PathMatcher::Exact(p) => StringMatch::Exact(p, false),
        PathMatcher::Prefix(p) => StringMatch::Prefix(p, false),
        // Anchored by `checked_path`, as the tree's regexes must be.
        PathMatcher::Regex(r) => StringMatch::Regex(r),
    }
}

fn header_condition(name: http::HeaderName, matcher: ValueMatcher) -> HeaderCondition {
    let (value, invert) = match matcher {
        ValueMatcher::Exact(v) => (Some(StringMatch::Exact(v, false)), false),
        ValueMatcher::Prefix(v) => (Some(StringMatch::Prefix(v, false)), false),
        ValueMatcher::Regex(r) => (Some(StringMatch::Regex(r)), false),
        ValueMatcher::Present(present) => (None, !present),
    };
    HeaderCondition {
        name,
        value,
        invert,
    }
}
