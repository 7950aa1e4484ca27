use super::*;
use crate::error::ConfigError;
use http::{Method, Request};
use std::time::Duration;

const EXAMPLE: &str = r#"
services:
  reviews:
    routes:
      - match:
          path: { prefix: /api/v2 }
          method: GET
          headers:
            - { name: x-canary, exact: "1" }
        split:
          - { cluster: reviews-v2 }
      - match:
          path: { regex: "/api/[a-z]+/\\d+" }
        split:
          - { cluster: reviews-v1, weight: 90 }
          - { cluster: reviews-v2, weight: 10 }
        timeout: 2s
        retry:
          max_attempts: 4
          min_attempt_time: 20ms
          backoff: { base: 10ms, max: 500ms }
          budget: { ratio: 0.1, min_per_second: 5, window: 5s }
      - split: [{ cluster: reviews-v1 }]
        retry:
          hedge: { delay: 50ms }
clusters:
  reviews-v1:
    lb: { policy: round_robin }
    outlier_detection: { consecutive_5xx: 3, base_ejection_time: 10s }
    endpoints:
      - address: 127.0.0.1:9001
        locality: { region: eu, zone: eu-1a }
      - address: 127.0.0.1:9002
        weight: 3
        priority: 1
        health: draining
        metadata: { version: v1 }
  reviews-v2:
    protocol: http2
    lb: { policy: ring_hash, header: x-user }
    identity: spiffe://example.org/ns/shop/sa/reviews
    thresholds: { max_requests: 100 }
    endpoints: [{ address: "[::1]:9003" }]
"#;

fn snapshot() -> Snapshot {
    MeshConfig::from_yaml(EXAMPLE)
        .and_then(|c| Snapshot::build(c, 7))
        .unwrap_or_else(|e| unreachable!("{e}"))
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap_or_default()
}

#[test]
fn the_example_builds_with_every_policy() {
    let snapshot = snapshot();
    assert_eq!(snapshot.version(), 7);
    let service = snapshot
        .service("reviews")
        .map(Service::routes)
        .unwrap_or_default();
    assert_eq!(service.len(), 3);
    assert_eq!(service[1].timeout(), Some(Duration::from_secs(2)));
    let retry = service[1].retry().cloned().unwrap_or_default();
    assert_eq!(retry.max_attempts, 4);
    assert_eq!(retry.backoff.max, Duration::from_millis(500));
    assert_eq!(retry.budget.window, Duration::from_secs(5));
    let hedge = service[2].retry().and_then(|r| r.hedge);
    assert_eq!(
        hedge.map(|h| (h.delay, h.max_attempts)),
        Some((Duration::from_millis(50), 2))
    );

    let v1 = snapshot
        .cluster("reviews-v1")
        .map(|c| c.endpoints().to_vec())
        .unwrap_or_default();
    assert_eq!(v1.len(), 2);
    assert_eq!(v1[1].weight, 3);
    assert_eq!(v1[1].health, Health::Draining);
    assert_eq!(v1[0].locality.zone, "eu-1a");
    let v2 = snapshot
        .cluster("reviews-v2")
        .map(|c| c.config().clone())
        .unwrap_or_default();
    assert_eq!(v2.protocol, Protocol::Http2);
    assert_eq!(
        v2.lb,
        LbPolicy::RingHash {
            header: Some("x-user".into()),
            min_ring_size: 1024
        }
    );
    assert_eq!(v2.thresholds.max_requests, 100);
    assert_eq!(v2.thresholds.max_pending, 1024, "defaults fill the rest");
}

#[test]
fn routes_match_in_order_on_path_method_and_headers() {
    let snapshot = snapshot();
    let Some(service) = snapshot.service("reviews") else {
        unreachable!("the example has a reviews service")
    };
    let index = |request: &Request<()>| {
        service
            .route(request)
            .and_then(|r| service.routes().iter().position(|x| std::ptr::eq(x, r)))
    };
    let mut canary = get("/api/v2/items");
    canary
        .headers_mut()
        .insert("x-canary", http::HeaderValue::from_static("1"));
    assert_eq!(index(&canary), Some(0));
    assert_eq!(index(&get("/api/v2/items")), Some(2), "no canary header");
    let mut post = get("/api/v2/items");
    *post.method_mut() = Method::POST;
    post.headers_mut()
        .insert("x-canary", http::HeaderValue::from_static("1"));
    assert_eq!(index(&post), Some(2), "wrong method");
    assert_eq!(index(&get("/api/books/42")), Some(1));
    assert_eq!(
        index(&get("/api/books/42/x")),
        Some(2),
        "the regex is anchored"
    );
}

#[test]
fn a_split_gives_each_cluster_its_weight() {
    let snapshot = snapshot();
    let Some(route) = snapshot.service("reviews").map(|s| &s.routes()[1]) else {
        unreachable!("the example has a reviews service")
    };
    assert_eq!(route.total_weight(), 100);
    let v2 = (0..100)
        .filter(|&roll| route.pick_cluster(roll) == "reviews-v2")
        .count();
    assert_eq!(v2, 10);
    assert_eq!(route.pick_cluster(150), "reviews-v1", "rolls wrap");
    assert_eq!(route.pick_cluster(195), "reviews-v2");
}

