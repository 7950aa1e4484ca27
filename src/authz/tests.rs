//! Unit tests of compiling the mesh file's policies and deciding.

use super::{CompiledPolicies, RequestView};
use crate::config::{AuthorizationPolicy, MeshConfig};
use http::{HeaderMap, Method};
use std::net::SocketAddr;

fn policies_of(yaml: &str) -> Result<CompiledPolicies, String> {
    let list: Vec<AuthorizationPolicy> =
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
    crate::config::compile_policies("authorization", &list).map_err(|e| e.to_string())
}

fn compiled(yaml: &str) -> CompiledPolicies {
    policies_of(yaml).unwrap_or_else(|e| unreachable!("{e}"))
}

struct Req {
    method: Method,
    path: &'static str,
    headers: HeaderMap,
    peer: Option<&'static str>,
    source: Option<SocketAddr>,
}

fn req(method: &str, path: &'static str, peer: Option<&'static str>) -> Req {
    Req {
        method: Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| unreachable!()),
        path,
        headers: HeaderMap::new(),
        peer,
        source: "10.1.2.3:5000".parse().ok(),
    }
}

impl Req {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            path: self.path,
            headers: &self.headers,
            peer: self.peer,
            source: self.source,
            destination: None,
        }
    }
}

/// The decision and the deciding policy's name.
/// The index (by the caller's exact ID) gives the same answers.
fn decide(policies: &CompiledPolicies, r: &Req) -> (bool, String) {
    let d = policies.decide(&r.view());
    let index = super::index::PolicyIndex::new(policies);
    for dry_run in [false, true] {
        let plain = policies.evaluate_for_test(&r.view(), dry_run);
        let indexed = policies.decide_in(&r.view(), dry_run, &index);
        assert_eq!(
            (plain.allowed, plain.at, plain.audit),
            (indexed.allowed, indexed.at, indexed.audit)
        );
    }
    (d.allowed, d.policy_name().to_owned())
}

#[test]
fn the_index_keeps_the_order_of_policies() {
    let p = compiled(
        r#"
- { name: first, action: allow, rules: [{ paths: [{ prefix: /a }] }] }
- { name: second, action: allow, rules: [{ principals: [{ id: "spiffe://example.org/ns/shop/sa/cart" }, { id: "spiffe://example.org/x" }] }] }
- { name: third, action: allow, rules: [{ principals: [authenticated] }] }
- { name: fourth, action: allow, rules: [{ principals: [{ id: "spiffe://example.org/ns/shop/sa/cart" }], source_ips: ["10.0.0.0/8"] }] }
"#,
    );
    assert_eq!(decide(&p, &req("GET", "/b", Some(CART))).1, "second");
    assert_eq!(decide(&p, &req("GET", "/a", Some(CART))).1, "first");
    assert_eq!(decide(&p, &req("GET", "/b", Some(OTHER_TD))).1, "third");
    assert_eq!(decide(&p, &req("GET", "/b", None)).1, "default deny");
}

/// Policies keyed by path (exact, prefix, several prefixes of different
/// lengths) and some not (regex, methods only): the index finds the same
/// earliest match as a full scan (checked by `decide` on every request).
#[test]
fn the_index_by_path_finds_the_earliest_match() {
    let p = compiled(
        r#"
- { name: admin, action: allow, rules: [{ paths: [{ prefix: /admin/ }, { exact: /health }] }] }
- { name: regex, action: allow, rules: [{ paths: [{ regex: "/r/[0-9]+" }] }] }
- { name: short, action: allow, rules: [{ paths: [{ prefix: /a }], methods: [POST] }] }
- { name: any-prefix, action: allow, rules: [{ paths: [{ prefix: / }], methods: [DELETE] }] }
- { name: methods-only, action: allow, rules: [{ methods: [PUT] }] }
- { name: long, action: allow, rules: [{ paths: [{ prefix: /admin/users/ }] }] }
- { name: health-get, action: allow, rules: [{ paths: [{ exact: /health }], methods: [GET] }] }
"#,
    );
    for (method, path, expected) in [
        ("GET", "/admin/users/1", "admin"),
        ("GET", "/health", "admin"),
        ("GET", "/healthz", "default deny"),
        ("GET", "/r/12", "regex"),
        ("POST", "/ab", "short"),
        ("POST", "/admin/x", "admin"),
        ("DELETE", "/zzz", "any-prefix"),
        ("GET", "/adm", "default deny"),
        ("PUT", "/q", "methods-only"),
        ("PUT", "/admin/q", "admin"),
    ] {
        assert_eq!(
            decide(&p, &req(method, path, Some(CART))).1,
            expected,
            "{method} {path}"
        );
    }
}

