//! Telemetry over real sockets: trace context across a hop (W3C and B3),
//! spans with their parent links, request metrics and edges on both
//! sides. The tests run on one thread, so that a thread's `tracing`
//! subscriber and `metrics` recorder see both the client and the server.

use super::*;
use sinew::telemetry::context::{self, TraceContext};
use std::collections::HashMap;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};

/// A span's name and its fields as text.
type Recorded = (&'static str, HashMap<String, String>);

/// A `tracing` subscriber that keeps every span's name and fields.
#[derive(Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<Recorded>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl tracing::Subscriber for Spans {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap();
        spans.push((span.metadata().name(), fields));
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.0.lock().unwrap();
        let index = span.into_u64() as usize - 1;
        values.record(&mut Fields(&mut spans[index].1));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

thread_local! {
    /// The spans of the test running on this thread.
    static SINK: std::cell::RefCell<Option<Spans>> = const { std::cell::RefCell::new(None) };
}

/// Ids of spans no test on their thread collects.
const UNCOLLECTED: u64 = 1 << 63;

/// The process's one subscriber, which hands each span to the [`Spans`]
/// of the test on its thread. One global subscriber, not one per test:
/// with several per-thread subscribers coming and going, tracing may
/// cache that no one wants a callsite, and a test sees none of its spans.
struct Routed;

impl tracing::Subscriber for Routed {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        SINK.with(|sink| match &*sink.borrow() {
            Some(spans) => spans.new_span(span),
            None => Id::from_u64(UNCOLLECTED),
        })
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if span.into_u64() == UNCOLLECTED {
            return;
        }
        SINK.with(|sink| {
            if let Some(spans) = &*sink.borrow() {
                spans.record(span, values);
            }
        });
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        crate::authz::capture_event(event);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs the binary's one subscriber (spans to the test of their
/// thread, authorization events to `authz`'s capture).
pub fn install_global() {
    let _ = tracing::subscriber::set_global_default(Routed);
}

/// Stops collecting on this thread when dropped.
pub struct Collecting;

impl Drop for Collecting {
    fn drop(&mut self) {
        SINK.with(|sink| sink.borrow_mut().take());
    }
}

impl Spans {
    /// Collects the spans made on this thread (the test's, on a
    /// current-thread runtime) until the guard is dropped.
    pub fn install(&self) -> Collecting {
        install_global();
        SINK.with(|sink| *sink.borrow_mut() = Some(self.clone()));
        Collecting
    }

    /// The spans named `name` whose `field` is `value`.
    pub fn find(&self, name: &str, field: &str, value: &str) -> Vec<HashMap<String, String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, f)| *n == name && f.get(field).map(String::as_str) == Some(value))
            .map(|(_, f)| f.clone())
            .collect()
    }
}

/// An application that answers with the `traceparent` it received and
/// the trace context it runs in (`trace_id-span_id`), or 500 for `/fail`.
fn echo() -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|req: Request<Incoming>| async move {
        let status = if req.uri().path() == "/fail" {
            500
        } else {
            200
        };
        let current = context::current()
            .map(|c| format!("{}-{}", c.trace_id, c.span_id))
            .unwrap_or_default();
        let received = req
            .headers()
            .get("traceparent")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let mut response = support::text(status, current);
        response
            .headers_mut()
            .insert("x-received", received.parse().unwrap());
        Ok(response)
    })
}