/// Builds the example with one edit, and returns the field that failed.
fn failing_field(edit: impl FnOnce(&mut MeshConfig)) -> Option<String> {
    let mut config = MeshConfig::from_yaml(EXAMPLE).ok()?;
    edit(&mut config);
    Snapshot::build(config, 1)
        .err()
        .map(|e: ConfigError| e.field().to_owned())
}

fn route(config: &mut MeshConfig, i: usize) -> &mut RouteConfig {
    let service = config.services.entry("reviews".into()).or_default();
    &mut service.routes[i]
}

fn cluster<'a>(config: &'a mut MeshConfig, name: &str) -> &'a mut ClusterConfig {
    config.clusters.entry(name.into()).or_default()
}

type Edit = Box<dyn FnOnce(&mut MeshConfig)>;

#[test]
fn every_invalid_field_is_named() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "services.reviews.routes[1].retry.budget.ratio",
            Box::new(|c| {
                if let Some(r) = &mut route(c, 1).retry {
                    r.budget.ratio = 2.0
                }
            }),
        ),
        (
            "services.reviews.routes[1].split[1].cluster",
            Box::new(|c| route(c, 1).split[1].cluster = "nope".into()),
        ),
        (
            "services.reviews.routes[1].split",
            Box::new(|c| route(c, 1).split.iter_mut().for_each(|s| s.weight = 0)),
        ),
        (
            "services.reviews.routes[0].match.method",
            Box::new(|c| route(c, 0).matcher.method = Some("G E T".into())),
        ),
        (
            "services.reviews.routes[0].match.path",
            Box::new(|c| route(c, 0).matcher.path = Some(PathMatch::prefix("api"))),
        ),
        (
            "services.reviews.routes[0].match.path",
            Box::new(|c| {
                route(c, 0).matcher.path = Some(PathMatch {
                    exact: Some("/a".into()),
                    prefix: Some("/b".into()),
                    regex: None,
                })
            }),
        ),
        (
            "services.reviews.routes[1].match.path.regex",
            Box::new(|c| route(c, 1).matcher.path = Some(PathMatch::regex("("))),
        ),
        (
            "services.reviews.routes[0].match.headers[0]",
            Box::new(|c| route(c, 0).matcher.headers[0].prefix = Some("x".into())),
        ),
        (
            "services.reviews.routes[0].match.headers[0].name",
            Box::new(|c| route(c, 0).matcher.headers[0].name = "bad name".into()),
        ),
        (
            "services.reviews.routes[1].timeout",
            Box::new(|c| route(c, 1).timeout = Some(Duration::ZERO)),
        ),
        (
            "services.reviews.routes",
            Box::new(|c| {
                c.services
                    .entry("reviews".into())
                    .or_default()
                    .routes
                    .clear()
            }),
        ),
        (
            "clusters.reviews-v1.endpoints[1].address",
            Box::new(|c| cluster(c, "reviews-v1").endpoints[1].address = "127.0.0.1".into()),
        ),
        (
            "clusters.reviews-v1.endpoints[1].address",
            Box::new(|c| cluster(c, "reviews-v1").endpoints[1].address = "127.0.0.1:9001".into()),
        ),
        (
            "clusters.reviews-v1.endpoints[0].weight",
            Box::new(|c| cluster(c, "reviews-v1").endpoints[0].weight = 0),
        ),
        (
            "clusters.reviews-v1.outlier_detection.max_ejection_percent",
            Box::new(|c| {
                if let Some(od) = &mut cluster(c, "reviews-v1").outlier_detection {
                    od.max_ejection_percent = 101
                }
            }),
        ),
        (
            "clusters.reviews-v1.outlier_detection.max_ejection_time",
            Box::new(|c| {
                if let Some(od) = &mut cluster(c, "reviews-v1").outlier_detection {
                    od.max_ejection_time = Duration::from_secs(1)
                }
            }),
        ),
        (
            "clusters.reviews-v2.identity",
            Box::new(|c| cluster(c, "reviews-v2").identity = Some("reviews".into())),
        ),
        (
            "clusters.reviews-v2.lb.header",
            Box::new(|c| {
                cluster(c, "reviews-v2").lb = LbPolicy::Maglev {
                    header: Some("a b".into()),
                }
            }),
        ),
        (
            "clusters.reviews-v2.thresholds.max_retries",
            Box::new(|c| cluster(c, "reviews-v2").thresholds.max_retries = 0),
        ),
        (
            "clusters.reviews-v2.locality_lb.panic_threshold_percent",
            Box::new(|c| cluster(c, "reviews-v2").locality_lb.panic_threshold_percent = 150),
        ),
        (
            "clusters.bad/name",
            Box::new(|c| {
                c.clusters
                    .insert("bad/name".into(), ClusterConfig::default());
            }),
        ),
    ];
    for (field, edit) in cases {
        assert_eq!(failing_field(edit).as_deref(), Some(field));
    }
}
