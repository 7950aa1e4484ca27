//! A tonic server with the mesh's layer and incoming connections, called
//! by the mesh's gRPC channel and by grpcio (Python).

use super::*;
use sinew::mesh::RawCodec;
use tonic::Code;

/// A unary echo method, hand-written (no protoc): `/sinew.test.Echo/Call`.
#[derive(Clone)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "sinew.test.Echo";
}

impl tower::Service<Request<tonic::body::Body>> for Echo {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let method = tower::service_fn(|req: tonic::Request<Bytes>| async move {
                Ok::<_, tonic::Status>(tonic::Response::new(req.into_inner()))
            });
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(method, request)
                .await)
        })
    }
}

/// Serves Echo as `reviews` with tonic's own builder, the mesh's layer and
/// its incoming connections; stops when the sender is dropped or sent.
async fn tonic_server(mesh: &Mesh, listener: TcpListener) -> tokio::sync::oneshot::Sender<()> {
    let server = mesh.server("reviews");
    let layer = server.layer().unwrap();
    let incoming = server.incoming(listener).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(Echo)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    stop
}

async fn call(mesh: &Mesh, message: &'static [u8]) -> Result<Bytes, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(mesh.grpc_channel("reviews"));
    within("ready", grpc.ready()).await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/sinew.test.Echo/Call");
    within(
        "a gRPC answer",
        grpc.unary(
            tonic::Request::new(Bytes::from_static(message)),
            path,
            RawCodec,
        ),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_tonic_server_behind_the_stack_answers_the_mesh_and_refuses_with_grpc_codes() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(
        addr,
        "http2",
        "{ rate_limit: { per_second: 0.01, burst: 1 } }",
    ))
    .await;
    let _stop = tonic_server(&mesh, listener).await;
    assert_eq!(
        call(&mesh, b"ping").await.unwrap(),
        Bytes::from_static(b"ping")
    );
    let refused = call(&mesh, b"ping").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    // The limits change live: the rate limit is gone.
    mesh.apply(config(
        addr,
        "http2",
        "{ concurrency_limit: { max_concurrent: 4 } }",
    ))
    .unwrap();
    assert_eq!(
        call(&mesh, b"again").await.unwrap(),
        Bytes::from_static(b"again")
    );
    // An expired budget is refused with DEADLINE_EXCEEDED.
    let mut grpc = tonic::client::Grpc::new(mesh.grpc_channel("reviews"));
    within("ready", grpc.ready()).await.unwrap();
    let mut request = tonic::Request::new(Bytes::from_static(b"late"));
    request
        .metadata_mut()
        .insert("grpc-timeout", "0m".parse().unwrap());
    let path = http::uri::PathAndQuery::from_static("/sinew.test.Echo/Call");
    let late = within("a gRPC answer", grpc.unary(request, path, RawCodec)).await;
    assert_eq!(late.unwrap_err().code(), Code::DeadlineExceeded);
}

#[tokio::test]
async fn tonic_connections_over_the_cap_are_closed() {
    let (listener, addr) = listener().await;
    let mesh = mesh(config(addr, "http2", "{ connections: { max: 1 } }")).await;
    let _stop = tonic_server(&mesh, listener).await;
    // The mesh's channel holds the one connection.
    assert_eq!(call(&mesh, b"a").await.unwrap(), Bytes::from_static(b"a"));
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = within(
        "the server closes",
        tokio::io::AsyncReadExt::read(&mut second, &mut buf),
    )
    .await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without a byte: {read:?}"
    );
}

/// grpcio calls through the stack: a first call answered, a second refused
/// with RESOURCE_EXHAUSTED by the rate limit.
#[tokio::test]
async fn grpcio_calls_a_tonic_server_behind_the_stack() {
    let Ok(python) = std::env::var("SINEW_XDS_PYTHON") else {
        eprintln!(
            "skipped: SINEW_XDS_PYTHON is not set (scripts/test.sh sets it to an interpreter with grpcio)"
        );
        return;
    };
    let (listener, addr) = listener().await;
    let mesh = mesh(config(
        addr,
        "http2",
        "{ rate_limit: { per_second: 0.01, burst: 1 } }",
    ))
    .await;
    let _stop = tonic_server(&mesh, listener).await;
    let script = format!(
        r#"
import grpc
channel = grpc.insecure_channel("{addr}")
call = channel.unary_unary("/sinew.test.Echo/Call")
print(call(b"hi", timeout=10).decode())
try:
    call(b"hi", timeout=10)
    print("answered")
except grpc.RpcError as e:
    print(e.code().name)
"#
    );
    let output = within(
        "grpcio",
        tokio::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["hi", "RESOURCE_EXHAUSTED"]
    );
}

/// gRPC through both stacks: spans named by the RPC, and requests counted
/// by gRPC code, refusals of the server stack included.
#[tokio::test]
async fn grpc_requests_are_traced_and_counted_by_grpc_code() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let spans = crate::telemetry::Spans::default();
    let _tracing = spans.install();
    let (listener, addr) = listener().await;
    let mesh = mesh(config(
        addr,
        "http2",
        "{ rate_limit: { per_second: 0.01, burst: 1 } }",
    ))
    .await;
    let _stop = tonic_server(&mesh, listener).await;
    call(&mesh, b"ping").await.unwrap();
    let refused = call(&mesh, b"ping").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    let codes: Vec<(String, String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "sinew_requests_total")
        .map(|(key, _, _, value)| {
            let label = |name: &str| {
                key.key()
                    .labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            let DebugValue::Counter(count) = value else {
                panic!("not a counter")
            };
            (label("direction"), label("grpc_code"), count)
        })
        .collect();
    for direction in ["inbound", "outbound"] {
        for code in ["OK", "RESOURCE_EXHAUSTED"] {
            assert!(
                codes.contains(&(direction.to_owned(), code.to_owned(), 1)),
                "{direction} {code}: {codes:?}"
            );
        }
    }
    let served = spans.find("request", "sinew.direction", "inbound");
    assert_eq!(served.len(), 2);
    assert_eq!(served[0]["otel.name"], "sinew.test.Echo/Call");
    assert_eq!(served[0]["rpc.system"], "grpc");
    assert_eq!(served[0]["rpc.service"], "sinew.test.Echo");
    assert_eq!(served[0]["rpc.method"], "Call");
    assert_eq!(served[1]["rpc.grpc.status_code"], "8");
    assert_eq!(served[1]["sinew.outcome"], "failure");
}
