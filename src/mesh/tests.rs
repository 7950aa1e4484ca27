use super::*;
use crate::config::MeshConfig;
use http::Request;
use std::time::Duration;

fn config(v1: u32, v2: u32) -> String {
    format!(
        r#"
services:
  reviews:
    routes:
      - match: {{ path: {{ prefix: /api }} }}
        split:
          - {{ cluster: v1, weight: {v1} }}
          - {{ cluster: v2, weight: {v2} }}
clusters:
  v1: {{ endpoints: [{{ address: "127.0.0.1:9001" }}] }}
  v2: {{ endpoints: [{{ address: "127.0.0.1:9002" }}] }}
"#
    )
}

fn get(path: &str) -> Request<()> {
    Request::get(path).body(()).unwrap_or_default()
}

async fn mesh(v1: u32, v2: u32) -> Mesh {
    let config = MeshConfig::from_yaml(&config(v1, v2)).unwrap_or_default();
    Mesh::builder()
        .config(config)
        .build()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"))
}

fn share_of_v2(mesh: &Mesh, n: usize) -> f64 {
    let v2 = (0..n)
        .filter(|_| {
            mesh.route("reviews", &get("/api/x"))
                .is_ok_and(|d| d.cluster() == "v2")
        })
        .count();
    v2 as f64 / n as f64
}

#[tokio::test]
async fn routes_by_weight_and_explains_failures() {
    let mesh = mesh(90, 10).await;
    let share = share_of_v2(&mesh, 10_000);
    assert!((share - 0.10).abs() < 0.03, "v2 got {share:.3}");

    assert_eq!(
        mesh.route("ratings", &get("/api")).err(),
        Some(RouteError::UnknownService("ratings".into()))
    );
    let err = mesh
        .route("reviews", &get("/other"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("service `reviews` has no route for GET /other")
    );
}

#[tokio::test]
async fn an_invalid_update_keeps_the_last_good_snapshot() {
    let mesh = mesh(0, 1).await;
    let mut bad = MeshConfig::from_yaml(&config(1, 0)).unwrap_or_default();
    if let Some(route) = bad.services.get_mut("reviews").map(|s| &mut s.routes[0]) {
        route.split[1].cluster = "v3".into();
    }
    let err = mesh.apply(bad).err().map(|e| e.field().to_owned());
    assert_eq!(
        err.as_deref(),
        Some("services.reviews.routes[0].split[1].cluster")
    );
    let status = mesh.config_status();
    assert_eq!(status.version(), 1);
    assert_eq!(status.rejected(), 1);
    assert_eq!(share_of_v2(&mesh, 100), 1.0, "the old split is in force");

    let good = MeshConfig::from_yaml(&config(1, 0)).unwrap_or_default();
    assert_eq!(mesh.apply(good).ok(), Some(2));
    assert_eq!(mesh.config_status().last_error(), None);
    assert_eq!(share_of_v2(&mesh, 100), 0.0);
}

#[tokio::test(start_paused = true)]
async fn a_watched_file_reloads_and_a_broken_one_changes_nothing() {
    let path = std::env::temp_dir().join(format!("sinew-mesh-{}.yaml", fastrand::u64(..)));
    let write = |text: &str| std::fs::write(&path, text).unwrap_or_else(|e| unreachable!("{e}"));
    write(&config(0, 1));
    let interval = Duration::from_millis(100);
    let mesh = Mesh::builder()
        .config_file(&path)
        .reload_interval(interval)
        .build()
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(share_of_v2(&mesh, 100), 1.0);

    let next_tick = || async {
        tokio::time::sleep(interval).await;
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    };
    // A change is taken once it reads the same twice in a row: a file
    // caught half written never is.
    write(&config(1, 0)[..20]);
    next_tick().await;
    write(&config(1, 0));
    next_tick().await;
    assert_eq!(
        mesh.config_status().version(),
        1,
        "read once: not yet taken"
    );
    assert_eq!(
        mesh.config_status().rejected(),
        0,
        "the torn read was not taken"
    );
    next_tick().await;
    assert_eq!(mesh.config_status().version(), 2);
    assert_eq!(share_of_v2(&mesh, 100), 0.0, "the reload changed routing");

    write(&config(1, 0).replace("weight: 1", "weight: lots"));
    next_tick().await;
    next_tick().await;
    let status = mesh.config_status();
    assert_eq!(status.version(), 2, "nothing applied");
    assert_eq!(
        status.last_error().map(|e| e.field()),
        Some("services.reviews.routes[0].split[0].weight")
    );
    assert_eq!(share_of_v2(&mesh, 100), 0.0, "the last good routing stays");
    let _ = std::fs::remove_file(&path);
}
