//! RBAC HTTP filters (gRFC A41) on a server Listener, into the policies
//! the server stack evaluates.
//!
//! One filter is one [`PolicyGroup`]; the filters of a chain are evaluated
//! in order and a request must get through every one. As gRPC does:
//!
//! - a filter without `rules` does nothing, and neither does one whose
//!   action is `LOG`; `shadow_rules` are not evaluated;
//! - `Policy.condition` and `Policy.checked_condition` (CEL) are refused,
//!   and so is a header matcher on `:scheme` or a `grpc-` header;
//! - `metadata` never matches (its `invert`: always), and
//!   `requested_server_name` is the empty string;
//! - `source_ip`, `direct_remote_ip` and `remote_ip` are all the caller's
//!   address (no PROXY protocol, no `x-forwarded-for`).
//!
//! What Sinew cannot evaluate as gRPC would is refused naming the field
//! rather than evaluated differently: a `:method` matcher other than
//! exact or present, `:authority`/`host` matchers, header range matchers,
//! `destination_port_range`, the generic `matcher` and `uri_template`
//! extensions, `filter_state`, `sourced_metadata`, `custom` principals and
//! the filter's own `matcher` tree.

use super::Invalid;
use crate::authz::{
    CompiledPolicy, HeaderCondition, IpRange, Permission, PolicyGroup, Principal, StringMatch,
};
use crate::config::PolicyAction;
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission as PbPermission, Policy, Principal as PbPrincipal, Rbac as Rules, permission::Rule,
    principal::Identifier, rbac::Action,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, header_matcher::HeaderMatchSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    PathMatcher, StringMatcher, path_matcher, string_matcher::MatchPattern,
};
use std::sync::Arc;

/// The RBAC HTTP filter's type URL.
pub(crate) const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// The policy group of one RBAC filter; `None` when the filter does
/// nothing (no `rules`, or action `LOG`).
pub(crate) fn group(filter: &Rbac) -> Result<Option<PolicyGroup>, Invalid> {
    if filter.matcher.is_some() {
        return Err("matcher: not supported (use rules)".to_owned());
    }
    let Some(rules) = &filter.rules else {
        return Ok(None);
    };
    rules_group(rules).map_err(|e| format!("rules.{e}"))
}

fn rules_group(rules: &Rules) -> Result<Option<PolicyGroup>, Invalid> {
    let action = match Action::try_from(rules.action) {
        Ok(Action::Allow) => PolicyAction::Allow,
        Ok(Action::Deny) => PolicyAction::Deny,
        // gRFC A41: "completely ignored, as if RBAC was not configured".
        Ok(Action::Log) => return Ok(None),
        Err(_) => return Err(format!("action: unknown value {}", rules.action)),
    };
    // Audit logging (gRFC A59): Sinew logs to its own log, whatever
    // loggers are configured.
    let audit = rules
        .audit_logging_options
        .as_ref()
        .is_some_and(|o| o.audit_condition != 0);
    // A map on the wire: sorted by name so that the same filter always
    // gives the same group (and names the same policy in the log).
    let mut named: Vec<(&String, &Policy)> = rules.policies.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let mut policies = Vec::with_capacity(named.len());
    for (name, policy) in named {
        policies
            .push(compiled(name, policy, audit).map_err(|e| format!("policies[\"{name}\"].{e}"))?);
    }
    Ok(Some(PolicyGroup { action, policies }))
}

fn compiled(name: &str, policy: &Policy, audit: bool) -> Result<CompiledPolicy, Invalid> {
    if policy.condition.is_some() {
        return Err("condition: CEL is not supported".to_owned());
    }
    if policy.checked_condition.is_some() {
        return Err("checked_condition: CEL is not supported".to_owned());
    }
    let permission = Permission::Or(
        policy
            .permissions
            .iter()
            .enumerate()
            .map(|(i, p)| permission(p).map_err(|e| format!("permissions[{i}].{e}")))
            .collect::<Result<_, _>>()?,
    );
    let principal = Principal::Or(
        policy
            .principals
            .iter()
            .enumerate()
            .map(|(i, p)| principal(p).map_err(|e| format!("principals[{i}].{e}")))
            .collect::<Result<_, _>>()?,
    );
    Ok(CompiledPolicy {
        name: Arc::from(name),
        permission,
        principal,
        dry_run: false,
        audit,
    })
}

