//! RBAC filters on a server Listener: each supported field evaluated as
//! gRPC evaluates it, each unsupported one refused by name.

use super::super::server_listener::server_listener;
use super::*;
use crate::authz::{CompiledPolicies, RequestView};
use envoy_types::pb::envoy::config::core::v3::{
    Address, SocketAddress, TypedExtensionConfig, address,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::rbac::v3::{permission, principal, rbac::AuditLoggingOptions};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager::RouteSpecifier, http_filter,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{MetadataMatcher, RegexMatcher};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use http::{HeaderMap, Method};
use prost::Message;
use std::collections::HashMap;

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";

fn http_filter(name: &str, type_url: &str, value: Vec<u8>) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: type_url.to_owned(),
            value,
        })),
        ..HttpFilter::default()
    }
}

fn listener_with(hcm: HttpConnectionManager) -> Listener {
    Listener {
        name: "grpc/server?xds.resource.listening_address=127.0.0.1:50051".to_owned(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".to_owned(),
                ..SocketAddress::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "hcm".to_owned(),
                config_type: Some(filter::ConfigType::TypedConfig(Any {
                    type_url: HCM.to_owned(),
                    value: hcm.encode_to_vec(),
                })),
            }],
            ..FilterChain::default()
        }],
        ..Listener::default()
    }
}

fn hcm_of(filters: &[Rbac]) -> HttpConnectionManager {
    let mut http_filters: Vec<HttpFilter> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| http_filter(&format!("rbac{i}"), RBAC, f.encode_to_vec()))
        .collect();
    http_filters.push(http_filter("router", ROUTER, Vec::new()));
    HttpConnectionManager {
        http_filters,
        ..HttpConnectionManager::default()
    }
}

fn translate(filters: &[Rbac]) -> Result<Arc<CompiledPolicies>, Invalid> {
    server_listener(&listener_with(hcm_of(filters))).map(|s| s.authorization)
}

fn filter(action: Action, policies: Vec<(&str, Policy)>) -> Rbac {
    Rbac {
        rules: Some(Rules {
            action: action as i32,
            policies: policies
                .into_iter()
                .map(|(n, p)| (n.to_owned(), p))
                .collect(),
            audit_logging_options: None,
        }),
        ..Rbac::default()
    }
}

fn policy(permissions: Vec<PbPermission>, principals: Vec<PbPrincipal>) -> Policy {
    Policy {
        permissions,
        principals,
        ..Policy::default()
    }
}

fn perm(rule: Rule) -> PbPermission {
    PbPermission { rule: Some(rule) }
}

fn id(identifier: Identifier) -> PbPrincipal {
    PbPrincipal {
        identifier: Some(identifier),
    }
}

fn any_perm() -> PbPermission {
    perm(Rule::Any(true))
}

fn any_id() -> PbPrincipal {
    id(Identifier::Any(true))
}

fn exact(v: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(v.to_owned())),
        ..StringMatcher::default()
    }
}

fn pattern(p: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

fn cidr_of(address_prefix: &str, len: u32) -> CidrRange {
    CidrRange {
        address_prefix: address_prefix.to_owned(),
        prefix_len: Some(UInt32Value { value: len }),
    }
}

fn header_matcher(name: &str, spec: HeaderMatchSpecifier, invert_match: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(spec),
        invert_match,
        ..HeaderMatcher::default()
    }
}

fn url_path(s: StringMatcher) -> PathMatcher {
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(s)),
    }
}

/// A request, to evaluate policies against.
struct Call {
    method: Method,
    path: &'static str,
    headers: HeaderMap,
    peer: Option<&'static str>,
    source: std::net::SocketAddr,
    destination: std::net::SocketAddr,
}

fn call() -> Call {
    Call {
        method: Method::POST,
        path: "/pkg.Echo/Say",
        headers: HeaderMap::new(),
        peer: Some("spiffe://example.org/ns/shop/sa/cart"),
        source: "10.1.2.3:40000".parse().unwrap_or_else(|_| unreachable!()),
        destination: "127.0.0.1:50051".parse().unwrap_or_else(|_| unreachable!()),
    }
}