/// An RBAC ALLOW filter with no policies allows nothing (gRPC, Envoy;
/// Istio's allow-nothing policy): a group without policies is in force.
#[test]
fn an_allow_group_without_policies_allows_nothing() {
    use crate::config::PolicyAction;
    for (action, allowed) in [(PolicyAction::Allow, false), (PolicyAction::Deny, true)] {
        let p = CompiledPolicies {
            groups: vec![super::PolicyGroup {
                action,
                policies: Vec::new(),
            }],
        };
        assert_eq!(
            decide(&p, &req("GET", "/", Some(CART))).0,
            allowed,
            "{action:?}"
        );
    }
}

const CART: &str = "spiffe://example.org/ns/shop/sa/cart";
const OTHER_TD: &str = "spiffe://other.org/ns/shop/sa/cart";

#[test]
fn no_policies_is_open() {
    let p = compiled("[]");
    assert!(p.groups.is_empty());
    assert_eq!(
        decide(&p, &req("GET", "/", None)),
        (true, "no policy".into())
    );
}

#[test]
fn allow_means_default_deny_and_deny_wins() {
    let p = compiled(
        r#"
- name: shop
  action: allow
  rules: [{ principals: [{ trust_domain: example.org }] }]
- name: no-admin
  action: deny
  rules: [{ paths: [{ prefix: /admin/ }] }]
"#,
    );
    // Deny first, then allow.
    assert_eq!(p.groups.len(), 2);
    assert_eq!(p.groups[0].action, crate::config::PolicyAction::Deny);
    assert_eq!(
        decide(&p, &req("GET", "/x", Some(CART))),
        (true, "shop".into())
    );
    assert_eq!(
        decide(&p, &req("GET", "/x", Some(OTHER_TD))),
        (false, "default deny".into())
    );
    assert_eq!(
        decide(&p, &req("GET", "/x", None)),
        (false, "default deny".into())
    );
    assert_eq!(
        decide(&p, &req("GET", "/admin/x", Some(CART))),
        (false, "no-admin".into())
    );
}

#[test]
fn each_matcher() {
    let p = compiled(
        r#"
- name: by-id
  action: allow
  rules: [{ principals: [{ id: "spiffe://example.org/ns/shop/sa/cart" }], paths: [{ exact: /id }] }]
- name: by-prefix
  action: allow
  rules: [{ principals: [{ prefix: "spiffe://example.org/ns/shop/" }], paths: [{ exact: /prefix }] }]
- name: any-peer
  action: allow
  rules: [{ principals: [authenticated], paths: [{ regex: "/re/[0-9]+" }] }]
- name: anonymous
  action: allow
  rules: [{ principals: [unauthenticated], methods: [HEAD] }]
- name: header
  action: allow
  rules: [{ headers: [{ name: x-key, exact: open-sesame }] }]
- name: network
  action: allow
  rules: [{ source_ips: ["10.1.0.0/16"], paths: [{ exact: /net }] }]
"#,
    );
    let cart = Some(CART);
    assert_eq!(decide(&p, &req("GET", "/id", cart)).1, "by-id");
    assert!(!decide(&p, &req("GET", "/id", Some(OTHER_TD))).0);
    assert_eq!(
        decide(
            &p,
            &req("GET", "/prefix", Some("spiffe://example.org/ns/shop/sa/x"))
        )
        .1,
        "by-prefix"
    );
    assert!(
        !decide(
            &p,
            &req("GET", "/prefix", Some("spiffe://example.org/ns/other/sa/x"))
        )
        .0
    );
    assert_eq!(
        decide(&p, &req("GET", "/re/42", Some(OTHER_TD))).1,
        "any-peer"
    );
    assert!(
        !decide(&p, &req("GET", "/re/42x", Some(OTHER_TD))).0,
        "anchored"
    );
    assert!(!decide(&p, &req("GET", "/re/42", None)).0);
    assert_eq!(decide(&p, &req("HEAD", "/any", None)).1, "anonymous");
    assert!(!decide(&p, &req("HEAD", "/any", cart)).0);
    let mut with_key = req("POST", "/any", None);
    with_key
        .headers
        .insert("x-key", http::HeaderValue::from_static("open-sesame"));
    assert_eq!(decide(&p, &with_key).1, "header");
    assert_eq!(decide(&p, &req("GET", "/net", None)).1, "network");
    let mut elsewhere = req("GET", "/net", None);
    elsewhere.source = "10.2.0.1:1".parse().ok();
    assert!(!decide(&p, &elsewhere).0);
}

