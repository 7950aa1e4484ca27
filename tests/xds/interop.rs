//! The discovery client against an ADS server that shares nothing with
//! Sinew: `ads_server.py`, on grpcio and the published xds-protos package
//! (installed by `scripts/test.sh` from `tests/xds/requirements.txt`). The
//! interpreter is `SINEW_XDS_PYTHON`, or `python3`.

use super::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

struct PythonAds {
    _child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    port: u16,
}

impl PythonAds {
    async fn start() -> Self {
        let python = std::env::var("SINEW_XDS_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/xds/ads_server.py");
        let mut child = Command::new(&python)
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().unwrap_or_else(|| {
            panic!(
                "{python} {script} did not start: install its packages with \
                 `pip install -r tests/xds/requirements.txt` (scripts/test.sh does) \
                 or point SINEW_XDS_PYTHON at an interpreter that has them"
            )
        });
        let port = first.strip_prefix("port ").unwrap().parse().unwrap();
        Self {
            _child: child,
            stdin,
            lines,
            port,
        }
    }

    async fn publish(&mut self, spec: serde_json::Value) {
        let mut line = spec.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next NACK the server received.
    async fn next_nack(&mut self) -> serde_json::Value {
        loop {
            let line = self.lines.next_line().await.unwrap().unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if value.get("nack").is_some() {
                return value;
            }
        }
    }
}

fn spec(clusters: &[(&str, &str, &[SocketAddr])]) -> serde_json::Value {
    let split: Vec<serde_json::Value> = clusters
        .iter()
        .map(|(c, _, _)| serde_json::json!([c, 1]))
        .collect();
    let policies: serde_json::Map<String, serde_json::Value> = clusters
        .iter()
        .map(|(c, lb, _)| ((*c).to_owned(), serde_json::json!(lb)))
        .collect();
    let endpoints: serde_json::Map<String, serde_json::Value> = clusters
        .iter()
        .map(|(c, _, eps)| {
            let list: Vec<String> = eps.iter().map(|e| e.to_string()).collect();
            ((*c).to_owned(), serde_json::json!(list))
        })
        .collect();
    serde_json::json!({
        "listeners": {"reviews": "reviews"},
        "routes": {"reviews": split},
        "clusters": policies,
        "endpoints": endpoints,
    })
}

#[tokio::test]
async fn a_python_control_plane_configures_changes_and_gets_nacks() {
    let (a, _) = named("a").await;
    let (b, served_b) = named("b").await;
    let (c, served_c) = named("c").await;
    let mut ads = PythonAds::start().await;
    ads.publish(spec(&[("reviews-v1", "ROUND_ROBIN", &[a.addr])]))
        .await;
    let (mesh, client) = reviews_client(&format!("http://127.0.0.1:{}", ads.port)).await;
    assert_eq!(
        get(&client).await.unwrap(),
        "a",
        "the initial configuration"
    );

    // An endpoint change, followed under load with no failed request.
    let sent = Arc::new(AtomicUsize::new(0));
    let running = tokio::spawn(send_all(
        client.clone(),
        "http://reviews/",
        2_000,
        8,
        sent.clone(),
    ));
    while sent.load(Ordering::SeqCst) < 500 {
        tokio::task::yield_now().await;
    }
    ads.publish(spec(&[("reviews-v1", "ROUND_ROBIN", &[a.addr, b.addr])]))
        .await;
    let seen = running.await.unwrap();
    assert_eq!(
        seen.values().sum::<usize>(),
        2_000,
        "every request succeeded"
    );
    while served_b.load(Ordering::SeqCst) == 0 {
        get(&client).await.unwrap();
        tokio::task::yield_now().await;
    }

    // An invalid cluster beside a valid one: NACKed by name and field, the
    // valid one applies, traffic goes on.
    ads.publish(spec(&[
        ("reviews-v1", "CLUSTER_PROVIDED", &[a.addr, b.addr]),
        ("reviews-v2", "ROUND_ROBIN", &[c.addr]),
    ]))
    .await;
    let nack = ads.next_nack().await;
    assert_eq!(nack["nack"], CLUSTER);
    assert_eq!(
        nack["message"],
        "Cluster reviews-v1: lb_policy: CLUSTER_PROVIDED is not supported"
    );
    while served_c.load(Ordering::SeqCst) == 0 {
        get(&client).await.unwrap();
        tokio::task::yield_now().await;
    }
    assert_eq!(
        state_of(&mesh, Kind::Cluster, "reviews-v1"),
        Some(ResourceState::Nacked)
    );
}