/// As the server stack decides: every group must let the call through.
fn allowed(policies: &CompiledPolicies, c: &Call) -> bool {
    let view = RequestView {
        method: &c.method,
        path: c.path,
        headers: &c.headers,
        peer: c.peer,
        source: Some(c.source),
        destination: Some(c.destination),
    };
    policies.groups.iter().all(|g| {
        let hit = g
            .policies
            .iter()
            .any(|p| p.permission.matches(&view) && p.principal.matches(&view));
        match g.action {
            PolicyAction::Allow => hit,
            PolicyAction::Deny => !hit,
        }
    })
}

fn ok<T>(r: Result<T, Invalid>) -> T {
    r.unwrap_or_else(|e| unreachable!("{e}"))
}

/// Whether an ALLOW filter of one policy with this permission (and any
/// principal) lets `c` through.
fn permits(p: PbPermission, c: &Call) -> bool {
    let policies = ok(translate(&[filter(
        Action::Allow,
        vec![("p", policy(vec![p], vec![any_id()]))],
    )]));
    allowed(&policies, c)
}

/// Same, for a principal.
fn admits(p: PbPrincipal, c: &Call) -> bool {
    let policies = ok(translate(&[filter(
        Action::Allow,
        vec![("p", policy(vec![any_perm()], vec![p]))],
    )]));
    allowed(&policies, c)
}

#[test]
fn filters_without_rules_or_logging_only_do_nothing_and_shadow_rules_are_not_evaluated() {
    let none = ok(translate(&[Rbac::default()]));
    assert!(none.groups.is_empty());
    let log = filter(
        Action::Log,
        vec![("p", policy(vec![any_perm()], vec![any_id()]))],
    );
    assert!(ok(translate(&[log])).groups.is_empty());
    let shadow = Rbac {
        shadow_rules: filter(
            Action::Deny,
            vec![("p", policy(vec![any_perm()], vec![any_id()]))],
        )
        .rules,
        ..Rbac::default()
    };
    assert!(ok(translate(&[shadow])).groups.is_empty());
    // No RBAC filter: policies in use, and none (open).
    assert!(ok(translate(&[])).groups.is_empty());
}

#[test]
fn filters_are_groups_in_order_and_a_deny_wins() {
    let deny = filter(
        Action::Deny,
        vec![(
            "no-admin",
            policy(
                vec![perm(Rule::UrlPath(url_path(pattern(
                    MatchPattern::Prefix("/admin.".to_owned()),
                    false,
                ))))],
                vec![any_id()],
            ),
        )],
    );
    let allow = filter(
        Action::Allow,
        vec![("all", policy(vec![any_perm()], vec![any_id()]))],
    );
    let policies = ok(translate(&[deny, allow]));
    assert_eq!(policies.groups.len(), 2);
    assert_eq!(policies.groups[0].action, PolicyAction::Deny);
    assert_eq!(&*policies.groups[0].policies[0].name, "no-admin");
    let mut c = call();
    assert!(allowed(&policies, &c));
    c.path = "/admin.Admin/Drop";
    assert!(!allowed(&policies, &c));
    // An ALLOW filter with no policies refuses everything.
    let empty = ok(translate(&[filter(Action::Allow, vec![])]));
    assert!(!allowed(&empty, &call()));
    // Policies are sorted by name; audit logging options mark them.
    let mut audited = filter(
        Action::Allow,
        vec![
            ("b", policy(vec![any_perm()], vec![any_id()])),
            ("a", policy(vec![any_perm()], vec![any_id()])),
        ],
    );
    if let Some(rules) = &mut audited.rules {
        rules.audit_logging_options = Some(AuditLoggingOptions {
            audit_condition: 3,
            logger_configs: Vec::new(),
        });
    }
    let audited = ok(translate(&[audited]));
    let names: Vec<&str> = audited.groups[0]
        .policies
        .iter()
        .map(|p| &*p.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        audited.groups[0]
            .policies
            .iter()
            .all(|p| p.audit && !p.dry_run)
    );
}

