//! The discovery client's facts as metrics, through the `metrics` facade
//! (whatever recorder the application installs: Prometheus, StatsD, ...).
//! Every series carries `control_plane`, the first server of the
//! bootstrap, which tells one discovery client from another.
//!
//! The series are listed in the [module docs](super).

use super::resource::Kind;
use super::state::{ConnectionState, ResourceState, State};
use metrics::{counter, gauge, histogram};
use std::time::Duration;

const STATES: [(ResourceState, &str); 4] = [
    (ResourceState::Requested, "requested"),
    (ResourceState::Acked, "acked"),
    (ResourceState::Nacked, "nacked"),
    (ResourceState::DoesNotExist, "does_not_exist"),
];

/// Describes the series to the recorder, once per discovery client.
pub(super) fn describe() {
    metrics::describe_gauge!(
        "sinew_xds_connected",
        "1 while a stream to the control plane is open"
    );
    metrics::describe_gauge!(
        "sinew_xds_from_cache",
        "1 while the configuration in force came from the fail-static cache"
    );
    metrics::describe_gauge!(
        "sinew_xds_resources",
        "subscribed xDS resources, per type and state"
    );
    metrics::describe_counter!(
        "sinew_xds_responses_total",
        "xDS responses, ACKed or NACKed"
    );
    metrics::describe_counter!(
        "sinew_xds_task_restarts_total",
        "times the discovery task failed (a bug) and was restarted"
    );
    metrics::describe_counter!(
        "sinew_xds_stream_failures_total",
        "control plane streams that failed or could not open"
    );
    metrics::describe_histogram!(
        "sinew_xds_apply_seconds",
        metrics::Unit::Seconds,
        "from an xDS response's arrival to its configuration in force"
    );
}

/// The gauges, from the state as it is now.
pub(super) fn state(control_plane: &str, state: &State) {
    let cp = control_plane.to_owned();
    let connected = matches!(state.connection, ConnectionState::Connected { .. });
    gauge!("sinew_xds_connected", "control_plane" => cp.clone())
        .set(f64::from(u8::from(connected)));
    gauge!("sinew_xds_from_cache", "control_plane" => cp.clone())
        .set(f64::from(u8::from(state.from_cache.is_some())));
    let statuses = state.statuses();
    for kind in Kind::ALL {
        for (s, label) in STATES {
            let n = statuses
                .iter()
                .filter(|r| r.kind == kind && r.state == s)
                .count();
            gauge!(
                "sinew_xds_resources",
                "control_plane" => cp.clone(),
                "type" => kind.api_name(),
                "state" => label
            )
            .set(n as f64);
        }
    }
}

/// One response answered.
pub(super) fn response(control_plane: &str, kind: Kind, accepted: bool, took: Duration) {
    let result = if accepted { "ack" } else { "nack" };
    counter!(
        "sinew_xds_responses_total",
        "control_plane" => control_plane.to_owned(),
        "type" => kind.api_name(),
        "result" => result
    )
    .increment(1);
    histogram!("sinew_xds_apply_seconds", "control_plane" => control_plane.to_owned())
        .record(took.as_secs_f64());
}

/// A stream that failed or could not open.
pub(super) fn stream_failed(control_plane: &str) {
    counter!("sinew_xds_stream_failures_total", "control_plane" => control_plane.to_owned())
        .increment(1);
}

/// The discovery task was restarted after a panic.
pub(super) fn task_restarted(control_plane: &str) {
    counter!("sinew_xds_task_restarts_total", "control_plane" => control_plane.to_owned())
        .increment(1);
}
