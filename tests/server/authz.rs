//! Authorization on `mesh.serve` and behind tonic, over real sockets and
//! real mutual TLS: the allow/deny matrix (each matcher, DENY over ALLOW,
//! default deny), callers without a certificate (permissive) and from
//! another trust domain the server trusts, dry-run policies, every
//! refused request kept from the handler, gRPC `PERMISSION_DENIED`, and
//! policies following the mesh's configuration live.

use super::*;
use crate::certs::{Ca, Leaf};
use crate::mtls_support::{CART, REVIEWS, TD, mtls_config};
use sinew::mesh::{PeerIdentity, RawCodec};
use sinew::tls::{Identity, TrustBundle, TrustDomain};

const OTHER_TD: &str = "other.org";
const WEB: &str = "spiffe://example.org/ns/shop/sa/web";
const TOOL: &str = "spiffe://example.org/ns/ops/sa/tool";
const PARTNER: &str = "spiffe://other.org/ns/shop/sa/cart";

/// Two CAs, one per trust domain, and a bundle trusting both.
struct Domains {
    ca: Ca,
    other: Ca,
    bundle: TrustBundle,
}

fn domains() -> Domains {
    let ca = Ca::root("example.org root");
    let other = Ca::root("other.org root");
    let mut bundle = ca.bundle(TD);
    let td = TrustDomain::new(OTHER_TD).unwrap();
    bundle
        .add_roots(&td, other.bundle(OTHER_TD).roots(&td).to_vec())
        .unwrap();
    Domains { ca, other, bundle }
}

impl Domains {
    /// An identity for `id`, issued by its trust domain's CA, trusting both.
    fn identity(&self, id: &str) -> Identity {
        let ca = if id.starts_with("spiffe://other.org/") {
            &self.other
        } else {
            &self.ca
        };
        let issued = ca.issue(&Leaf::svid(id));
        let identity = Identity::new();
        identity
            .set(issued.chain.clone(), issued.key(), self.bundle.clone())
            .unwrap();
        identity
    }

    async fn mesh(&self, id: &str, config: MeshConfig) -> Mesh {
        Mesh::builder()
            .identity(self.identity(id))
            .config(config)
            .build()
            .await
            .unwrap()
    }
}