#[test]
#[allow(deprecated)]
fn each_permission_field_matches_as_in_grpc() {
    let c = call();
    assert!(permits(any_perm(), &c));
    // url_path, every string matcher kind, ignore_case.
    for (p, ignore_case, expect) in [
        (MatchPattern::Exact("/pkg.Echo/Say".to_owned()), false, true),
        (MatchPattern::Exact("/PKG.echo/say".to_owned()), true, true),
        (
            MatchPattern::Exact("/PKG.echo/say".to_owned()),
            false,
            false,
        ),
        (MatchPattern::Prefix("/pkg.Echo/".to_owned()), false, true),
        (MatchPattern::Prefix("/PKG.ECHO/".to_owned()), true, true),
        (MatchPattern::Suffix("/Say".to_owned()), false, true),
        (MatchPattern::Suffix("/say".to_owned()), true, true),
        (MatchPattern::Contains("Echo".to_owned()), false, true),
        (MatchPattern::Contains("Other".to_owned()), false, false),
        (
            MatchPattern::SafeRegex(RegexMatcher {
                regex: "/pkg\\.[A-Z][a-z]+/S.y".to_owned(),
                ..RegexMatcher::default()
            }),
            false,
            true,
        ),
        // Anchored: a regex matching part of the path does not match.
        (
            MatchPattern::SafeRegex(RegexMatcher {
                regex: "Echo".to_owned(),
                ..RegexMatcher::default()
            }),
            false,
            false,
        ),
    ] {
        let m = pattern(p.clone(), ignore_case);
        assert_eq!(
            permits(perm(Rule::UrlPath(url_path(m))), &c),
            expect,
            "{p:?}"
        );
    }
    // Headers: each matcher kind, presence, absence, invert, several
    // values joined by commas; `:method` and `:path`.
    let mut h = call();
    h.headers
        .append("x-team", "shop".parse().unwrap_or_else(|_| unreachable!()));
    h.headers
        .append("x-team", "ops".parse().unwrap_or_else(|_| unreachable!()));
    for (name, spec, invert, expect) in [
        (
            "x-team",
            HeaderMatchSpecifier::ExactMatch("shop,ops".to_owned()),
            false,
            true,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::PrefixMatch("shop".to_owned()),
            false,
            true,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::SuffixMatch("ops".to_owned()),
            false,
            true,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::ContainsMatch("p,o".to_owned()),
            false,
            true,
        ),
        (
            "X-Team",
            HeaderMatchSpecifier::StringMatch(exact("shop,ops")),
            false,
            true,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::StringMatch(exact("shop")),
            false,
            false,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::StringMatch(exact("shop")),
            true,
            true,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::SafeRegexMatch(RegexMatcher {
                regex: "shop,.*".to_owned(),
                ..RegexMatcher::default()
            }),
            false,
            true,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::PresentMatch(true),
            false,
            true,
        ),
        (
            "x-team",
            HeaderMatchSpecifier::PresentMatch(false),
            false,
            false,
        ),
        (
            "x-other",
            HeaderMatchSpecifier::PresentMatch(false),
            false,
            true,
        ),
        (
            "x-other",
            HeaderMatchSpecifier::PresentMatch(true),
            true,
            true,
        ),
        (
            "x-other",
            HeaderMatchSpecifier::StringMatch(exact("")),
            false,
            false,
        ),
        (
            ":method",
            HeaderMatchSpecifier::ExactMatch("POST".to_owned()),
            false,
            true,
        ),
        (
            ":method",
            HeaderMatchSpecifier::ExactMatch("GET".to_owned()),
            false,
            false,
        ),
        (
            ":method",
            HeaderMatchSpecifier::PresentMatch(true),
            false,
            true,
        ),
        (
            ":path",
            HeaderMatchSpecifier::PrefixMatch("/pkg.".to_owned()),
            false,
            true,
        ),
        (
            ":path",
            HeaderMatchSpecifier::PrefixMatch("/other.".to_owned()),
            false,
            false,
        ),
    ] {
        let rule = Rule::Header(header_matcher(name, spec.clone(), invert));
        assert_eq!(
            permits(perm(rule), &h),
            expect,
            "{name} {spec:?} invert {invert}"
        );
    }
    // The server's own address and port.
    assert!(permits(
        perm(Rule::DestinationIp(cidr_of("127.0.0.0", 8))),
        &c
    ));
    assert!(!permits(
        perm(Rule::DestinationIp(cidr_of("10.0.0.0", 8))),
        &c
    ));
    assert!(permits(perm(Rule::DestinationPort(50051)), &c));
    assert!(!permits(perm(Rule::DestinationPort(50052)), &c));
    assert!(!permits(perm(Rule::DestinationPort(70000)), &c));
    // Envoy metadata is empty to gRPC: never matches, inverted always.
    let metadata = |invert| {
        perm(Rule::Metadata(MetadataMatcher {
            invert,
            ..MetadataMatcher::default()
        }))
    };
    assert!(!permits(metadata(false), &c));
    assert!(permits(metadata(true), &c));
    // The requested server name is the empty string.
    assert!(permits(perm(Rule::RequestedServerName(exact(""))), &c));
    assert!(!permits(perm(Rule::RequestedServerName(exact("a"))), &c));
    // and, or, not.
    let yes = || perm(Rule::DestinationPort(50051));
    let no = || perm(Rule::DestinationPort(1));
    let set = |rules| permission::Set { rules };
    assert!(permits(perm(Rule::AndRules(set(vec![yes(), yes()]))), &c));
    assert!(!permits(perm(Rule::AndRules(set(vec![yes(), no()]))), &c));
    assert!(permits(perm(Rule::OrRules(set(vec![no(), yes()]))), &c));
    assert!(!permits(perm(Rule::OrRules(set(vec![no()]))), &c));
    assert!(permits(perm(Rule::NotRule(Box::new(no()))), &c));
    assert!(!permits(perm(Rule::NotRule(Box::new(yes()))), &c));
}