const ROOT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn a_trace_crosses_a_real_hop_with_the_attempt_as_the_servers_parent() {
    let spans = Spans::default();
    let _guard = spans.install();
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let server = mesh.serve("reviews", listener, echo()).await.unwrap();
    let root = TraceContext::parse_traceparent(ROOT).unwrap();
    let (status, headers, current) = context::scope(Some(root.clone()), get(&mesh, "/", &[])).await;
    assert_eq!(status, 200);
    let trace = root.trace_id.to_string();

    // The client side: the outbound request is a child of the task's
    // context, its attempt a child of the request.
    let outbound = spans.find("request", "sinew.direction", "outbound");
    assert_eq!(outbound.len(), 1, "{outbound:?}");
    let outbound = &outbound[0];
    assert_eq!(outbound["trace_id"], trace);
    assert_eq!(outbound["parent_span_id"], root.span_id.to_string());
    assert_eq!(outbound["otel.kind"], "internal");
    assert_eq!(outbound["sinew.route"], "0");
    assert_eq!(outbound["sinew.cluster"], "reviews");
    let attempts = spans.find("attempt", "trace_id", &trace);
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let attempt = &attempts[0];
    assert_eq!(attempt["parent_span_id"], outbound["span_id"]);
    assert_eq!(attempt["sinew.attempt"], "1");
    assert_eq!(attempt["sinew.endpoint"], addr.to_string());
    assert_eq!(attempt["otel.kind"], "client");
    assert_eq!(attempt["http.response.status_code"], "200");

    // On the wire: the attempt's context.
    let sent = TraceContext::parse_traceparent(headers["x-received"].to_str().unwrap()).unwrap();
    assert_eq!(sent.trace_id, root.trace_id);
    assert_eq!(sent.span_id.to_string(), attempt["span_id"]);

    // The server side: its span's parent is the attempt, and the
    // application runs in the server span's context.
    let inbound = spans.find("request", "sinew.direction", "inbound");
    assert_eq!(inbound.len(), 1, "{inbound:?}");
    let inbound = &inbound[0];
    assert_eq!(inbound["trace_id"], trace);
    assert_eq!(inbound["parent_span_id"], attempt["span_id"]);
    assert_eq!(inbound["otel.kind"], "server");
    assert_eq!(inbound["http.request.method"], "GET");
    assert_eq!(inbound["url.path"], "/");
    assert_eq!(inbound["sinew.service"], "reviews");
    assert_eq!(inbound["sinew.outcome"], "success");
    assert_eq!(current, format!("{trace}-{}", inbound["span_id"]));
    within("shutdown", server.shutdown()).await.unwrap();
}

/// GET `path` at `addr` with a plain hyper client, with `headers`; the
/// answer's body.
async fn plain_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> String {
    let mut request = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within(
        "a response",
        support::client().request(request.body(Empty::<Bytes>::new()).unwrap()),
    )
    .await
    .unwrap();
    support::body_text(response.into_body()).await
}

