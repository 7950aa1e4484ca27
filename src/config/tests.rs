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
    identities: [spiffe://example.org/ns/shop/sa/reviews]
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
        .map(|c| c.endpoints().iter().cloned().collect::<Vec<_>>())
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
            "clusters.reviews-v2.identities[0]",
            Box::new(|c| cluster(c, "reviews-v2").identities = vec!["reviews".into()]),
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

#[test]
fn durations_past_a_year_are_named_wherever_they_are() {
    // `i64::MAX` seconds used to be taken, then overflowed the clock on the
    // first request (route timeout) or the first ejection.
    const FOREVER: Duration = Duration::from_secs(i64::MAX as u64);
    let cases: Vec<(&str, Edit)> = vec![
        (
            "services.reviews.routes[1].timeout",
            Box::new(|c| route(c, 1).timeout = Some(FOREVER)),
        ),
        (
            "services.reviews.routes[1].retry.per_try_timeout",
            Box::new(|c| {
                if let Some(r) = &mut route(c, 1).retry {
                    r.per_try_timeout = Some(FOREVER)
                }
            }),
        ),
        (
            "services.reviews.routes[2].retry.hedge.delay",
            Box::new(|c| {
                if let Some(h) = route(c, 2).retry.as_mut().and_then(|r| r.hedge.as_mut()) {
                    h.delay = FOREVER
                }
            }),
        ),
        (
            "services.reviews.routes[0].fault.delay.fixed",
            Box::new(|c| {
                route(c, 0).fault = Some(FaultConfig {
                    delay: Some(FaultDelay {
                        fixed: FOREVER,
                        percent: 100.0,
                    }),
                    ..FaultConfig::default()
                })
            }),
        ),
        (
            "clusters.reviews-v1.outlier_detection.base_ejection_time",
            Box::new(|c| {
                if let Some(od) = &mut cluster(c, "reviews-v1").outlier_detection {
                    od.base_ejection_time = FOREVER;
                    od.max_ejection_time = FOREVER;
                }
            }),
        ),
        (
            "clusters.reviews-v1.outlier_detection.max_ejection_time",
            Box::new(|c| {
                if let Some(od) = &mut cluster(c, "reviews-v1").outlier_detection {
                    od.max_ejection_time = FOREVER;
                }
            }),
        ),
        (
            "clusters.reviews-v1.outlier_detection.interval",
            Box::new(|c| {
                if let Some(od) = &mut cluster(c, "reviews-v1").outlier_detection {
                    od.interval = FOREVER;
                }
            }),
        ),
    ];
    for (field, edit) in cases {
        assert_eq!(failing_field(edit).as_deref(), Some(field));
    }
    // The same from a file: the message says what the bound is.
    let yaml = EXAMPLE.replace("timeout: 2s", "timeout: 400days");
    let error = MeshConfig::from_yaml(&yaml)
        .and_then(|c| Snapshot::build(c, 1))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("services.reviews.routes[1].timeout: must be at most 365 days")
    );
}

