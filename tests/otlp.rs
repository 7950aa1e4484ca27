//! OTLP span export (feature `otlp`) against a receiver built on the
//! published OTLP protobuf definitions (`opentelemetry-proto`'s tonic
//! server), not on Sinew's types: a client calls Sinew server A, whose
//! handler calls Sinew server B through the mesh; the six spans arrive in
//! one trace, each linked to its parent across both hops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    unreachable_pub
)]

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use sinew::config::MeshConfig;
use sinew::mesh::Mesh;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

const PATIENCE: Duration = Duration::from_secs(20);

/// The receiver: every span it is sent goes to the channel.
struct Receiver(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let _ = self.0.send(span);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A mesh named `name` whose service `to` is at `addr`.
async fn mesh(name: &str, to: &str, addr: SocketAddr) -> Mesh {
    let config = MeshConfig::from_yaml(&format!(
        "services:\n  {to}:\n    routes: [{{ split: [{{ cluster: {to} }}] }}]\n\
         clusters:\n  {to}:\n    endpoints: [{{ address: \"{addr}\" }}]\n"
    ))
    .unwrap();
    Mesh::builder()
        .service_name(name)
        .config(config)
        .build()
        .await
        .unwrap()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_linked_across_two_sinew_hops() {
    // The receiver.
    let (spans_tx, mut spans_rx) = mpsc::unbounded_channel();
    let (listener_r, addr_r) = listener().await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(spans_tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener_r)),
    );
    let export =
        sinew::telemetry::otlp::OtlpExport::new(&format!("http://{addr_r}"), "test").unwrap();
    let subscriber = tracing_subscriber::registry().with(export.layer());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    // B answers; A calls B through its mesh; the client calls A.
    let (listener_b, addr_b) = listener().await;
    let (listener_a, addr_a) = listener().await;
    let mesh_b = mesh("b", "none", addr_b).await;
    let server_b = mesh_b
        .serve(
            "b",
            listener_b,
            tower::service_fn(|_: Request<Incoming>| async { Ok::<_, Infallible>(ok()) }),
        )
        .await
        .unwrap();
    let mesh_a = mesh("a", "b", addr_b).await;
    let to_b = mesh_a.http_client::<Empty<Bytes>>("b");
    let server_a = mesh_a
        .serve(
            "a",
            listener_a,
            tower::service_fn(move |_: Request<Incoming>| {
                let to_b = to_b.clone();
                async move {
                    let request = Request::get("http://b/").body(Empty::new()).unwrap();
                    let response = to_b.oneshot(request).await.unwrap();
                    let _ = response.into_body().collect().await;
                    Ok::<_, Infallible>(ok())
                }
            }),
        )
        .await
        .unwrap();
    let client = mesh("client", "a", addr_a).await;
    let request = Request::get("http://a/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, client.http_client("a").oneshot(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);

    // Six spans: the client's request and attempt, A's inbound, outbound
    // and attempt, B's inbound.
    let export = std::sync::Arc::new(export);
    let mut spans: Vec<Span> = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while spans.len() < 6 {
            let flushing = export.clone();
            tokio::task::spawn_blocking(move || flushing.flush())
                .await
                .unwrap()
                .unwrap();
            while let Ok(span) = spans_rx.try_recv() {
                spans.push(span);
            }
            if spans.len() < 6 {
                // Wait for the next export, or flush again.
                if let Ok(Some(span)) =
                    tokio::time::timeout(Duration::from_millis(200), spans_rx.recv()).await
                {
                    spans.push(span);
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} spans arrived: {spans:#?}", spans.len()));

    let find = |what: &str, key: &str, value: &str| -> &Span {
        let found: Vec<&Span> = spans
            .iter()
            .filter(|s| {
                attribute(s, key) == Some(value)
                    && match what {
                        "attempt" => attribute(s, "sinew.direction").is_none(),
                        direction => attribute(s, "sinew.direction") == Some(direction),
                    }
            })
            .collect();
        assert_eq!(found.len(), 1, "{what} {key}={value}: {spans:#?}");
        found[0]
    };
    let client_request = find("outbound", "sinew.service", "client");
    let client_attempt = find("attempt", "sinew.cluster", "a");
    let a_inbound = find("inbound", "sinew.service", "a");
    let a_outbound = find("outbound", "sinew.service", "a");
    let a_attempt = find("attempt", "sinew.cluster", "b");
    let b_inbound = find("inbound", "sinew.service", "b");

    let trace = &client_request.trace_id;
    for span in [client_attempt, a_inbound, a_outbound, a_attempt, b_inbound] {
        assert_eq!(&span.trace_id, trace, "{span:#?}");
    }
    assert!(client_request.parent_span_id.is_empty(), "the root");
    let parent_of = |child: &Span, parent: &Span| {
        assert_eq!(
            child.parent_span_id, parent.span_id,
            "{child:#?}\nparent {parent:#?}"
        );
    };
    parent_of(client_attempt, client_request);
    parent_of(a_inbound, client_attempt);
    parent_of(a_outbound, a_inbound);
    parent_of(a_attempt, a_outbound);
    parent_of(b_inbound, a_attempt);
    // Kinds as OpenTelemetry's conventions say: SERVER 2, CLIENT 3, INTERNAL 1.
    assert_eq!(a_inbound.kind, 2);
    assert_eq!(a_attempt.kind, 3);
    assert_eq!(a_outbound.kind, 1);
    assert_eq!(b_inbound.name, "GET");
    assert_eq!(attribute(a_attempt, "http.request.method"), Some("GET"));

    drop((server_a, server_b));
}