/// `method path` through `mesh`'s client with `headers`: the status and
/// the body.
async fn call(mesh: &Mesh, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://reviews{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within(
        "a response",
        mesh.http_client("reviews")
            .oneshot(request.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    (status, support::body_text(response.into_body()).await)
}

/// The same in plaintext, without a certificate, straight to `addr`.
async fn call_plain(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within(
        "a plaintext response",
        support::client::<Empty<Bytes>>().request(request.body(Empty::new()).unwrap()),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    (status, support::body_text(response.into_body()).await)
}

/// (caller, method, path, headers, status)
type Case<'a> = (
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
);

/// The matrix's policies, permissive so that plaintext callers come in.
const MATRIX: &str = r#"{ mtls: permissive, authorization: [
  { name: no-delete, action: deny, rules: [{ methods: [DELETE] }] },
  { name: no-legacy, action: deny, rules: [{ headers: [{ name: x-legacy, present: true }] }] },
  { name: cart-only, action: allow, rules: [{ principals: [{ id: "spiffe://example.org/ns/shop/sa/cart" }], paths: [{ exact: /cart }] }] },
  { name: shop, action: allow, rules: [{ principals: [{ prefix: "spiffe://example.org/ns/shop/" }], paths: [{ prefix: /shop/ }] }] },
  { name: partners, action: allow, rules: [{ principals: [{ trust_domain: other.org }], paths: [{ regex: "/partner/[a-z]+" }] }] },
  { name: any-peer, action: allow, rules: [{ principals: [authenticated], paths: [{ exact: /authenticated }] }] },
  { name: public, action: allow, rules: [{ principals: [unauthenticated], methods: [GET], paths: [{ exact: /public }] }] },
  { name: loopback, action: allow, rules: [{ source_ips: ["127.0.0.0/8", "::1"], paths: [{ prefix: /local/ }] }] },
  { name: ten, action: allow, rules: [{ source_ips: ["10.0.0.0/8"], paths: [{ prefix: /ten/ }] }] },
  { name: keyed, action: allow, rules: [{ headers: [{ name: x-key, exact: sesame }] }] }
] }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_deny_matrix_over_mtls_and_plaintext() {
    let d = domains();
    let (listener, addr) = listener().await;
    let config = mtls_config(addr, "http1", MATRIX);
    let server_mesh = d.mesh(REVIEWS, config.clone()).await;
    let (app, reached) = crate::mtls_support::recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let mut callers = Vec::new();
    for id in [CART, WEB, TOOL, PARTNER] {
        callers.push((id, d.mesh(id, config.clone()).await));
    }
    let caller = |id: &str| &callers.iter().find(|(c, _)| *c == id).unwrap().1;
    let anonymous = None;

    let cases: &[Case<'_>] = &[
        // id
        (Some(CART), "GET", "/cart", &[], 200),
        (Some(WEB), "GET", "/cart", &[], 403),
        // DENY over ALLOW
        (Some(CART), "DELETE", "/cart", &[], 403),
        (Some(CART), "GET", "/cart", &[("x-legacy", "1")], 403),
        // prefix
        (Some(WEB), "GET", "/shop/items", &[], 200),
        (Some(TOOL), "GET", "/shop/items", &[], 403),
        // trust domain, path regex
        (Some(PARTNER), "GET", "/partner/abc", &[], 200),
        (Some(PARTNER), "GET", "/partner/ABC", &[], 403),
        (Some(CART), "GET", "/partner/abc", &[], 403),
        // the other trust domain's caller gets nothing else
        (Some(PARTNER), "GET", "/shop/items", &[], 403),
        (Some(PARTNER), "GET", "/cart", &[], 403),
        // authenticated
        (Some(TOOL), "GET", "/authenticated", &[], 200),
        (anonymous, "GET", "/authenticated", &[], 403),
        // unauthenticated, method
        (anonymous, "GET", "/public", &[], 200),
        (anonymous, "POST", "/public", &[], 403),
        (Some(CART), "GET", "/public", &[], 403),
        // source ranges
        (anonymous, "GET", "/local/x", &[], 200),
        (Some(TOOL), "GET", "/local/x", &[], 200),
        (anonymous, "GET", "/ten/x", &[], 403),
        // header
        (anonymous, "PUT", "/anything", &[("x-key", "sesame")], 200),
        (anonymous, "PUT", "/anything", &[("x-key", "sesame!")], 403),
        (
            anonymous,
            "PUT",
            "/anything",
            &[("x-key", "sesame"), ("x-legacy", "1")],
            403,
        ),
        // default deny
        (anonymous, "GET", "/nothing", &[], 403),
        (Some(CART), "GET", "/nothing", &[], 403),
    ];
    let mut allowed = 0;
    let mut refused = 0;
    for &(who, method, path, headers, want) in cases {
        let (status, body) = match who {
            Some(id) => call(caller(id), method, path, headers).await,
            None => call_plain(addr, method, path, headers).await,
        };
        assert_eq!(status, want, "{who:?} {method} {path} {headers:?}: {body}");
        if want == 200 {
            allowed += 1;
            assert_eq!(body, who.unwrap_or("-"), "the handler saw the caller");
        } else {
            refused += 1;
            assert_eq!(body, "", "a refusal says nothing of the policy");
        }
    }
    assert!(refused > 0 && allowed > 0);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        allowed,
        "no refused request reached the handler"
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unauthorized_request_is_refused_and_none_reaches_the_handler() {
    let d = domains();
    let (listener, addr) = listener().await;
    let config = mtls_config(
        addr,
        "http2",
        r#"{ authorization: [{ name: cart-only, action: allow, rules: [{ principals: [{ id: "spiffe://example.org/ns/shop/sa/cart" }] }] }] }"#,
    );
    let server_mesh = d.mesh(REVIEWS, config.clone()).await;
    let (app, reached) = crate::mtls_support::recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let intruders = [
        d.mesh(WEB, config.clone()).await,
        d.mesh(PARTNER, config.clone()).await,
    ];
    let cart = d.mesh(CART, config).await;
    let mut refused = 0;
    for i in 0..100 {
        let (status, body) = call(&intruders[i % 2], "GET", "/", &[]).await;
        assert_eq!((status, body.as_str()), (403, ""), "request {i}");
        refused += 1;
    }
    assert_eq!(refused, 100);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "none reached the handler"
    );
    assert_eq!(call(&cart, "GET", "/", &[]).await, (200, CART.to_owned()));
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_policies_are_counted_not_enforced() {
    let recorded = recorded();
    let d = domains();
    let (listener, addr) = listener().await;
    let config = mtls_config(
        addr,
        "http1",
        r#"{ authorization: [
          { name: trial-no-cart, action: deny, dry_run: true, audit: true, rules: [{ principals: [{ id: "spiffe://example.org/ns/shop/sa/cart" }] }] },
          { name: trial-shop, action: allow, rules: [{ principals: [{ prefix: "spiffe://example.org/ns/" }] }] }
        ] }"#,
    );
    let server_mesh = d.mesh(REVIEWS, config.clone()).await;
    let (app, reached) = crate::mtls_support::recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let cart = d.mesh(CART, config.clone()).await;
    let partner = d.mesh(PARTNER, config).await;
    for _ in 0..3 {
        assert_eq!(call(&cart, "GET", "/", &[]).await, (200, CART.to_owned()));
    }
    assert_eq!(call(&partner, "GET", "/", &[]).await.0, 403);
    assert_eq!(
        reached.load(Ordering::SeqCst),
        3,
        "the dry run refused nothing"
    );
    let count = |policy: &str, decision: &str, dry_run: &str| {
        recorded.counter(&[
            ("policy", policy),
            ("decision", decision),
            ("dry_run", dry_run),
        ])
    };
    assert_eq!(
        count("trial-no-cart", "denied", "true"),
        Some(3),
        "would deny"
    );
    assert_eq!(count("trial-no-cart", "denied", "false"), Some(0));
    assert_eq!(count("trial-shop", "allowed", "false"), Some(3));
    assert_eq!(
        count("default deny", "denied", "false").map(|n| n >= 1),
        Some(true)
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_applies_to_the_next_request_and_an_invalid_one_is_refused() {
    let d = domains();
    let (listener, addr) = listener().await;
    let only = |path: &str| {
        mtls_config(
            addr,
            "http1",
            &format!(
                "{{ authorization: [{{ name: only, action: allow, rules: [{{ paths: [{{ exact: {path} }}] }}] }}] }}"
            ),
        )
    };
    let server_mesh = d.mesh(REVIEWS, only("/a")).await;
    let (app, reached) = crate::mtls_support::recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let cart = d.mesh(CART, only("/a")).await;
    assert_eq!(call(&cart, "GET", "/a", &[]).await.0, 200);
    assert_eq!(call(&cart, "GET", "/b", &[]).await.0, 403);

    server_mesh.apply(only("/b")).unwrap();
    assert_eq!(
        call(&cart, "GET", "/b", &[]).await.0,
        200,
        "the next request"
    );
    assert_eq!(call(&cart, "GET", "/a", &[]).await.0, 403);

    let invalid = mtls_config(
        addr,
        "http1",
        r#"{ authorization: [{ name: bad, action: allow, rules: [{ principals: [{ prefix: "example.org/" }] }] }] }"#,
    );
    let err = server_mesh.apply(invalid).unwrap_err();
    assert_eq!(
        err.field(),
        "services.reviews.inbound.authorization[0].rules[0].principals[0].prefix"
    );
    assert_eq!(
        call(&cart, "GET", "/b", &[]).await.0,
        200,
        "the last good policies"
    );
    assert_eq!(call(&cart, "GET", "/a", &[]).await.0, 403);

    // Without policies the service is open again.
    server_mesh.apply(mtls_config(addr, "http1", "")).unwrap();
    assert_eq!(call(&cart, "GET", "/a", &[]).await.0, 200);
    assert_eq!(reached.load(Ordering::SeqCst), 4);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// The builder's policies stay enforced under an inbound block from the
/// configuration that sets only a limit: a block replaces the builder's
/// settings, not its policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builders_policies_stay_under_a_configured_inbound_block() {
    let d = domains();
    let (listener, addr) = listener().await;
    let server_mesh = d.mesh(REVIEWS, mtls_config(addr, "http1", "")).await;
    let inbound = MeshConfig::from_yaml(
        "services:\n  reviews:\n    inbound: { authorization: [{ name: code, action: deny, rules: [{ paths: [{ exact: /secret }] }] }] }\n",
    )
    .unwrap()
    .services["reviews"]
        .inbound
        .clone()
        .unwrap();
    let (app, reached) = crate::mtls_support::recording();
    let server = server_mesh
        .server("reviews")
        .inbound(inbound)
        .serve(listener, app)
        .await
        .unwrap();
    let cart = d.mesh(CART, mtls_config(addr, "http1", "")).await;
    assert_eq!(call(&cart, "GET", "/secret", &[]).await.0, 403);
    server_mesh
        .apply(mtls_config(
            addr,
            "http1",
            "{ rate_limit: { per_second: 1000, burst: 100 } }",
        ))
        .unwrap();
    assert_eq!(
        call(&cart, "GET", "/secret", &[]).await.0,
        403,
        "the builder's policy under the configuration's block"
    );
    assert_eq!(call(&cart, "GET", "/open", &[]).await.0, 200);
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A unary gRPC method answering the caller's SPIFFE ID, counting calls.
#[derive(Clone)]
struct Counted(Arc<AtomicUsize>);

impl tonic::server::NamedService for Counted {
    const NAME: &'static str = "sinew.test.Counted";
}

impl tower::Service<Request<tonic::body::Body>> for Counted {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let method = tower::service_fn(|req: tonic::Request<Bytes>| async move {
                let caller = req
                    .extensions()
                    .get::<PeerIdentity>()
                    .map_or_else(|| "-".to_owned(), |p| p.id().to_string());
                Ok::<_, tonic::Status>(tonic::Response::new(Bytes::from(caller)))
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(method, request)
                .await)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_behind_the_layer_answers_permission_denied() {
    let d = domains();
    let (listener, addr) = listener().await;
    let config = mtls_config(
        addr,
        "http2",
        r#"{ authorization: [
          { name: reads, action: allow, rules: [{ principals: [{ trust_domain: example.org }], paths: [{ prefix: /sinew.test.Counted/Get }] }] },
          { name: no-partner, action: deny, rules: [{ principals: [{ trust_domain: other.org }] }] }
        ] }"#,
    );
    let server_mesh = d.mesh(REVIEWS, config.clone()).await;
    let server = server_mesh.server("reviews");
    let layer = server.layer().unwrap();
    let incoming = server.incoming(listener).unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let app = Counted(reached.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(app)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
    });
    let unary = |mesh: Mesh, method: &'static str| async move {
        let mut grpc = tonic::client::Grpc::new(mesh.grpc_channel("reviews"));
        within("ready", grpc.ready()).await.unwrap();
        within(
            "a gRPC answer",
            grpc.unary(
                tonic::Request::new(Bytes::from_static(b"?")),
                http::uri::PathAndQuery::from_static(method),
                RawCodec,
            ),
        )
        .await
    };
    let cart = d.mesh(CART, config.clone()).await;
    let answer = unary(cart.clone(), "/sinew.test.Counted/Get")
        .await
        .unwrap();
    assert_eq!(answer.into_inner(), Bytes::from(CART));
    let refused = unary(cart, "/sinew.test.Counted/Put").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        refused.message(),
        "permission denied",
        "nothing of the policy"
    );
    let partner = d.mesh(PARTNER, config).await;
    let refused = unary(partner, "/sinew.test.Counted/Get").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(reached.load(Ordering::SeqCst), 1, "only the allowed call");
    let _ = stop.send(());
    within("tonic stops", serving).await.unwrap().unwrap();
}

