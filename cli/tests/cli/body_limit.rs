//! `sinew call` reads response bodies up to `--max-body-bytes` (4 MiB by
//! default), against a real server that sends more.

use crate::support::serve;
use crate::{control_plane, control_plane_http2, sinew};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::StreamBody;
use std::convert::Infallible;

const CHUNK: usize = 64 * 1024;
static ZEROES: [u8; CHUNK] = [0; CHUNK];

/// A server whose body, in 64 KiB chunks of unknown total length, is one
/// chunk on `/small`, 4 MiB and one chunk on `/big`, and never ends on
/// `/endless`.
async fn generous_server() -> crate::support::Server {
    serve(tower::service_fn(|request: http::Request<_>| {
        let chunks = match request.uri().path() {
            "/small" => 1,
            "/big" => 4 * 1024 * 1024 / CHUNK + 1,
            _ => usize::MAX,
        };
        let frames = futures_util::stream::repeat_with(|| {
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(&ZEROES)))
        })
        .take(chunks);
        async move { Ok::<_, Infallible>(http::Response::new(StreamBody::new(frames))) }
    }))
    .await
}

/// Calls `reviews` with `args` and returns the JSON report.
async fn call(url: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["call", "reviews", "--control-plane", url, "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = sinew(&all).await;
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, report)
}

fn reason(report: &serde_json::Value) -> &str {
    report["failures"][0]["reason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_body_over_the_limit_fails_the_request_with_the_reason() {
    let server = generous_server().await;
    let (_ads, control) = control_plane("reviews", &[server.addr]).await;
    let url = control.url("");

    let (code, report) = call(&url, &["--path", "/small"]).await;
    assert_eq!((code, &report["ok"]), (0, &1.into()), "{report}");

    // Over the default: it used to be read whole, and the call succeeded.
    let (code, report) = call(&url, &["--path", "/big", "--count", "2"]).await;
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["failed"], 2, "{report}");
    assert!(
        reason(&report).ends_with("the response body is over --max-body-bytes (4194304 bytes)"),
        "{report}"
    );
    // A bigger limit takes it.
    let (code, report) = call(&url, &["--path", "/big", "--max-body-bytes", "5000000"]).await;
    assert_eq!(code, 0, "{report}");

    // A body that never ends: it used to keep the call running forever.
    let (code, report) = call(&url, &["--path", "/endless", "--max-body-bytes", "100000"]).await;
    assert_eq!(code, 1, "{report}");
    assert!(
        reason(&report).ends_with("the response body is over --max-body-bytes (100000 bytes)"),
        "{report}"
    );
}

/// A gRPC server whose `/t.Sizes/Small` replies 10 bytes and whose
/// `/t.Sizes/Large` replies 4 MiB and one byte, to a request of exactly the
/// bytes 0a 03.
async fn grpc_server() -> crate::support::Server {
    serve(tower::service_fn(
        |request: http::Request<hyper::body::Incoming>| async move {
            let size = match request.uri().path() {
                "/t.Sizes/Small" => 10,
                _ => 4 * 1024 * 1024 + 1,
            };
            let method = tower::service_fn(move |request: tonic::Request<Bytes>| async move {
                if request.into_inner().as_ref() != [0x0a, 0x03] {
                    return Err(tonic::Status::invalid_argument("not the --data-hex bytes"));
                }
                Ok(tonic::Response::new(Bytes::from(vec![0; size])))
            });
            let mut grpc = tonic::server::Grpc::new(sinew::mesh::RawCodec);
            Ok::<_, Infallible>(grpc.unary(method, request).await)
        },
    ))
    .await
}

#[tokio::test]
async fn the_limit_holds_for_grpc_messages_too() {
    let server = grpc_server().await;
    let (_ads, control) = control_plane_http2("reviews", &[server.addr]).await;
    let url = control.url("");
    let grpc = |method: &'static str| ["--grpc", method, "--data-hex", "0a03"];

    let (code, report) = call(&url, &grpc("/t.Sizes/Small")).await;
    assert_eq!(code, 0, "{report}");
    let (code, report) = call(&url, &grpc("/t.Sizes/Large")).await;
    assert_eq!(code, 1, "{report}");
    assert!(reason(&report).contains("4194304"), "{report}");
    let mut args = grpc("/t.Sizes/Large").to_vec();
    args.extend(["--max-body-bytes", "5000000"]);
    assert_eq!(call(&url, &args).await.0, 0);
    let mut args = grpc("/t.Sizes/Small").to_vec();
    args.extend(["--max-body-bytes", "9"]);
    let (code, report) = call(&url, &args).await;
    assert_eq!(code, 1, "{report}");
    assert!(
        reason(&report).contains("the limit is: 9 bytes"),
        "{report}"
    );
}