/// Never matches: what gRPC evaluates `metadata` as.
fn never_permission() -> Permission {
    Permission::Not(Box::new(Permission::Any))
}

#[allow(deprecated)]
fn permission(p: &PbPermission) -> Result<Permission, Invalid> {
    let set = |rules: &[PbPermission], field: &str| -> Result<Vec<Permission>, Invalid> {
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| permission(r).map_err(|e| format!("{field}.rules[{i}].{e}")))
            .collect()
    };
    Ok(match &p.rule {
        None => return Err("rule: missing".to_owned()),
        Some(Rule::AndRules(s)) => Permission::And(set(&s.rules, "and_rules")?),
        Some(Rule::OrRules(s)) => Permission::Or(set(&s.rules, "or_rules")?),
        Some(Rule::NotRule(r)) => Permission::Not(Box::new(
            permission(r).map_err(|e| format!("not_rule.{e}"))?,
        )),
        Some(Rule::Any(true)) => Permission::Any,
        Some(Rule::Any(false)) => return Err("any: must be true".to_owned()),
        Some(Rule::Header(h)) => match header(h).map_err(|e| format!("header.{e}"))? {
            Header::Method(m) => Permission::Method(m),
            Header::Path(s) => Permission::Path(s),
            Header::Other(c) => Permission::Header(c),
            Header::Always(true) => Permission::Any,
            Header::Always(false) => never_permission(),
        },
        Some(Rule::UrlPath(m)) => Permission::Path(path(m).map_err(|e| format!("url_path.{e}"))?),
        Some(Rule::DestinationIp(c)) => {
            Permission::DestinationIp(cidr(c).map_err(|e| format!("destination_ip.{e}"))?)
        }
        // A port no connection can have never matches, as in gRPC.
        Some(Rule::DestinationPort(port)) => match u16::try_from(*port) {
            Ok(port) => Permission::DestinationPort(port),
            Err(_) => never_permission(),
        },
        Some(Rule::Metadata(m)) if m.invert => Permission::Any,
        Some(Rule::Metadata(_)) => never_permission(),
        Some(Rule::RequestedServerName(s)) => {
            let empty_matches = string(s)
                .map_err(|e| format!("requested_server_name.{e}"))?
                .matches("");
            if empty_matches {
                Permission::Any
            } else {
                never_permission()
            }
        }
        Some(Rule::DestinationPortRange(_)) => {
            return Err("destination_port_range: not supported".to_owned());
        }
        Some(Rule::Matcher(_)) => return Err("matcher: not supported".to_owned()),
        Some(Rule::UriTemplate(_)) => return Err("uri_template: not supported".to_owned()),
        Some(Rule::SourcedMetadata(_)) => {
            return Err("sourced_metadata: not supported".to_owned());
        }
    })
}