#[test]
#[allow(deprecated)]
fn each_principal_field_matches_as_in_grpc() {
    let c = call();
    let mut anonymous = call();
    anonymous.peer = None;
    let authenticated = |name: Option<StringMatcher>| {
        id(Identifier::Authenticated(principal::Authenticated {
            principal_name: name,
        }))
    };
    assert!(admits(any_id(), &anonymous));
    assert!(admits(authenticated(None), &c));
    assert!(!admits(authenticated(None), &anonymous));
    for (m, expect) in [
        (exact("spiffe://example.org/ns/shop/sa/cart"), true),
        (exact("spiffe://example.org/ns/shop/sa/other"), false),
        (
            pattern(
                MatchPattern::Prefix("spiffe://example.org/".to_owned()),
                false,
            ),
            true,
        ),
        (
            pattern(
                MatchPattern::Prefix("spiffe://EXAMPLE.org/".to_owned()),
                true,
            ),
            true,
        ),
        (
            pattern(
                MatchPattern::Prefix("spiffe://other.org/".to_owned()),
                false,
            ),
            false,
        ),
        (
            pattern(
                MatchPattern::SafeRegex(RegexMatcher {
                    regex: "spiffe://example\\.org/ns/[a-z]+/sa/cart".to_owned(),
                    ..RegexMatcher::default()
                }),
                false,
            ),
            true,
        ),
    ] {
        assert_eq!(admits(authenticated(Some(m.clone())), &c), expect, "{m:?}");
        assert!(!admits(authenticated(Some(m)), &anonymous));
    }
    // Unauthenticated callers: not an authenticated one.
    let unauthenticated = || id(Identifier::NotId(Box::new(authenticated(None))));
    assert!(admits(unauthenticated(), &anonymous));
    assert!(!admits(unauthenticated(), &c));
    // The caller's address, by any of the three fields.
    for make in [
        Identifier::SourceIp as fn(CidrRange) -> Identifier,
        Identifier::DirectRemoteIp,
        Identifier::RemoteIp,
    ] {
        assert!(admits(id(make(cidr_of("10.1.0.0", 16))), &c));
        assert!(!admits(id(make(cidr_of("10.2.0.0", 16))), &c));
        assert!(admits(id(make(cidr_of("0.0.0.0", 0))), &c));
    }
    assert!(admits(
        id(Identifier::Header(header_matcher(
            ":path",
            HeaderMatchSpecifier::PrefixMatch("/pkg.Echo/".to_owned()),
            false
        ))),
        &c
    ));
    assert!(admits(
        id(Identifier::UrlPath(url_path(exact("/pkg.Echo/Say")))),
        &c
    ));
    assert!(!admits(
        id(Identifier::Metadata(MetadataMatcher::default())),
        &c
    ));
    let yes = || id(Identifier::SourceIp(cidr_of("10.1.2.3", 32)));
    let no = || id(Identifier::SourceIp(cidr_of("10.1.2.4", 32)));
    let set = |ids| principal::Set { ids };
    assert!(admits(id(Identifier::AndIds(set(vec![yes(), yes()]))), &c));
    assert!(!admits(id(Identifier::AndIds(set(vec![yes(), no()]))), &c));
    assert!(admits(id(Identifier::OrIds(set(vec![no(), yes()]))), &c));
    assert!(!admits(id(Identifier::NotId(Box::new(yes()))), &c));
}

