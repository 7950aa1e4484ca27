//! TLS through the `metrics` facade, over real sockets: the handshakes
//! that fail on each side, by reason, and the workload certificate's
//! expiry. Each test reads a recorder local to its (single) thread, so
//! the server's tasks, on the same thread, report there too.

use super::*;
use crate::certs::{Ca, Leaf};
use crate::mtls_support::{
    CART, REVIEWS, identity_of, mesh_as, mesh_get, mtls_config, plaintext_get, recording,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

const FAILURES: &str = "sinew_tls_handshake_failures_total";

/// The value of the series `name` with exactly `labels`.
fn value(snapshotter: &Snapshotter, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, ..)| {
            let key = key.key();
            key.name() == name
                && key.labels().count() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        })
}

#[tokio::test(flavor = "current_thread")]
async fn handshakes_that_fail_are_counted_on_each_side_by_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let ca = Ca::root("example.org root");
    let (listener, addr) = listener().await;
    let config = mtls_config(addr, "http1", "{ mtls: strict }");
    let server_mesh = mesh_as(identity_of(&ca, REVIEWS), config.clone()).await;
    let (app, count) = recording();
    let server = server_mesh.serve("reviews", listener, app).await.unwrap();

    // A plaintext caller: not TLS.
    let _ = plaintext_get(addr).await;
    assert_eq!(
        value(
            &snapshotter,
            FAILURES,
            &[("direction", "inbound"), ("reason", "protocol")]
        ),
        Some(1.0)
    );

    // A caller from another trust root refuses the server's certificate,
    // and the server hears its alert.
    let stranger = Ca::root("another root");
    let client = mesh_as(identity_of(&stranger, CART), config.clone()).await;
    assert!(mesh_get(&client).await.is_err());
    let outbound = value(
        &snapshotter,
        FAILURES,
        &[("direction", "outbound"), ("reason", "bad_certificate")],
    );
    assert!(outbound >= Some(1.0), "{outbound:?}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "nothing reached the handler"
    );

    // A caller of the same root gets through, and counts nothing.
    let friend = mesh_as(identity_of(&ca, CART), config).await;
    let (status, ..) = mesh_get(&friend).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        value(
            &snapshotter,
            FAILURES,
            &[("direction", "outbound"), ("reason", "bad_certificate")]
        ),
        Some(0.0),
        "no failure since the last reading"
    );
    within("shutdown", server.shutdown()).await.unwrap();
}

#[test]
fn the_certificate_expiry_is_shown_at_each_rotation() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let ca = Ca::root("example.org root");
    let identity = identity_of(&ca, REVIEWS);
    let expires = identity
        .expires_at()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as f64);
    let shown = value(
        &snapshotter,
        "sinew_certificate_expiry_timestamp_seconds",
        &[("certificate", "svid")],
    );
    assert_eq!(shown, expires);
    assert!(expires.is_some());
    let bundle = value(
        &snapshotter,
        "sinew_certificate_expiry_timestamp_seconds",
        &[("certificate", "trust_bundle")],
    );
    assert!(bundle >= expires, "the root outlives the leaf: {bundle:?}");

    // A rotation to a leaf that expires sooner shows its own expiry.
    let issued = ca.issue(&Leaf {
        not_after: time::OffsetDateTime::now_utc() + time::Duration::minutes(10),
        ..Leaf::svid(REVIEWS)
    });
    identity
        .set(
            issued.chain.clone(),
            issued.key(),
            ca.bundle(crate::mtls_support::TD),
        )
        .unwrap();
    let rotated = value(
        &snapshotter,
        "sinew_certificate_expiry_timestamp_seconds",
        &[("certificate", "svid")],
    );
    assert!(rotated < expires, "{rotated:?} then {expires:?}");
}