#[test]
fn endpoint_changes_are_checked_and_share_the_rest() {
    use crate::config::{EndpointChanges, EndpointConfig};
    let config = MeshConfig::from_yaml(
        "services:\n  s:\n    routes: [{ split: [{ cluster: pool }] }]\nclusters:\n  pool:\n    endpoints: [{ address: \"10.0.0.1:80\" }, { address: \"10.0.0.2:80\" }]\n  other:\n    endpoints: [{ address: \"10.0.1.1:80\" }]\n",
    )
    .unwrap_or_default();
    let first = Snapshot::build(config, 1).unwrap_or_else(|e| unreachable!("{e}"));
    let error = |cluster: &str, changes: EndpointChanges| {
        first
            .with_endpoint_changes(cluster, &changes, 2)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let add = |address: &str| EndpointChanges {
        upsert: vec![EndpointConfig::new(address)],
        remove: vec![],
    };
    assert_eq!(
        error("nope", add("10.0.0.3:80")),
        "clusters.nope: no such cluster"
    );
    assert_eq!(
        error("pool", add("10.0.0.3")),
        "clusters.pool.upsert[0].address: `10.0.0.3` is not an ip:port"
    );
    let mut heavy = EndpointConfig::new("10.0.0.3:80");
    heavy.weight = 0;
    assert_eq!(
        error(
            "pool",
            EndpointChanges {
                upsert: vec![heavy],
                remove: vec![]
            }
        ),
        "clusters.pool.upsert[0].weight: must be between 1 and 1000000"
    );
    let twice = EndpointChanges {
        upsert: vec![
            EndpointConfig::new("10.0.0.3:80"),
            EndpointConfig::new("10.0.0.3:80"),
        ],
        remove: vec![],
    };
    assert_eq!(
        error("pool", twice),
        "clusters.pool.upsert[1].address: duplicate of upsert[0]"
    );
    let both = EndpointChanges {
        upsert: vec![EndpointConfig::new("10.0.0.1:80")],
        remove: vec!["10.0.0.1:80".into()],
    };
    assert_eq!(
        error("pool", both),
        "clusters.pool.upsert[0].address: is also in `remove`"
    );
    let bad_remove = EndpointChanges {
        upsert: vec![],
        remove: vec!["[::1]".into()],
    };
    assert_eq!(
        error("pool", bad_remove),
        "clusters.pool.remove[0]: `[::1]` is not an ip:port"
    );

    let mut reweighed = EndpointConfig::new("10.0.0.2:80");
    reweighed.weight = 5;
    let changes = EndpointChanges {
        upsert: vec![reweighed, EndpointConfig::new("[::1]:80")],
        remove: vec!["10.0.0.1:80".into(), "10.9.9.9:80".into()],
    };
    let second = first
        .with_endpoint_changes("pool", &changes, 2)
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(second.version(), 2);
    let pool: Vec<(String, u32)> = second
        .cluster("pool")
        .map(|c| {
            c.endpoints()
                .iter()
                .map(|e| (e.address.to_string(), e.weight))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(pool, [("10.0.0.2:80".into(), 5), ("[::1]:80".into(), 1)]);
    assert!(
        matches!((first.cluster("other"), second.cluster("other")), (Some(a), Some(b)) if std::sync::Arc::ptr_eq(a, b)),
        "other clusters are shared"
    );
    assert_eq!(first.cluster("pool").map(|c| c.endpoints().len()), Some(2));
    // The whole configuration, endpoints included, reads back.
    let whole = second.to_config();
    assert_eq!(whole.clusters["pool"].endpoints.len(), 2);
    assert_eq!(whole.clusters["pool"].endpoints[0].weight, 5);
    assert!(second.config().clusters["pool"].endpoints.is_empty());
}

#[test]
fn a_failing_route_is_validated_and_round_trips_through_json() {
    let yaml = "services:\n  s:\n    routes:\n      - match: { path: { prefix: /old } }\n        fail: redirects are not supported\n      - split: [{ cluster: c }]\nclusters:\n  c: {}\n";
    let config = MeshConfig::from_yaml(yaml).map_err(|e| e.to_string());
    let Ok(config) = config else {
        unreachable!("a valid configuration: {config:?}")
    };
    // The fail-static cache writes the configuration as JSON.
    let json = serde_json::to_string(&config).map_err(|e| e.to_string());
    assert!(
        json.as_ref()
            .is_ok_and(|j| j.contains("\"fail\":\"redirects are not supported\""))
    );
    let back: Result<MeshConfig, _> = json
        .map_err(|e| e.to_string())
        .and_then(|j| serde_json::from_str(&j).map_err(|e| e.to_string()));
    assert_eq!(back.as_ref(), Ok(&config));
    let built = Snapshot::build(config.clone(), 1).map_err(|e| e.to_string());
    let route = built
        .as_ref()
        .ok()
        .and_then(|s| s.services_in_order().first())
        .map(|s| s.routes()[0].fails().map(str::to_owned));
    assert_eq!(route, Some(Some("redirects are not supported".to_owned())));

    let mut with_split = config.clone();
    if let Some(s) = with_split.services.get_mut("s") {
        s.routes[0].split = vec![WeightedCluster {
            cluster: "c".to_owned(),
            weight: 1,
        }];
    }
    assert_eq!(
        Snapshot::build(with_split, 1).err().map(|e| e.to_string()),
        Some(
            "services.s.routes[0].split: must be empty on a route that fails its requests (`fail`)"
                .to_owned()
        )
    );
    let mut blank = config;
    if let Some(s) = blank.services.get_mut("s") {
        s.routes[0].fail = Some(" ".to_owned());
    }
    assert_eq!(
        Snapshot::build(blank, 1).err().map(|e| e.to_string()),
        Some("services.s.routes[0].fail: must give a reason".to_owned())
    );
}

#[test]
fn an_endless_mesh_file_is_an_error_not_a_full_memory() {
    let error = MeshConfig::from_file("/dev/zero")
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("config_file: cannot read /dev/zero: larger than 67108864 bytes")
    );
}

#[test]
fn what_a_client_cannot_use_or_costs_too_much_is_named() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "clusters.reviews-v1.endpoints[0].address",
            Box::new(|c| cluster(c, "reviews-v1").endpoints[0].address = "127.0.0.1:0".into()),
        ),
        (
            "services.reviews.routes[0].fail",
            Box::new(|c| {
                let r = route(c, 0);
                r.split.clear();
                r.fail = Some("x".repeat(2000));
            }),
        ),
        (
            "services.reviews.routes[0].fail",
            Box::new(|c| {
                let r = route(c, 0);
                r.split.clear();
                r.fail = Some("bad\0reason".into());
            }),
        ),
        (
            "clusters.reviews-v2.lb.min_ring_size",
            Box::new(|c| {
                cluster(c, "reviews-v2").lb = LbPolicy::RingHash {
                    header: None,
                    min_ring_size: 70_000,
                }
            }),
        ),
    ];
    for (field, edit) in cases {
        assert_eq!(failing_field(edit).as_deref(), Some(field));
    }
}