fn refusal(filters: &[Rbac]) -> String {
    match translate(filters) {
        Ok(_) => unreachable!("accepted"),
        Err(e) => e,
    }
}

const AT: &str = "filter_chains[0].filters[0].typed_config.http_filters[0].typed_config";

fn refused_permission(rule: Rule) -> String {
    refusal(&[filter(
        Action::Allow,
        vec![("p", policy(vec![perm(rule)], vec![any_id()]))],
    )])
}

fn refused_principal(identifier: Identifier) -> String {
    refusal(&[filter(
        Action::Allow,
        vec![("p", policy(vec![any_perm()], vec![id(identifier)]))],
    )])
}

#[test]
#[allow(deprecated)]
fn what_grpc_refuses_or_sinew_cannot_evaluate_is_refused_by_name() {
    let at = format!("{AT}.rules.policies[\"p\"]");
    let mut cel = policy(vec![any_perm()], vec![any_id()]);
    cel.condition = Some(Default::default());
    assert_eq!(
        refusal(&[filter(Action::Allow, vec![("p", cel)])]),
        format!("{at}.condition: CEL is not supported")
    );
    let mut checked = policy(vec![any_perm()], vec![any_id()]);
    checked.checked_condition = Some(Default::default());
    assert_eq!(
        refusal(&[filter(Action::Allow, vec![("p", checked)])]),
        format!("{at}.checked_condition: CEL is not supported")
    );
    let header = |name: &str| {
        Rule::Header(header_matcher(
            name,
            HeaderMatchSpecifier::PresentMatch(true),
            false,
        ))
    };
    for name in [":scheme", "grpc-timeout", ":authority", "host", ":status"] {
        let e = refused_permission(header(name));
        assert!(
            e.starts_with(&format!("{at}.permissions[0].header.name: ")),
            "{e}"
        );
    }
    // `:path` includes the query for gRPC: only a prefix without `?`
    // means the same to Sinew.
    for spec in [
        HeaderMatchSpecifier::ExactMatch("/pkg.Echo/Say".to_owned()),
        HeaderMatchSpecifier::PrefixMatch("/a?b".to_owned()),
        HeaderMatchSpecifier::SuffixMatch("?debug=1".to_owned()),
    ] {
        let e = refused_permission(Rule::Header(header_matcher(":path", spec, false)));
        assert!(
            e.starts_with(&format!("{at}.permissions[0].header.name: `:path`")),
            "{e}"
        );
    }
    let extension = TypedExtensionConfig::default;
    for (rule, field) in [
        (
            Rule::DestinationPortRange(Default::default()),
            "destination_port_range",
        ),
        (Rule::Matcher(extension()), "matcher"),
        (Rule::UriTemplate(extension()), "uri_template"),
        (
            Rule::SourcedMetadata(Default::default()),
            "sourced_metadata",
        ),
        (
            Rule::Header(header_matcher(
                "x-a",
                HeaderMatchSpecifier::RangeMatch(Default::default()),
                false,
            )),
            "header.range_match",
        ),
        (
            Rule::Header(header_matcher(
                ":method",
                HeaderMatchSpecifier::PrefixMatch("P".to_owned()),
                false,
            )),
            "header.name",
        ),
        (
            Rule::UrlPath(url_path(pattern(
                MatchPattern::SafeRegex(RegexMatcher {
                    regex: "(".to_owned(),
                    ..RegexMatcher::default()
                }),
                false,
            ))),
            "url_path.path.safe_regex.regex",
        ),
        (
            Rule::DestinationIp(cidr_of("10.0.0.0", 33)),
            "destination_ip.prefix_len",
        ),
        (
            Rule::DestinationIp(cidr_of("10.0.0", 8)),
            "destination_ip.address_prefix",
        ),
        (
            Rule::NotRule(Box::new(perm(Rule::Any(false)))),
            "not_rule.any",
        ),
    ] {
        let e = refused_permission(rule);
        assert!(
            e.starts_with(&format!("{at}.permissions[0].{field}: ")),
            "{field}: {e}"
        );
    }
    let mut missing_as_empty =
        header_matcher("x-a", HeaderMatchSpecifier::PresentMatch(true), false);
    missing_as_empty.treat_missing_header_as_empty = true;
    assert!(
        refused_permission(Rule::Header(missing_as_empty)).starts_with(&format!(
            "{at}.permissions[0].header.treat_missing_header_as_empty: "
        ))
    );
    for (identifier, field) in [
        (Identifier::FilterState(Default::default()), "filter_state"),
        (
            Identifier::SourcedMetadata(Default::default()),
            "sourced_metadata",
        ),
        (Identifier::Custom(extension()), "custom"),
        (
            Identifier::Header(header_matcher(
                ":method",
                HeaderMatchSpecifier::ExactMatch("POST".to_owned()),
                false,
            )),
            "header.name",
        ),
        (
            Identifier::Authenticated(principal::Authenticated {
                principal_name: Some(StringMatcher::default()),
            }),
            "authenticated.principal_name.match_pattern",
        ),
        (
            Identifier::AndIds(principal::Set {
                ids: vec![id(Identifier::Header(header_matcher(
                    "grpc-x",
                    HeaderMatchSpecifier::PresentMatch(true),
                    false,
                )))],
            }),
            "and_ids.ids[0].header.name",
        ),
    ] {
        let e = refused_principal(identifier);
        assert!(
            e.starts_with(&format!("{at}.principals[0].{field}: ")),
            "{field}: {e}"
        );
    }
    let with_matcher = Rbac {
        matcher: Some(Default::default()),
        ..Rbac::default()
    };
    assert!(refusal(&[with_matcher]).starts_with(&format!("{AT}.matcher: ")));
}

