//! The dashboard in a real headless browser (Debian's `chromium`, which
//! `.ci/run` installs): the page loads with the token from its fragment,
//! draws the services of a running mesh (a Sinew client calling a Sinew
//! server over mutual TLS), its numbers move as real requests flow, and without a token it shows nothing but a request for one. A
//! screenshot is kept at `target/dashboard.png`.
//!
//! Chromium runs with `--dump-dom` and a virtual time budget: it loads
//! the page, lets its script poll `/v1/graph`, and prints the DOM. Each
//! run has a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod common;
mod telemetry_support;

use bytes::Bytes;
use common::{TOKEN, scratch, within};
use http_body_util::Empty;
use sinew_control_plane::ControlPlane;
use std::path::{Path, PathBuf};
use std::time::Duration;
use telemetry_support::{
    MESH_MTLS, edge, graph_until, identity, pushing_mesh_tls, send, serve_reviews, until_reachable,
};

/// How long one browser run may take.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("SINEW_CHROMIUM") {
        return path.into();
    }
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no chromium: install it (`apt-get install -y chromium`, as .ci/run does) or set SINEW_CHROMIUM"
    );
}

/// Runs headless chromium on `url` with `args`; its standard output.
async fn browse(profile: &Path, url: &str, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = match tokio::time::timeout(BROWSER_DEADLINE, command.output()).await {
        Ok(output) => output.unwrap(),
        Err(_) => panic!("chromium on {url}: no answer within {BROWSER_DEADLINE:?}"),
    };
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The requests the page shows for `source` → `destination`, as the
/// caller reported them.
fn shown_requests(dom: &str, source: &str, destination: &str) -> Option<u64> {
    let marker = format!(
        r#"data-source="{source}" data-destination="{destination}" data-direction="outbound" data-requests=""#
    );
    let at = dom.find(&marker)? + marker.len();
    dom[at..].split('"').next()?.parse().ok()
}

/// Loads the page until it shows `requests` for cart → reviews (the
/// control plane already holds them; a slow first paint is retried).
async fn page_showing(profile: &Path, url: &str, requests: u64) -> String {
    let deadline = tokio::time::Instant::now() + common::DEADLINE * 3;
    loop {
        let dom = browse(profile, url, &["--dump-dom"]).await;
        if shown_requests(&dom, "cart", "reviews") == Some(requests) {
            return dom;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed {requests} requests; last DOM:\n{dom}"
        );
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_live_mesh_in_a_browser() {
    let dir = scratch("dashboard");
    std::fs::write(dir.join("mesh.yaml"), MESH_MTLS).unwrap();
    // The secure defaults: xDS, OTLP and the mesh's own traffic over
    // mutual TLS, with certificates from the control plane's CA.
    let cp = ControlPlane::builder()
        .mesh_file(dir.join("mesh.yaml"))
        .token(TOKEN)
        .xds_addr("127.0.0.1:0".parse().unwrap())
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    // A real reviews server, registered with the control plane, and a
    // real cart client configured by it: both push their edges, and the
    // server names its caller from its certificate.
    let reviews_identity = identity(&cp, "shop", "reviews").await;
    let reviews = pushing_mesh_tls(&cp, reviews_identity, "reviews", "reviews-1").await;
    let server = serve_reviews(&cp, &reviews).await;
    let cart_identity = identity(&cp, "shop", "cart").await;
    let cart = pushing_mesh_tls(&cp, cart_identity, "cart", "cart-1").await;
    let client = cart.http_client::<Empty<Bytes>>("reviews");
    // Usually one request: cart learns of the registered endpoint in its
    // first fetch.
    let warm = until_reachable(&client).await;
    let mut paths = vec!["/"; 8];
    paths.push("/busy");
    let first = send(&client, &paths).await;
    assert_eq!(first.failures, 1, "the server's 503");
    let sent = warm.requests + first.requests;
    let failed = warm.failures + first.failures;
    let served = sent - warm.failures;
    graph_until(&cp, "the first pushes", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == sent
            && edge(g, "cart", "reviews", "inbound")["requests"] == served
            && g["services"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == "cart" && s["clients"][0]["node_id"] == "cart-1")
    })
    .await;

    let profile = dir.join("profile");
    let base = format!("http://{}/dashboard", cp.admin_addr());
    let with_token = format!("{base}#token={TOKEN}");

    // Without a token: the page asks for one and shows no data.
    let dom = browse(&profile, &base, &["--dump-dom"]).await;
    assert!(dom.contains("not allowed: give a token"), "{dom}");
    assert!(shown_requests(&dom, "cart", "reviews").is_none(), "{dom}");

    // With it: the services of the mesh and the edge's figures.
    let dom = page_showing(&profile, &with_token, sent).await;
    assert!(dom.contains(r#"data-loaded="true""#), "{dom}");
    // The control plane's own certificate names no service of the mesh.
    assert!(
        !dom.contains(r#"data-service="control-plane""#),
        "the control plane is no node: {dom}"
    );
    for service in ["cart", "reviews"] {
        assert!(
            dom.contains(&format!(r#"data-service="{service}""#)),
            "no node for {service}: {dom}"
        );
    }
    assert!(dom.contains("rps ·"), "the edge's label: {dom}");
    let rate =
        |sent: u64, failed: u64| format!("{:.1}%", 100.0 * (sent - failed) as f64 / sent as f64);
    assert!(
        dom.contains(&rate(sent, failed)),
        "the success rate {}: {dom}",
        rate(sent, failed)
    );
    assert!(dom.contains("<td>cart-1</td>"), "cart's xDS client: {dom}");

    // Traffic flows: the numbers move.
    let more = send(&client, &["/"; 20]).await;
    assert_eq!(more.failures, 0);
    let sent = sent + more.requests;
    graph_until(&cp, "the next pushes", |g| {
        edge(g, "cart", "reviews", "outbound")["requests"] == sent
    })
    .await;
    let dom = page_showing(&profile, &with_token, sent).await;
    assert!(
        dom.contains(&rate(sent, failed)),
        "the success rate {}: {dom}",
        rate(sent, failed)
    );

    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    let screenshot = target.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    browse(
        &profile,
        &with_token,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1280,1400",
        ],
    )
    .await;
    let png = within("the screenshot", tokio::fs::read(&screenshot))
        .await
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG"),
        "a PNG at {}",
        screenshot.display()
    );
    within("the shutdown", server.shutdown()).await.unwrap();
    drop((cart, reviews));
    let _ = std::fs::remove_dir_all(&dir);
}