#[test]
fn dry_run_policies_are_not_enforced() {
    let p = compiled(
        r#"
- name: trial-deny
  action: deny
  dry_run: true
  rules: [{ methods: [DELETE] }]
- name: trial-allow
  action: allow
  dry_run: true
  rules: [{ principals: [authenticated] }]
"#,
    );
    assert!(p.has_dry_run());
    let delete = req("DELETE", "/", None);
    assert_eq!(decide(&p, &delete), (true, "no policy".into()));
    let shadow = p.decide_with_dry_run(&delete.view());
    assert!(!shadow.allowed);
    assert_eq!(shadow.policy_name(), "trial-deny");
    let shadow = p.decide_with_dry_run(&req("GET", "/", None).view());
    assert_eq!(
        (shadow.allowed, shadow.policy_name()),
        (false, "default deny")
    );
}

#[test]
fn audit_follows_the_deciding_policy() {
    let p = compiled(
        r#"
- name: watched
  action: allow
  audit: true
  rules: [{ methods: [GET] }]
"#,
    );
    assert!(p.decide(&req("GET", "/", None).view()).audit);
    // A default deny by a group with an audited policy is audited too.
    assert!(p.decide(&req("PUT", "/", None).view()).audit);
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            "[{ name: a, action: allow, rules: [{}] }, { name: a, action: deny, rules: [{}] }]",
            "authorization[1].name: duplicate of authorization[0].name",
        ),
        (
            "[{ name: '', action: allow, rules: [{}] }]",
            "authorization[0].name: must be 1 to 253 characters without control characters",
        ),
        (
            "[{ name: a, action: allow, rules: [] }]",
            "authorization[0].rules: must have at least one rule (`[{}]` matches every request)",
        ),
        (
            "[{ name: a, action: allow, rules: [{}, { principals: [{ id: 'spiffe://Bad/x' }] }] }]",
            "authorization[0].rules[1].principals[0].id: invalid SPIFFE ID: the trust domain has a character other than a-z, 0-9, '.', '-', '_': 'B'",
        ),
        (
            "[{ name: a, action: allow, rules: [{ principals: [authenticated, { prefix: 'example.org/' }] }] }]",
            "authorization[0].rules[0].principals[1].prefix: must start with `spiffe://` and a trust domain",
        ),
        (
            "[{ name: a, action: allow, rules: [{ principals: [{ trust_domain: 'a:1' }] }] }]",
            "authorization[0].rules[0].principals[0].trust_domain: invalid SPIFFE ID: the trust domain has a character other than a-z, 0-9, '.', '-', '_': ':'",
        ),
        (
            "[{ name: a, action: allow, rules: [{ methods: [GET, 'PO ST'] }] }]",
            "authorization[0].rules[0].methods[1]: `PO ST` is not a method",
        ),
        (
            "[{ name: a, action: deny, rules: [{ methods: [get] }] }]",
            "authorization[0].rules[0].methods[0]: `get` never matches: methods are case-sensitive (`GET`)",
        ),
        (
            "[{ name: a, action: deny, rules: [{ headers: [{ name: Host, exact: admin.example }] }] }]",
            "authorization[0].rules[0].headers[0].name: `Host` cannot be matched by an authorization rule",
        ),
        (
            "[{ name: a, action: allow, rules: [{ source_ips: ['::ffff:10.0.0.0/64'] }] }]",
            "authorization[0].rules[0].source_ips[0]: `::ffff:10.0.0.0/64`: an IPv4-mapped range needs a prefix length of at least 96 (the mapping's)",
        ),
        (
            "[{ name: a, action: allow, rules: [{ source_ips: ['10.0.0.0/40'] }] }]",
            "authorization[0].rules[0].source_ips[0]: `10.0.0.0/40`: the prefix length is longer than the address",
        ),
        (
            "[{ name: a, action: allow, rules: [{ paths: [{ exact: nope }] }] }]",
            "authorization[0].rules[0].paths[0]: must start with '/'",
        ),
        (
            "[{ name: a, action: allow, rules: [{ headers: [{ name: 'x y', exact: v }] }] }]",
            "authorization[0].rules[0].headers[0].name: `x y` is not a valid header name",
        ),
    ];
    for (yaml, error) in cases {
        assert_eq!(policies_of(yaml).err().as_deref(), Some(error), "{yaml}");
    }
}

#[test]
fn snapshot_errors_name_the_service() {
    let config = MeshConfig::from_yaml(
        "services:\n  reviews:\n    inbound:\n      authorization:\n        - { name: a, action: allow, rules: [{}, { principals: [{ prefix: x }] }] }\n",
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let err = crate::config::Snapshot::build(config, 1)
        .err()
        .map(|e| e.field().to_owned());
    assert_eq!(
        err.as_deref(),
        Some("services.reviews.inbound.authorization[0].rules[1].principals[0].prefix")
    );
}
