//! The mesh's own series (endpoints by state, outlier ejections, the
//! configuration in force), read from a recorder local to each test.

use super::outlier::Result_ as OutlierResult;
use super::runtime::Routing;
use crate::classify::Classifiers;
use crate::config::{EndpointChanges, EndpointConfig, MeshConfig, Snapshot};
use crate::test_metrics::Captured;
use std::sync::Arc;

fn snapshot(yaml: &str, version: u64) -> Arc<Snapshot> {
    let snapshot = MeshConfig::from_yaml(yaml)
        .and_then(|c| Snapshot::build(c, version))
        .unwrap_or_else(|e| unreachable!("{e}"));
    Arc::new(snapshot)
}

const POOL: &str = "clusters:
  pool:
    outlier_detection: { consecutive_5xx: 2, max_ejection_percent: 100 }
    endpoints:
      - { address: \"127.0.0.1:1\" }
      - { address: \"127.0.0.1:2\" }
      - { address: \"127.0.0.1:3\", health: draining }
";

#[test]
fn endpoints_by_state_follow_changes_and_ejections_not_requests() {
    let captured = Captured::new();
    let routing =
        captured.with(|| Routing::build(snapshot(POOL, 1), None, None, &Classifiers::default()));
    let values = captured.take();
    let state = |s| [("cluster", "pool"), ("state", s)];
    assert_eq!(values.get("sinew_endpoints", &state("healthy")), Some(2.0));
    assert_eq!(values.get("sinew_endpoints", &state("draining")), Some(1.0));
    assert_eq!(values.get("sinew_endpoints", &state("ejected")), Some(0.0));
    assert_eq!(
        values.get("sinew_endpoints", &state("unhealthy")),
        Some(0.0)
    );

    // Two 5xx in a row from one endpoint eject it.
    let pool = routing.cluster("pool").cloned();
    let pool = pool.as_deref().unwrap_or_else(|| unreachable!());
    let request = http::Request::new(());
    let picked = pool.pick(&request).unwrap_or_else(|| unreachable!());
    for _ in 0..2 {
        pool.record(
            &picked.outlier,
            OutlierResult::ServerError { gateway: false },
        );
    }
    let values = captured.take();
    assert_eq!(
        values.get(
            "sinew_outlier_ejections_total",
            &[("cluster", "pool"), ("reason", "consecutive_5xx")]
        ),
        Some(1.0)
    );
    assert_eq!(values.get("sinew_endpoints", &state("ejected")), Some(1.0));
    assert_eq!(values.get("sinew_endpoints", &state("healthy")), Some(1.0));

    // Requests that change nothing set nothing.
    for _ in 0..10 {
        let _ = pool.pick(&request);
    }
    let values = captured.take();
    assert_eq!(
        values.get("sinew_endpoints", &state("healthy")),
        Some(0.0),
        "not set again"
    );

    // A change of endpoints sets them again.
    let (changed, ops) = routing
        .snapshot
        .changed(
            "pool",
            &EndpointChanges {
                upsert: vec![EndpointConfig::new("127.0.0.1:4")],
                remove: vec!["127.0.0.1:3".into()],
            },
            2,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
    let routing = routing.with_changes(Arc::new(changed), "pool", Some(&ops));
    let values = captured.take();
    assert_eq!(values.get("sinew_endpoints", &state("draining")), Some(0.0));
    assert_eq!(values.get("sinew_endpoints", &state("ejected")), Some(1.0));
    assert_eq!(values.get("sinew_endpoints", &state("healthy")), Some(2.0));

    // A configuration without the cluster leaves it no endpoints.
    let other = "clusters:\n  other:\n    endpoints: [{ address: \"127.0.0.1:9\" }]\n";
    let _next = captured.with(|| {
        Routing::build(
            snapshot(other, 3),
            Some(&routing),
            None,
            &Classifiers::default(),
        )
    });
    let values = captured.take();
    assert_eq!(
        values.get("sinew_endpoints", &[("cluster", "pool")]),
        Some(0.0)
    );
    assert_eq!(
        values.get(
            "sinew_endpoints",
            &[("cluster", "other"), ("state", "healthy")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_version_in_force_and_rejections_are_shown_per_source() {
    let captured = Captured::new();
    let _local = metrics::set_default_local_recorder(&captured.recorder);
    let mesh = super::Mesh::builder()
        .config(MeshConfig::from_yaml(POOL).unwrap_or_else(|e| unreachable!("{e}")))
        .build()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let values = captured.take();
    assert_eq!(
        values.get("sinew_config_version", &[("source", "static")]),
        Some(1.0)
    );

    let invalid =
        MeshConfig::from_yaml("clusters:\n  pool:\n    endpoints: [{ address: \"nowhere\" }]\n")
            .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(mesh.apply(invalid).is_err());
    let values = captured.take();
    assert_eq!(
        values.get("sinew_config_rejected_total", &[("source", "static")]),
        Some(1.0)
    );

    let version = mesh
        .update_endpoints(
            "pool",
            &EndpointChanges {
                upsert: vec![EndpointConfig::new("127.0.0.1:4")],
                remove: vec![],
            },
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
    let values = captured.take();
    assert_eq!(
        values.get("sinew_config_version", &[("source", "static")]),
        Some(version as f64)
    );
    assert_eq!(version, 2);
}