#[tokio::test]
async fn b3_headers_single_and_multi_are_read_by_the_server() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let server = mesh.serve("reviews", listener, echo()).await.unwrap();
    // The application runs in the caller's trace (in a span of the
    // server's when spans are enabled, in the caller's otherwise).
    let trace = |current: String| current.split('-').next().unwrap().to_owned();
    let single = plain_get(
        addr,
        "/",
        &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
    )
    .await;
    assert_eq!(trace(single), "80f198ee56343ba864fe8b2a57d3eff7");
    let multi = plain_get(
        addr,
        "/",
        &[
            ("X-B3-TraceId", "463ac35c9f6413ad"),
            ("X-B3-SpanId", "a2fb4a1d1a96d312"),
            ("X-B3-Sampled", "1"),
        ],
    )
    .await;
    assert_eq!(trace(multi), "0000000000000000463ac35c9f6413ad");
    // An unsampled B3 context is read too; a malformed one is not.
    let malformed = plain_get(addr, "/", &[("b3", "80f198ee56343ba8-xyz")]).await;
    assert!(!malformed.starts_with("80f198ee56343ba8"), "{malformed}");
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn an_invalid_traceparent_is_ignored_and_starts_a_new_trace() {
    let spans = Spans::default();
    let _guard = spans.install();
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let server = mesh.serve("reviews", listener, echo()).await.unwrap();
    let invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let current = plain_get(addr, "/", &[("traceparent", invalid)]).await;
    let inbound = spans.find("request", "sinew.direction", "inbound");
    assert_eq!(inbound.len(), 1);
    let inbound = &inbound[0];
    assert!(!inbound.contains_key("parent_span_id"), "{inbound:?}");
    assert_eq!(inbound["sinew.outcome"], "success");
    assert_ne!(inbound["trace_id"], "00000000000000000000000000000000");
    assert_eq!(
        current,
        format!("{}-{}", inbound["trace_id"], inbound["span_id"])
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn requests_are_counted_by_edge_route_and_status_and_edges_recorded_on_both_sides() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's recorder: the test's runtime runs everything on it.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (listener, addr) = listener().await;
    let mesh = web_mesh(addr).await;
    assert_eq!(mesh.service_name(), "web");
    let server = mesh.serve("reviews", listener, echo()).await.unwrap();
    for path in ["/", "/", "/fail"] {
        get(&mesh, path, &[]).await;
    }
    let counts: HashMap<Vec<(String, String)>, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "sinew_requests_total")
        .map(|(key, _, _, value)| {
            let mut labels: Vec<_> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let DebugValue::Counter(count) = value else {
                panic!("not a counter")
            };
            (labels, count)
        })
        .collect();
    let labels = |direction: &str, source: &str, route: &str, class: &str| {
        let mut labels: Vec<(String, String)> = [
            ("destination", "reviews"),
            ("direction", direction),
            ("route", route),
            ("source", source),
            ("status_class", class),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        labels.sort();
        labels
    };
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert_eq!(counts[&labels("outbound", "web", "0", "2xx")], 2);
    assert_eq!(counts[&labels("outbound", "web", "0", "5xx")], 1);
    // Without mutual TLS the caller is unknown; the server has no route.
    assert_eq!(counts[&labels("inbound", "unknown", "", "2xx")], 2);
    assert_eq!(counts[&labels("inbound", "unknown", "", "5xx")], 1);
    let histograms = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "sinew_request_duration_seconds")
        .count();
    assert_eq!(histograms, 4);

    let edges = mesh.edges().take();
    let seen: Vec<_> = edges
        .iter()
        .map(|e| {
            (
                e.edge.direction.as_str(),
                &*e.edge.source,
                &*e.edge.destination,
                e.requests,
                e.failures,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("outbound", "web", "reviews", 3, 1),
            ("inbound", "unknown", "reviews", 3, 1),
        ]
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_retry_is_an_attempt_span_of_its_own_with_its_own_traceparent() {
    let spans = Spans::default();
    let _guard = spans.install();
    let (listener, addr) = listener().await;
    let config = MeshConfig::from_yaml(&format!(
        "services:\n  reviews:\n    routes:\n      - split: [{{ cluster: reviews }}]\n        \
         retry: {{ max_attempts: 2, backoff: {{ base: 1ms, max: 2ms }} }}\n\
         clusters:\n  reviews:\n    endpoints: [{{ address: \"{addr}\" }}]\n"
    ))
    .unwrap();
    let mesh = mesh(config).await;
    // The first request fails with 503 (retryable), the next succeeds.
    let calls = Arc::new(AtomicUsize::new(0));
    let app = tower::service_fn(move |req: Request<Incoming>| {
        let calls = calls.clone();
        async move {
            let status = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                503
            } else {
                200
            };
            let received = req.headers()["traceparent"].to_str().unwrap().to_owned();
            let mut response = support::text(status, "");
            response
                .headers_mut()
                .insert("x-received", received.parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    });
    let server = mesh.serve("reviews", listener, app).await.unwrap();
    let (status, headers, _) = get(&mesh, "/", &[]).await;
    assert_eq!(status, 200);
    let outbound = spans.find("request", "sinew.direction", "outbound");
    assert_eq!(outbound.len(), 1);
    let outbound = &outbound[0];
    assert_eq!(outbound["sinew.outcome"], "success");
    let attempts = spans.find("attempt", "trace_id", &outbound["trace_id"]);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    for (attempt, (number, status)) in attempts.iter().zip([("1", "503"), ("2", "200")]) {
        assert_eq!(attempt["parent_span_id"], outbound["span_id"]);
        assert_eq!(attempt["sinew.attempt"], number);
        assert_eq!(attempt["http.response.status_code"], status);
    }
    assert_ne!(attempts[0]["span_id"], attempts[1]["span_id"]);
    // Each try reached the server with its own span as the parent.
    let inbound = spans.find("request", "sinew.direction", "inbound");
    assert_eq!(inbound.len(), 2);
    assert_eq!(inbound[0]["parent_span_id"], attempts[0]["span_id"]);
    assert_eq!(inbound[1]["parent_span_id"], attempts[1]["span_id"]);
    assert_eq!(inbound[0]["sinew.outcome"], "failure");
    let sent = TraceContext::parse_traceparent(headers["x-received"].to_str().unwrap()).unwrap();
    assert_eq!(sent.span_id.to_string(), attempts[1]["span_id"]);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// Over mutual TLS, the server names its caller by the `sa` of its
/// SPIFFE ID, in its edges and on its span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mtls_the_inbound_edge_names_the_caller_by_its_spiffe_id() {
    use crate::certs::Ca;
    use crate::mtls_support::*;
    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let config = mtls_config(addr, "http2", "{ mtls: strict }");
    let server_mesh = mesh_as(identity_of(&ca, REVIEWS), config.clone()).await;
    let (app, _) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();
    let client = mesh_as(identity_of(&ca, CART), config).await;
    let (status, caller, _) = mesh_get(&client).await.unwrap();
    assert_eq!((status, caller.as_str()), (200, CART));
    let inbound: Vec<_> = server_mesh
        .edges()
        .take()
        .into_iter()
        .map(|e| {
            (
                e.edge.direction.as_str(),
                e.edge.source,
                e.edge.destination,
                e.requests,
            )
        })
        .collect();
    assert_eq!(
        inbound,
        [("inbound", "cart".into(), "reviews".into(), 1)],
        "the caller is the sa of spiffe://example.org/ns/shop/sa/cart"
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A caller's ask for the decision report (`sinew-debug`) is for its own
/// mesh client: the server takes it off, so that a handler forwarding its
/// request's headers through its own mesh client cannot have an outsider
/// answered with the topology behind it.
#[tokio::test]
async fn the_servers_handler_never_sees_the_ask_for_a_decision_report() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http1", "")).await;
    let handler = tower::service_fn(|req: Request<Incoming>| async move {
        let seen = req.headers().contains_key("sinew-debug");
        let body = if seen { "asked" } else { "clean" };
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    let server = mesh.serve("reviews", listener, handler).await.unwrap();
    let body = plain_get(addr, "/", &[("sinew-debug", "1")]).await;
    assert_eq!(body, "clean");
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A request its caller gives up on (the future dropped: the caller's own
/// timeout, a client gone) is counted as `cancelled`, a failure, on both
/// sides: the slowest requests are not left out of the success rate.
#[tokio::test]
async fn a_request_given_up_by_its_caller_is_counted_as_cancelled_on_both_sides() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (listener, addr) = listener().await;
    let mesh = web_mesh(addr).await;
    let (app, mut arrivals) = app();
    let (dropped, release) = (app.dropped.clone(), app.release.clone());
    let server = mesh
        .serve("reviews", listener, app.service())
        .await
        .unwrap();
    let request = Request::get("http://reviews/hold")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut call = Box::pin(mesh.http_client("reviews").oneshot(request));
    // Polled until the handler has the request, then given up.
    tokio::select! {
        _ = &mut call => panic!("the handler holds the request"),
        arrived = within("the request at the handler", arrivals.recv()) => arrived.unwrap(),
    }
    drop(call);
    // The server learns it when the connection closes and drops the
    // handler.
    within("the handler dropped", async {
        while dropped.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // A snapshot drains the counters: totals kept across snapshots.
    let mut cancelled: HashMap<String, u64> = HashMap::new();
    let count = |cancelled: &mut HashMap<String, u64>| {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_owned())
            };
            if key.name() == "sinew_requests_total"
                && label("status_class").as_deref() == Some("cancelled")
                && let (Some(direction), DebugValue::Counter(n)) = (label("direction"), value)
            {
                *cancelled.entry(direction).or_default() += n;
            }
        }
    };
    within("both sides counted", async {
        loop {
            count(&mut cancelled);
            if cancelled.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(cancelled["outbound"], 1, "{cancelled:?}");
    assert_eq!(cancelled["inbound"], 1, "{cancelled:?}");
    let edges = mesh.edges().take();
    assert!(
        edges.iter().all(|e| e.requests == 1 && e.failures == 1),
        "{edges:?}"
    );
    assert_eq!(edges.len(), 2, "{edges:?}");
    release.add_permits(1);
    within("shutdown", server.shutdown()).await.unwrap();
}

/// A mesh of the service `web`, whose `reviews` routes to `addr`.
async fn web_mesh(addr: SocketAddr) -> Mesh {
    Mesh::builder()
        .service_name("web")
        .config(config(addr, "http1", ""))
        .build()
        .await
        .unwrap()
}
