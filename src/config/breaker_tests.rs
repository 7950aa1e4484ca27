//! A cluster's service breaker and the classifiers routes and clusters
//! select, in the mesh file.

use super::{MeshConfig, Snapshot};
use crate::breaker::{BreakerConfig, FailureRateConfig};
use std::time::Duration;

const MESH: &str = r#"
services:
  reviews:
    routes:
      - match: { path: { prefix: /api } }
        split: [{ cluster: pool }]
        classifier: retry-500
      - split: [{ cluster: pool }]
clusters:
  pool:
    breaker:
      consecutive_failures: 3
      failure_rate: { threshold: 0.25, window: 30s, min_requests: 10 }
      open_for: 2s
      half_open_probes: 2
    classifier: strict.grpc_v1
    endpoints: [{ address: "127.0.0.1:9001" }]
  plain:
    endpoints: [{ address: "127.0.0.1:9002" }]
"#;

fn error_of(yaml: &str) -> Option<String> {
    match MeshConfig::from_yaml(yaml).and_then(|c| Snapshot::build(c, 1)) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

#[test]
fn a_breaker_and_classifiers_parse_and_reach_the_snapshot() {
    let config = MeshConfig::from_yaml(MESH).unwrap_or_else(|e| unreachable!("{e}"));
    let pool = &config.clusters["pool"];
    assert_eq!(
        pool.breaker,
        Some(BreakerConfig {
            consecutive_failures: Some(3),
            failure_rate: Some(FailureRateConfig {
                threshold: 0.25,
                window: Duration::from_secs(30),
                min_requests: 10,
            }),
            open_for: Duration::from_secs(2),
            half_open_probes: 2,
        })
    );
    assert_eq!(pool.classifier.as_deref(), Some("strict.grpc_v1"));
    assert_eq!(config.clusters["plain"].breaker, None);
    assert_eq!(config.clusters["plain"].classifier, None);

    let snapshot = Snapshot::build(config.clone(), 1).unwrap_or_else(|e| unreachable!("{e}"));
    let routes = snapshot.service("reviews").map(|s| s.routes());
    assert_eq!(
        routes.map(|r| r.iter().map(|r| r.classifier()).collect::<Vec<_>>()),
        Some(vec![Some("retry-500"), None])
    );
    assert_eq!(
        snapshot.cluster("pool").map(|c| c.config().breaker),
        Some(pool.breaker)
    );

    // Written back, the file says the same; unset fields stay out.
    let yaml = config.to_yaml().unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(MeshConfig::from_yaml(&yaml), Ok(config));
    assert!(!yaml.contains("classifier: null") && !yaml.contains("breaker: null"));

    // A breaker given in part takes the defaults for the rest.
    let partial = MeshConfig::from_yaml(
        "clusters:\n  c:\n    breaker: { open_for: 10s }\n    endpoints: []\n",
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        partial.clusters["c"].breaker,
        Some(BreakerConfig {
            open_for: Duration::from_secs(10),
            ..BreakerConfig::default()
        })
    );
}

#[test]
fn a_bad_breaker_or_classifier_name_is_refused_by_field() {
    let cluster = |extra: &str| format!("clusters:\n  pool:\n    endpoints: []\n{extra}");
    let cases = [
        (
            cluster("    breaker: { failure_rate: { threshold: 0 } }\n"),
            "clusters.pool.breaker.failure_rate.threshold: must be above 0 and at most 1",
        ),
        (
            cluster("    breaker: { failure_rate: { window: 10ms } }\n"),
            "clusters.pool.breaker.failure_rate.window: must be between 100 ms and 1 h",
        ),
        (
            cluster("    breaker: { half_open_probes: 0 }\n"),
            "clusters.pool.breaker.half_open_probes: must be between 1 and 1000",
        ),
        (
            cluster("    breaker: { consecutive_failures: ~, failure_rate: ~ }\n"),
            "clusters.pool.breaker.consecutive_failures: must be set when failure_rate is not (the breaker could never trip)",
        ),
        (
            cluster("    breaker: { open_for: 0s }\n"),
            "clusters.pool.breaker.open_for: must be greater than zero",
        ),
        (
            cluster("    classifier: \"\"\n"),
            "clusters.pool.classifier: classifier names are 1 to 128 characters of letters, digits, '.', '_' and '-'",
        ),
        (
            cluster("    classifier: a/b\n"),
            "clusters.pool.classifier: classifier names are 1 to 128 characters of letters, digits, '.', '_' and '-'",
        ),
        (
            format!(
                "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: pool }}]\n      - split: [{{ cluster: pool }}]\n        classifier: \"{}\"\n{}",
                "x".repeat(129),
                cluster("")
            ),
            "services.reviews.routes[1].classifier: classifier names are 1 to 128 characters of letters, digits, '.', '_' and '-'",
        ),
    ];
    for (yaml, expected) in cases {
        assert_eq!(error_of(&yaml).as_deref(), Some(expected), "{yaml}");
    }
    // 128 characters is the longest name.
    assert_eq!(
        error_of(&cluster(&format!("    classifier: {}\n", "x".repeat(128)))),
        None
    );
    // A field the breaker does not have is named.
    assert_eq!(
        MeshConfig::from_yaml(&cluster("    breaker: { open_four: 1s }\n"))
            .err()
            .map(|e| e.field().to_owned()),
        Some("clusters.pool.breaker.open_four".to_owned())
    );
}
