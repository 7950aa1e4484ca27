//! The Prometheus example, scraped for real: the exporter installed as
//! the process's recorder (this binary holds this one test, as a global
//! recorder is one per process), serving on a loopback port; the
//! example's mesh driven through a retry and a breaker trip; `/metrics`
//! fetched over HTTP and its text format parsed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/prometheus.rs"]
mod example;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One sample of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples and the `# TYPE` of each family.
struct Page {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
}

impl Page {
    fn parse(text: &str) -> Page {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        let mut helps = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a TYPE line names a type");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                helps.insert(name.to_owned(), help.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            samples.push(sample(line));
        }
        Page {
            samples,
            types,
            helps,
        }
    }

    /// The value of the sample `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }
}

/// `name{k="v",...} value` or `name value`.
fn sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').expect("labels close");
            let mut labels = BTreeMap::new();
            let mut rest = body;
            while !rest.is_empty() {
                let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
                // Our values hold no quotes or backslashes: the next quote ends it.
                let (value, after) = after.split_once('"').expect("a closing quote");
                labels.insert(key.to_owned(), value.to_owned());
                rest = after.strip_prefix(',').unwrap_or(after);
            }
            (name, labels)
        }
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Installs the exporter on a free loopback port: a port just freed may
/// be taken again before the exporter binds it, so a few are tried.
fn install_on_a_free_port() -> SocketAddr {
    let mut last = None;
    for _ in 0..5 {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a loopback port");
        match example::install_exporter(free) {
            Ok(()) => return free,
            Err(e) => last = Some(e),
        }
    }
    panic!("the exporter could not listen: {last:?}");
}

async fn scrape(addr: SocketAddr) -> Page {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}/metrics").parse().expect("a URI");
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .expect("the exporter answers in time")
        .expect("the exporter answers");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the page")
        .to_bytes();
    Page::parse(std::str::from_utf8(&body).expect("UTF-8 text"))
}

fn is_snake_case(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_serves_the_meshs_metrics_to_a_scraper() {
    let addr = install_on_a_free_port();
    let demo = example::start().await.expect("the example's mesh starts");

    assert_eq!(demo.get("/").await.ok(), Some(StatusCode::OK));
    // Each /flaky fails once with 503, then succeeds on its retry.
    for _ in 0..3 {
        assert_eq!(demo.get("/flaky").await.ok(), Some(StatusCode::OK));
    }
    // Two 500s in a row open the breaker of `errors`; the third request
    // is refused without reaching the application.
    for _ in 0..2 {
        let status = demo.get("/broken").await.ok();
        assert_eq!(status, Some(StatusCode::INTERNAL_SERVER_ERROR));
    }
    let before = demo.reached.load(Ordering::SeqCst);
    let refused = demo.get("/broken").await;
    assert_ne!(refused.ok(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(
        demo.reached.load(Ordering::SeqCst),
        before,
        "refused by the breaker"
    );
    assert_eq!(before, 1 + 6 + 2);

    let page = scrape(addr).await;
    let route = [("service", "reviews"), ("route", "1")];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = route.to_vec();
        labels.push(extra);
        labels
    };
    assert_eq!(
        page.value("sinew_retries_total", &with(("reason", "status"))),
        Some(3.0)
    );
    assert_eq!(
        page.value("sinew_retries_total", &with(("reason", "error"))),
        Some(0.0)
    );
    assert_eq!(
        page.value("sinew_retry_budget_exhausted_total", &route),
        Some(0.0)
    );
    assert_eq!(
        page.value(
            "sinew_breaker_transitions_total",
            &[("cluster", "errors"), ("from", "closed"), ("to", "open")]
        ),
        Some(1.0)
    );
    assert_eq!(
        page.value(
            "sinew_breaker_state",
            &[("cluster", "errors"), ("state", "open")]
        ),
        Some(1.0)
    );
    assert_eq!(
        page.value(
            "sinew_breaker_state",
            &[("cluster", "errors"), ("state", "closed")]
        ),
        Some(0.0)
    );
    for cluster in ["reviews", "errors"] {
        assert_eq!(
            page.value(
                "sinew_endpoints",
                &[("cluster", cluster), ("state", "healthy")]
            ),
            Some(1.0),
            "{cluster}"
        );
        assert_eq!(
            page.value(
                "sinew_endpoints",
                &[("cluster", cluster), ("state", "ejected")]
            ),
            Some(0.0),
            "{cluster}"
        );
    }
    assert_eq!(
        page.value("sinew_config_version", &[("source", "static")]),
        Some(1.0)
    );

    // Described once, typed as they are, named as Prometheus names them.
    for (name, kind) in [
        ("sinew_retries_total", "counter"),
        ("sinew_breaker_transitions_total", "counter"),
        ("sinew_breaker_state", "gauge"),
        ("sinew_endpoints", "gauge"),
        ("sinew_config_version", "gauge"),
    ] {
        assert_eq!(
            page.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
        assert!(
            page.helps.get(name).is_some_and(|h| !h.is_empty()),
            "{name} has no HELP"
        );
    }
    let ours: Vec<&Sample> = page
        .samples
        .iter()
        .filter(|s| s.name.starts_with("sinew_"))
        .collect();
    assert!(!ours.is_empty());
    for s in ours {
        assert!(is_snake_case(&s.name), "{s:?}");
        assert!(s.labels.keys().all(|k| is_snake_case(k)), "{s:?}");
        if page.types.get(&s.name).map(String::as_str) == Some("counter") {
            assert!(s.name.ends_with("_total"), "{s:?}");
        }
    }

    // The counters move with the traffic between two scrapes.
    assert_eq!(demo.get("/flaky").await.ok(), Some(StatusCode::OK));
    let page = scrape(addr).await;
    assert_eq!(
        page.value("sinew_retries_total", &with(("reason", "status"))),
        Some(4.0)
    );
    tokio::time::timeout(Duration::from_secs(10), demo.server.shutdown())
        .await
        .expect("the server stops in time")
        .expect("the server stops");
}