#[allow(deprecated)]
fn principal(p: &PbPrincipal) -> Result<Principal, Invalid> {
    let set = |ids: &[PbPrincipal], field: &str| -> Result<Vec<Principal>, Invalid> {
        ids.iter()
            .enumerate()
            .map(|(i, r)| principal(r).map_err(|e| format!("{field}.ids[{i}].{e}")))
            .collect()
    };
    Ok(match &p.identifier {
        None => return Err("identifier: missing".to_owned()),
        Some(Identifier::AndIds(s)) => Principal::And(set(&s.ids, "and_ids")?),
        Some(Identifier::OrIds(s)) => Principal::Or(set(&s.ids, "or_ids")?),
        Some(Identifier::NotId(r)) => {
            Principal::Not(Box::new(principal(r).map_err(|e| format!("not_id.{e}"))?))
        }
        Some(Identifier::Any(true)) => Principal::Any,
        Some(Identifier::Any(false)) => return Err("any: must be true".to_owned()),
        Some(Identifier::Authenticated(a)) => Principal::Authenticated(match &a.principal_name {
            None => None,
            Some(name) => {
                Some(string(name).map_err(|e| format!("authenticated.principal_name.{e}"))?)
            }
        }),
        Some(Identifier::SourceIp(c)) => {
            Principal::SourceIp(cidr(c).map_err(|e| format!("source_ip.{e}"))?)
        }
        Some(Identifier::DirectRemoteIp(c)) => {
            Principal::SourceIp(cidr(c).map_err(|e| format!("direct_remote_ip.{e}"))?)
        }
        Some(Identifier::RemoteIp(c)) => {
            Principal::SourceIp(cidr(c).map_err(|e| format!("remote_ip.{e}"))?)
        }
        Some(Identifier::Header(h)) => match header(h).map_err(|e| format!("header.{e}"))? {
            Header::Method(_) => {
                return Err(
                    "header.name: `:method` is matched in permissions, not principals".to_owned(),
                );
            }
            Header::Path(s) => Principal::Path(s),
            Header::Other(c) => Principal::Header(c),
            Header::Always(true) => Principal::Any,
            Header::Always(false) => Principal::Not(Box::new(Principal::Any)),
        },
        Some(Identifier::UrlPath(m)) => {
            Principal::Path(path(m).map_err(|e| format!("url_path.{e}"))?)
        }
        Some(Identifier::Metadata(m)) if m.invert => Principal::Any,
        Some(Identifier::Metadata(_)) => Principal::Not(Box::new(Principal::Any)),
        Some(Identifier::FilterState(_)) => return Err("filter_state: not supported".to_owned()),
        Some(Identifier::SourcedMetadata(_)) => {
            return Err("sourced_metadata: not supported".to_owned());
        }
        Some(Identifier::Custom(_)) => return Err("custom: not supported".to_owned()),
    })
}

/// What a header matcher becomes.
enum Header {
    /// `:method` matched exactly.
    Method(http::Method),
    /// `:path` matched.
    Path(StringMatch),
    /// A regular header.
    Other(HeaderCondition),
    /// A condition that is always true or always false (`:method` or
    /// `:path` presence, which every request has).
    Always(bool),
}