/// A metrics recorder keeping every counter, installed once for the
/// tests here; each reads the series of its own policy names.
struct Recorded(
    metrics_util::registry::Registry<metrics::Key, metrics_util::registry::AtomicStorage>,
);

impl Recorded {
    fn counter(&self, labels: &[(&str, &str)]) -> Option<u64> {
        self.0
            .get_counter_handles()
            .into_iter()
            .find(|(key, _)| {
                key.name() == "sinew_authz_decisions_total"
                    && labels
                        .iter()
                        .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
            })
            .map(|(_, c)| c.load(Ordering::SeqCst))
    }
}

impl metrics::Recorder for &'static Recorded {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.0
            .get_or_create_counter(key, |c| metrics::Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

fn recorded() -> &'static Recorded {
    static RECORDED: std::sync::OnceLock<&'static Recorded> = std::sync::OnceLock::new();
    RECORDED.get_or_init(|| {
        let recorded: &'static Recorded = Box::leak(Box::new(Recorded(
            metrics_util::registry::Registry::atomic(),
        )));
        metrics::set_global_recorder(recorded).unwrap();
        recorded
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_decisions_and_dry_run_verdicts_are_logged() {
    let logged = captured();
    let d = domains();
    let (listener, addr) = listener().await;
    let config = mtls_config(
        addr,
        "http1",
        r#"{ authorization: [
          { name: audit-trial, action: deny, dry_run: true, rules: [{ paths: [{ exact: /trial }] }] },
          { name: audit-reads, action: allow, audit: true, rules: [{ methods: [GET] }] }
        ] }"#,
    );
    let server_mesh = d.mesh(REVIEWS, config.clone()).await;
    let (app, _) = crate::mtls_support::recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let cart = d.mesh(CART, config).await;
    assert_eq!(call(&cart, "GET", "/audited", &[]).await.0, 200);
    assert_eq!(call(&cart, "POST", "/audited", &[]).await.0, 403);
    assert_eq!(call(&cart, "GET", "/trial", &[]).await.0, 200, "dry run");
    within("shutdown", server.shutdown()).await.unwrap();

    let lines = logged.lock().unwrap().clone();
    let find = |target: &str, parts: &[&str]| {
        lines
            .iter()
            .any(|(t, line)| t == target && parts.iter().all(|p| line.contains(p)))
    };
    for (parts, what) in [
        (
            &[
                "policy=audit-reads",
                "decision=allowed",
                "path=/audited",
                "method=GET",
            ][..],
            "an audited allow",
        ),
        (
            &["policy=default deny", "decision=denied", "method=POST"][..],
            "an audited default deny",
        ),
    ] {
        assert!(
            find("sinew::authz::audit", &[&[CART][..], parts].concat()),
            "{what}: {lines:#?}"
        );
    }
    assert!(
        find("sinew::authz", &["request denied", "policy=default deny"]),
        "the denial at debug: {lines:#?}"
    );
    assert!(
        find(
            "sinew::authz",
            &[
                "dry-run policy would deny",
                "policy=audit-trial",
                "enforced=allowed"
            ]
        ),
        "the dry run's verdict: {lines:#?}"
    );
}

/// Events of the `sinew::authz` targets as `(target, "message k=v ...")`,
/// from a subscriber installed once for the tests here.
type Lines = Arc<std::sync::Mutex<Vec<(String, String)>>>;

static LINES: std::sync::OnceLock<Lines> = std::sync::OnceLock::new();

fn lines() -> &'static Lines {
    LINES.get_or_init(Lines::default)
}

/// Keeps an event of the `sinew::authz` targets (called by the binary's
/// one subscriber, `telemetry::Routed`).
pub fn capture_event(event: &tracing::Event<'_>) {
    if !event.metadata().target().starts_with("sinew::authz") {
        return;
    }
    struct Line(String);
    impl tracing::field::Visit for Line {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0.push_str(&format!("{value:?} "));
            } else {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.push_str(&format!("{}={value} ", field.name()));
        }
    }
    let mut line = Line(String::new());
    event.record(&mut line);
    lines()
        .lock()
        .unwrap()
        .push((event.metadata().target().to_owned(), line.0));
}

fn captured() -> Lines {
    crate::telemetry::install_global();
    lines().clone()
}
