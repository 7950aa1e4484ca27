//! Classifiers the application registers by name, and configurations that
//! select them: one naming a classifier not registered is refused, from
//! any source, naming the field, and the last good one stays in force.

use super::*;
use sinew::classify::StatusClassifier;

fn mesh_yaml(address: &str, route_classifier: &str, cluster_classifier: &str) -> String {
    format!(
        r#"
services:
  reviews:
    routes:
      - split: [{{ cluster: a }}]
        classifier: {route_classifier}
clusters:
  a:
    classifier: {cluster_classifier}
    breaker: {{ consecutive_failures: 3, open_for: 2s }}
    endpoints: [{{ address: "{address}" }}]
"#
    )
}

fn retry_500() -> StatusClassifier {
    StatusClassifier::default().retry_on_status(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn answer(mesh: &Mesh) -> String {
    let client = mesh.http_client::<Empty<Bytes>>("reviews");
    let request = Request::get("http://reviews/").body(Empty::new()).unwrap();
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), client.oneshot(request))
            .await
            .expect("an answer in time")
            .unwrap();
    body_text(response.into_body()).await
}

#[tokio::test]
async fn applying_an_unregistered_classifier_is_refused_by_field_and_changes_nothing() {
    let (a, _) = named("a").await;
    let addr = a.addr.to_string();
    let config = MeshConfig::from_yaml(&mesh_yaml(&addr, "retry-500", "default")).unwrap();
    let mesh = Mesh::builder()
        .classifier("retry-500", retry_500())
        .config(config)
        .build()
        .await
        .unwrap();
    assert_eq!(answer(&mesh).await, "a");
    let version = mesh.config_status().version();
    let route = mesh
        .route("reviews", &Request::get("/").body(()).unwrap())
        .unwrap();
    assert_eq!(route.cluster(), "a");

    let unknown = MeshConfig::from_yaml(&mesh_yaml(&addr, "retry-5xx", "default")).unwrap();
    let err = mesh.apply(unknown).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"services.reviews.routes[0].classifier: no classifier named "retry-5xx" is registered"#
    );
    let status = mesh.config_status();
    assert_eq!(
        status.version(),
        version,
        "the last good one stays in force"
    );
    assert_eq!(status.last_error(), Some(&err));
    assert_eq!(status.rejected(), 1);
    let in_force = mesh.snapshot();
    let route = in_force
        .service("reviews")
        .map(|s| s.routes()[0].classifier());
    assert_eq!(route, Some(Some("retry-500")));
    assert_eq!(answer(&mesh).await, "a", "requests go on as before");

    let unknown = MeshConfig::from_yaml(&mesh_yaml(&addr, "retry-500", "strict")).unwrap();
    assert_eq!(
        mesh.apply(unknown).map_err(|e| e.to_string()),
        Err(r#"clusters.a.classifier: no classifier named "strict" is registered"#.to_owned())
    );
    assert_eq!(mesh.config_status().version(), version);

    // Registered names apply.
    let fine = MeshConfig::from_yaml(&mesh_yaml(&addr, "default", "retry-500")).unwrap();
    assert_eq!(mesh.apply(fine), Ok(version + 1));
    let pool = mesh
        .snapshot()
        .cluster("a")
        .map(|c| c.config().classifier.clone());
    assert_eq!(pool, Some(Some("retry-500".to_owned())));
}

#[tokio::test]
async fn the_first_configuration_and_the_names_are_checked_when_the_mesh_is_built() {
    let config = MeshConfig::from_yaml(&mesh_yaml("127.0.0.1:9", "retry-500", "default")).unwrap();
    let err = Mesh::builder()
        .config(config.clone())
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"services.reviews.routes[0].classifier: no classifier named "retry-500" is registered"#
    );

    let err = Mesh::builder()
        .classifier("retry 500", retry_500())
        .config(config.clone())
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "classifier");
    assert!(
        err.message()
            .starts_with(r#""retry 500" is not a valid name"#),
        "{err}"
    );

    // A file is checked as a configuration in code is, at start and on
    // each reload.
    let dir = std::env::temp_dir().join(format!("sinew-classifiers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mesh.yaml");
    std::fs::write(&path, mesh_yaml("127.0.0.1:9", "default", "strict")).unwrap();
    let err = Mesh::builder()
        .config_file(&path)
        .build()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"clusters.a.classifier: no classifier named "strict" is registered"#
    );

    std::fs::write(&path, mesh_yaml("127.0.0.1:9", "default", "default")).unwrap();
    let mesh = Mesh::builder()
        .classifier("strict", StatusClassifier::default())
        .config_file(&path)
        .reload_interval(std::time::Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let version = mesh.config_status().version();
    std::fs::write(&path, mesh_yaml("127.0.0.1:9", "lenient", "strict")).unwrap();
    support::until("the rejection", || mesh.config_status().rejected() == 1).await;
    let status = mesh.config_status();
    assert_eq!(
        status.last_error().map(|e| e.to_string()).as_deref(),
        Some(
            r#"services.reviews.routes[0].classifier: no classifier named "lenient" is registered"#
        )
    );
    assert_eq!(status.version(), version);
    std::fs::remove_dir_all(&dir).unwrap();
}
