//! `sinew call`: requests through the mesh, and who served them.

use crate::args::Call;
use crate::{body, output};
use bytes::Bytes;
use http_body_util::Empty;
use sinew::mesh::{RawCodec, ServedBy};
use sinew::telemetry::report::ReportSink;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Mutex;
use tower::ServiceExt;

#[derive(Default)]
struct Tally {
    served_by: BTreeMap<String, usize>,
    failures: BTreeMap<String, usize>,
    /// Each request's decision report, with `--report`.
    reports: Vec<String>,
}

pub(crate) async fn run(call: Call) -> Result<ExitCode, String> {
    let mesh = crate::mesh(&call.source, call.wait).await?;
    if call.explain {
        return explain(&mesh, &call).await;
    }
    let call = Arc::new(call);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..call.concurrency.min(call.count))
        .map(|_| {
            let (mesh, call, tally, next) =
                (mesh.clone(), call.clone(), tally.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < call.count {
                    let sink = ReportSink::default();
                    let outcome = match &call.grpc {
                        Some(method) => grpc_once(&mesh, &call, method, &sink).await,
                        None => http_once(&mesh, &call, &sink).await,
                    };
                    let mut tally = tally.lock().await;
                    if call.report {
                        let report = sink.take().map_or_else(
                            || format!("{}: no decision (not routed)", call.service),
                            |r| r.to_string(),
                        );
                        tally.reports.push(report);
                    }
                    match outcome {
                        Ok(endpoint) => *tally.served_by.entry(endpoint).or_insert(0) += 1,
                        Err(reason) => *tally.failures.entry(reason).or_insert(0) += 1,
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    let tally = tally.lock().await;
    let failed: usize = tally.failures.values().sum();
    output::print(&report(&call, &tally, failed))?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report: JSON with `--json`, lines of text otherwise.
fn report(call: &Call, tally: &Tally, failed: usize) -> String {
    if call.json {
        let report = serde_json::json!({
            "service": call.service,
            "requests": call.count,
            "ok": call.count - failed,
            "failed": failed,
            "served_by": tally.served_by,
            "failures": tally.failures.iter().map(|(reason, count)| serde_json::json!({"reason": reason, "count": count})).collect::<Vec<_>>(),
        });
        let mut report = report;
        if call.report {
            report["reports"] = serde_json::json!(tally.reports);
        }
        return format!("{report:#}\n");
    }
    let mut text = String::new();
    for report in &tally.reports {
        text += report;
        text += "\n";
    }
    text += &format!(
        "{} requests to {}: {} ok, {failed} failed\n",
        call.count,
        call.service,
        call.count - failed
    );
    for (endpoint, n) in &tally.served_by {
        text += &format!("  {endpoint:<24} {n}\n");
    }
    for (reason, n) in &tally.failures {
        text += &format!("  failed ×{n}: {reason}\n");
    }
    text
}

fn served_by(extensions: &http::Extensions) -> String {
    extensions
        .get::<ServedBy>()
        .map_or_else(|| "(unknown endpoint)".to_owned(), |s| s.0.to_string())
}

/// `--explain`: what the mesh would do with the request, sent nowhere.
async fn explain(mesh: &sinew::mesh::Mesh, call: &Call) -> Result<ExitCode, String> {
    let request = http_request(call)?;
    match mesh.explain_when_known(&call.service, &request).await {
        Ok(explanation) => {
            output::print(&explanation.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(unroutable) => {
            output::print(&format!(
                "GET {} to {} cannot be routed: {unroutable}\n",
                call.path, call.service
            ))?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn http_request(call: &Call) -> Result<http::Request<Empty<Bytes>>, String> {
    let uri = format!("http://{}{}", call.service, call.path);
    http::Request::get(uri)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())
}

async fn http_once(
    mesh: &sinew::mesh::Mesh,
    call: &Call,
    sink: &ReportSink,
) -> Result<String, String> {
    let mut request = http_request(call)?;
    request.extensions_mut().insert(sink.clone());
    let response = mesh
        .http_client::<Empty<Bytes>>(&call.service)
        .oneshot(request)
        .await
        .map_err(|e| e.to_string())?;
    let endpoint = served_by(response.extensions());
    let status = response.status();
    // Only the start of a body is shown; all of it is read, within the limit.
    let head = body::read(response.into_body(), call.max_body_bytes, 200)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    if status.is_success() {
        Ok(endpoint)
    } else {
        let text = String::from_utf8_lossy(&head).into_owned();
        Err(format!("{endpoint}: HTTP {status}: {text}"))
    }
}

async fn grpc_once(
    mesh: &sinew::mesh::Mesh,
    call: &Call,
    method: &http::uri::PathAndQuery,
    sink: &ReportSink,
) -> Result<String, String> {
    let origin: http::Uri = format!("http://{}", call.service)
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let mut grpc = tonic::client::Grpc::with_origin(mesh.grpc_channel(&call.service), origin)
        .max_decoding_message_size(call.max_body_bytes);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(Bytes::copy_from_slice(call.data()));
    request.extensions_mut().insert(sink.clone());
    match grpc.unary(request, method.clone(), RawCodec).await {
        Ok(response) => Ok(served_by(response.extensions())),
        Err(status) => Err(format!("gRPC {:?}: {}", status.code(), status.message())),
    }
}
