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

type Series = Vec<(String, Vec<(String, String)>, f64)>;

/// Every series since the last reading (reading resets the recorder's
/// counters and gauges).
fn read(snapshotter: &Snapshotter) -> Series {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (key.name().to_owned(), labels, value)
        })
        .collect()
}

/// The value of the series `name` with exactly `labels`.
fn value(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    series
        .iter()
        .find(|(n, ls, _)| {
            n == name
                && ls.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(.., v)| *v)
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
            &read(&snapshotter),
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
    // The server's task counts when it next runs: the readings add up
    // until it has, within a deadline.
    let (mut outbound, mut inbound) = (0.0, 0.0);
    within("the server counts the alert", async {
        while inbound < 1.0 {
            let series = read(&snapshotter);
            let side = |direction, reason| {
                value(
                    &series,
                    FAILURES,
                    &[("direction", direction), ("reason", reason)],
                )
                .unwrap_or(0.0)
            };
            outbound += side("outbound", "bad_certificate");
            inbound += side("inbound", "peer_refused");
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(outbound >= 1.0, "{outbound:?}");
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
            &read(&snapshotter),
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
    let series = read(&snapshotter);
    let shown = value(
        &series,
        "sinew_certificate_expiry_timestamp_seconds",
        &[("certificate", "svid")],
    );
    assert_eq!(shown, expires);
    assert!(expires.is_some());
    let bundle = value(
        &series,
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
        &read(&snapshotter),
        "sinew_certificate_expiry_timestamp_seconds",
        &[("certificate", "svid")],
    );
    assert!(rotated < expires, "{rotated:?} then {expires:?}");
}