// The older header matchers are deprecated in Envoy's API, and control
// planes still send them.
#[allow(deprecated)]
fn header(h: &HeaderMatcher) -> Result<Header, Invalid> {
    let name = h.name.to_ascii_lowercase();
    if name == ":scheme" || name.starts_with("grpc-") {
        return Err(format!(
            "name: `{}` may not be matched (gRFC A41: `:scheme` and `grpc-` headers)",
            h.name
        ));
    }
    if name == ":authority" || name == "host" {
        return Err(format!(
            "name: `{}`: the request's authority is not matched by Sinew's server",
            h.name
        ));
    }
    if h.treat_missing_header_as_empty {
        return Err("treat_missing_header_as_empty: not supported".to_owned());
    }
    // `None`: presence (`Some(false)`: absence).
    let (value, present): (Option<StringMatch>, bool) = match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(v)) => {
            (Some(StringMatch::Exact(v.clone(), false)), true)
        }
        Some(HeaderMatchSpecifier::PrefixMatch(v)) => {
            (Some(StringMatch::Prefix(v.clone(), false)), true)
        }
        Some(HeaderMatchSpecifier::SuffixMatch(v)) => {
            (Some(StringMatch::Suffix(v.clone(), false)), true)
        }
        Some(HeaderMatchSpecifier::ContainsMatch(v)) => {
            (Some(StringMatch::Contains(v.clone(), false)), true)
        }
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => (
            Some(regex(&r.regex).map_err(|e| format!("safe_regex_match.{e}"))?),
            true,
        ),
        Some(HeaderMatchSpecifier::StringMatch(s)) => (
            Some(string(s).map_err(|e| format!("string_match.{e}"))?),
            true,
        ),
        Some(HeaderMatchSpecifier::PresentMatch(p)) => (None, *p),
        Some(HeaderMatchSpecifier::RangeMatch(_)) => {
            return Err("range_match: not supported".to_owned());
        }
        None => return Err("header_match_specifier: missing".to_owned()),
    };
    // `present_match: false` is the absence: presence, inverted.
    let invert = h.invert_match == present;
    match name.as_str() {
        ":method" => match value {
            None => Ok(Header::Always(!invert)),
            Some(StringMatch::Exact(m, false)) if !invert => http::Method::from_bytes(m.as_bytes())
                .map(Header::Method)
                .map_err(|_| format!("exact_match: `{m}` is not a method")),
            Some(_) => Err(
                "name: `:method` is matched exactly (not inverted, case-sensitive) or for presence only"
                    .to_owned(),
            ),
        },
        // gRPC matches `:path` with its query; Sinew's view of the path
        // has none, so only a prefix without `?` means the same to both.
        ":path" => match value {
            None => Ok(Header::Always(!invert)),
            Some(StringMatch::Prefix(p, ignore_case)) if !invert && !p.contains('?') => {
                Ok(Header::Path(StringMatch::Prefix(p, ignore_case)))
            }
            Some(_) if invert => Err("invert_match: not supported on `:path`".to_owned()),
            Some(_) => Err(
                "name: `:path` is matched by a prefix without `?` only (it includes the query; use url_path)"
                    .to_owned(),
            ),
        },
        other if other.starts_with(':') => {
            Err(format!("name: pseudo-header `{}` is not supported", h.name))
        }
        other => {
            let name = http::HeaderName::from_bytes(other.as_bytes())
                .map_err(|_| format!("name: `{}` is not a header name", h.name))?;
            Ok(Header::Other(HeaderCondition {
                name,
                value,
                invert,
            }))
        }
    }
}

fn path(m: &PathMatcher) -> Result<StringMatch, Invalid> {
    match &m.rule {
        Some(path_matcher::Rule::Path(s)) => string(s).map_err(|e| format!("path.{e}")),
        None => Err("rule: missing".to_owned()),
    }
}

fn string(s: &StringMatcher) -> Result<StringMatch, Invalid> {
    let case = s.ignore_case;
    Ok(match &s.match_pattern {
        Some(MatchPattern::Exact(v)) => StringMatch::Exact(v.clone(), case),
        Some(MatchPattern::Prefix(v)) => StringMatch::Prefix(v.clone(), case),
        Some(MatchPattern::Suffix(v)) => StringMatch::Suffix(v.clone(), case),
        Some(MatchPattern::Contains(v)) => StringMatch::Contains(v.clone(), case),
        // Envoy ignores ignore_case on a regex, and so does gRPC.
        Some(MatchPattern::SafeRegex(r)) => {
            regex(&r.regex).map_err(|e| format!("safe_regex.{e}"))?
        }
        Some(MatchPattern::Custom(_)) => return Err("custom: not supported".to_owned()),
        None => return Err("match_pattern: missing".to_owned()),
    })
}

/// Anchored: RE2's full match, as Envoy and gRPC match.
fn regex(pattern: &str) -> Result<StringMatch, Invalid> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map(StringMatch::Regex)
        .map_err(|e| format!("regex: invalid: {e}"))
}

fn cidr(c: &CidrRange) -> Result<IpRange, Invalid> {
    let address: std::net::IpAddr = c.address_prefix.parse().map_err(|_| {
        format!(
            "address_prefix: `{}` is not an IP address",
            c.address_prefix
        )
    })?;
    let len = c.prefix_len.as_ref().map_or(0, |l| l.value);
    u8::try_from(len)
        .ok()
        .and_then(|len| IpRange::new(address, len))
        .ok_or_else(|| format!("prefix_len: {len} is longer than the address"))
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
