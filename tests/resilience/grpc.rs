use crate::support::{h2_client, serve};
use bytes::Bytes;
use http::uri::PathAndQuery;
use sinew::breaker::{BreakerConfig, BreakerLayer, State};
use sinew::mesh::RawCodec;
use sinew::retry::{RetryConfig, RetryLayer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::{Code, Status};
use tower::ServiceBuilder;

/// A real tonic gRPC server with one unary method that fails with
/// `code` for its first `failures` calls, then echoes.
async fn grpc_server(
    failures: usize,
    code: Code,
    calls: Arc<AtomicUsize>,
) -> crate::support::Server {
    serve(tower::service_fn(
        move |req: http::Request<hyper::body::Incoming>| {
            let calls = calls.clone();
            async move {
                let method = tower::service_fn(move |req: tonic::Request<Bytes>| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < failures {
                            Err(Status::new(code, "not now"))
                        } else {
                            Ok(tonic::Response::new(req.into_inner()))
                        }
                    }
                });
                let mut grpc = tonic::server::Grpc::new(RawCodec);
                Ok::<_, std::convert::Infallible>(grpc.unary(method, req).await)
            }
        },
    ))
    .await
}

fn path() -> PathAndQuery {
    PathAndQuery::from_static("/sinew.test.Echo/Call")
}

/// One unary call of the test method.
async fn call<T>(grpc: &mut tonic::client::Grpc<T>, message: &'static [u8]) -> Result<Bytes, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<sinew::error::BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<sinew::error::BoxError>,
{
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let request = tonic::Request::new(Bytes::from_static(message));
    grpc.unary(request, path(), RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn grpc_unavailable_is_retried_through_tonic() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server = grpc_server(2, Code::Unavailable, calls.clone()).await;
    let mut config = RetryConfig {
        // gRPC requests are POSTs: declare the method idempotent.
        assume_idempotent: true,
        ..RetryConfig::default()
    };
    config.backoff.base = Duration::from_millis(1);
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(config).unwrap())
        .service(h2_client());
    let origin = server.url("").parse().unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(stack, origin);
    let reply = call(&mut grpc, b"ping").await.unwrap();
    assert_eq!(reply, Bytes::from_static(b"ping"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // A non-retryable code is returned as it is.
    let calls = Arc::new(AtomicUsize::new(0));
    let server = grpc_server(1, Code::InvalidArgument, calls.clone()).await;
    let stack = ServiceBuilder::new()
        .layer(
            RetryLayer::new(RetryConfig {
                assume_idempotent: true,
                ..RetryConfig::default()
            })
            .unwrap(),
        )
        .service(h2_client());
    let mut grpc = tonic::client::Grpc::with_origin(stack, server.url("").parse().unwrap());
    let status = call(&mut grpc, b"x").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

type BreakerChannel = sinew::breaker::Breaker<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >,
>;

/// A tonic client to `server` through a breaker that trips after
/// `trip_after` failures in a row.
fn behind_breaker(
    trip_after: u32,
    server: &crate::support::Server,
) -> (BreakerLayer, tonic::client::Grpc<BreakerChannel>) {
    let breaker = BreakerLayer::new(BreakerConfig {
        consecutive_failures: Some(trip_after),
        ..BreakerConfig::default()
    })
    .unwrap();
    let stack = ServiceBuilder::new()
        .layer(breaker.clone())
        .service(h2_client());
    let grpc = tonic::client::Grpc::with_origin(stack, server.url("").parse().unwrap());
    (breaker, grpc)
}

#[tokio::test]
async fn the_breaker_reads_grpc_status_not_the_http_status() {
    // Every failure is HTTP 200 with grpc-status INTERNAL.
    let calls = Arc::new(AtomicUsize::new(0));
    let server = grpc_server(usize::MAX, Code::Internal, calls.clone()).await;
    let (breaker, mut grpc) = behind_breaker(3, &server);
    for _ in 0..3 {
        let status = call(&mut grpc, b"x").await.unwrap_err();
        assert_eq!(status.code(), Code::Internal);
    }
    assert_eq!(breaker.state(), State::Open);

    // Successes carry grpc-status 0 in the trailers: they keep a breaker closed.
    let calls = Arc::new(AtomicUsize::new(0));
    let server = grpc_server(0, Code::Ok, calls.clone()).await;
    let (breaker, mut grpc) = behind_breaker(1, &server);
    for _ in 0..5 {
        call(&mut grpc, b"ok").await.unwrap();
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}
