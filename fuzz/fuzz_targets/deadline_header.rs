//! `grpc-timeout` and `sinew-timeout-ms` values (the first byte picks the
//! header, and whether the call sent on is gRPC) through a server's
//! `EnforceDeadline` into a client's `PropagateDeadline`: nothing panics,
//! the deadline taken is never later than the header said, and the budget
//! sent on is well-formed and never more than what came in.
#![no_main]

use http::{HeaderMap, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use sinew::deadline::{
    Deadline, EnforceDeadlineConfig, EnforceDeadlineLayer, GRPC_TIMEOUT, PropagateDeadline,
    SINEW_TIMEOUT_MS, parse_grpc_timeout,
};
use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

/// What the server's handler saw: its deadline, and the headers of the
/// call it made on.
type Seen = (Option<Deadline>, Option<HeaderMap>);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, value)) = data.split_first() else {
        return;
    };
    let parsed = parse_grpc_timeout(value);
    if let Some(budget) = parsed {
        assert!(
            budget <= Duration::from_secs(99_999_999 * 3600),
            "{budget:?}"
        );
    }
    let Ok(header) = HeaderValue::from_bytes(value) else {
        return;
    };
    let grpc_in = flags & 1 == 0;
    let grpc_out = flags & 2 == 0;
    let mut request = Request::new(());
    let name = if grpc_in {
        GRPC_TIMEOUT
    } else {
        SINEW_TIMEOUT_MS
    };
    request.headers_mut().insert(name, header);

    runtime().block_on(async move {
        let before = Instant::now();
        let handler = service_fn(move |_: Request<()>| async move {
            let mut call = Request::new(());
            if grpc_out {
                call.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
            }
            let sent = PropagateDeadline::new(service_fn(|sent: Request<()>| async move {
                Ok::<_, Infallible>(sent.headers().clone())
            }))
            .oneshot(call)
            .await
            .ok();
            let mut response = http::Response::new(());
            response
                .extensions_mut()
                .insert::<Seen>((Deadline::current(), sent));
            Ok::<_, Infallible>(response)
        });
        let server = EnforceDeadlineLayer::new(EnforceDeadlineConfig::default())
            .expect("the default configuration is valid")
            .layer(handler);
        let Ok(response) = server.oneshot(request).await;
        let after = Instant::now();
        let Some((Some(deadline), sent)) = response.extensions().get::<Seen>().cloned() else {
            // No deadline, or refused before the handler ran.
            return;
        };
        let Some(sent) = sent else {
            // The call was refused: its deadline had passed.
            assert!(deadline.is_expired(), "a call refused before its deadline");
            return;
        };
        if grpc_in && let Some(said) = parsed {
            let latest = after + said;
            assert!(
                deadline.instant() <= latest,
                "a deadline past the header's {said:?}"
            );
        }
        // What is left was at most this when the call was sent on.
        let budget = deadline.instant().saturating_duration_since(before);
        let forwarded = if grpc_out {
            let v = sent
                .get(GRPC_TIMEOUT)
                .expect("a gRPC call carries grpc-timeout");
            parse_grpc_timeout(v.as_bytes())
                .unwrap_or_else(|| panic!("sent a malformed grpc-timeout: {v:?}"))
        } else {
            let v = sent
                .get(SINEW_TIMEOUT_MS)
                .expect("a call carries sinew-timeout-ms");
            let ms = v.to_str().ok().and_then(|s| s.parse::<u64>().ok());
            Duration::from_millis(
                ms.unwrap_or_else(|| panic!("sent a malformed sinew-timeout-ms: {v:?}")),
            )
        };
        assert!(
            forwarded <= budget,
            "sent {forwarded:?} with {budget:?} left"
        );
    });
});