#[test]
fn the_connection_manager_must_let_rbac_see_the_peer_and_route_last() {
    let rbac = filter(
        Action::Allow,
        vec![("p", policy(vec![any_perm()], vec![any_id()]))],
    );
    let hcm_at = "filter_chains[0].filters[0].typed_config";
    // The caller's address may not come from x-forwarded-for.
    let mut xff = hcm_of(std::slice::from_ref(&rbac));
    xff.xff_num_trusted_hops = 1;
    assert!(
        server_listener(&listener_with(xff))
            .is_err_and(|e| e.starts_with(&format!("{hcm_at}.xff_num_trusted_hops: ")))
    );
    let mut detection = hcm_of(std::slice::from_ref(&rbac));
    detection.original_ip_detection_extensions = vec![TypedExtensionConfig::default()];
    assert!(
        server_listener(&listener_with(detection))
            .is_err_and(|e| e.starts_with(&format!("{hcm_at}.original_ip_detection_extensions: ")))
    );
    // The router last.
    let mut early = hcm_of(std::slice::from_ref(&rbac));
    early.http_filters.reverse();
    assert_eq!(
        server_listener(&listener_with(early)).map(|s| s.mtls),
        Err(format!(
            "{hcm_at}.http_filters[0]: the router must be the last filter (gRFC A39)"
        ))
    );
    let mut unrouted = hcm_of(std::slice::from_ref(&rbac));
    unrouted.http_filters.pop();
    assert_eq!(
        server_listener(&listener_with(unrouted)).map(|s| s.mtls),
        Err(format!(
            "{hcm_at}.http_filters: no router filter last (gRFC A39)"
        ))
    );
    let mut twins = hcm_of(&[rbac.clone(), rbac.clone()]);
    twins.http_filters[1].name = "rbac0".to_owned();
    assert_eq!(
        server_listener(&listener_with(twins)).map(|s| s.mtls),
        Err(format!(
            "{hcm_at}.http_filters[1].name: `rbac0` names two filters"
        ))
    );
    // A per-route override is not applied, so refused.
    let mut overridden = hcm_of(std::slice::from_ref(&rbac));
    overridden.route_specifier = Some(RouteSpecifier::RouteConfig(RouteConfiguration {
        virtual_hosts: vec![VirtualHost {
            typed_per_filter_config: HashMap::from([(
                "rbac0".to_owned(),
                Any {
                    type_url:
                        "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
                            .to_owned(),
                    value: Vec::new(),
                },
            )]),
            ..VirtualHost::default()
        }],
        ..RouteConfiguration::default()
    }));
    assert_eq!(
        server_listener(&listener_with(overridden)).map(|s| s.mtls),
        Err(format!(
            "{hcm_at}.route_config.virtual_hosts[0].typed_per_filter_config[\"rbac0\"]: per-route RBAC overrides are not supported"
        ))
    );
    // Chains that disagree on their policies.
    let mut two = listener_with(hcm_of(std::slice::from_ref(&rbac)));
    let mut other = two.filter_chains[0].clone();
    other.filters = listener_with(hcm_of(&[])).filter_chains[0].filters.clone();
    two.filter_chains.push(other);
    assert_eq!(
        server_listener(&two).map(|s| s.mtls),
        Err("filter_chains[1].filters: RBAC filters other than filter_chains[0]'s; Sinew applies one set of policies per listening address".to_owned())
    );
}

#[test]
fn a_clients_listener_may_not_take_the_callers_address_from_headers_either() {
    use envoy_types::pb::envoy::config::listener::v3::ApiListener;
    let client = |hcm: HttpConnectionManager| Listener {
        name: "svc".to_owned(),
        api_listener: Some(ApiListener {
            api_listener: Some(Any {
                type_url: HCM.to_owned(),
                value: hcm.encode_to_vec(),
            }),
        }),
        ..Listener::default()
    };
    let mut xff = hcm_of(&[]);
    xff.xff_num_trusted_hops = 2;
    assert_eq!(
        super::super::listener::listener(client(xff)).map(|_| ()),
        Err("api_listener.api_listener.xff_num_trusted_hops: must be 0".to_owned())
    );
    let mut detection = hcm_of(&[]);
    detection.original_ip_detection_extensions = vec![TypedExtensionConfig::default()];
    assert_eq!(
        super::super::listener::listener(client(detection)).map(|_| ()),
        Err("api_listener.api_listener.original_ip_detection_extensions: must be empty".to_owned())
    );
}
