//! The discovery task's supervisor: a second line of defence.
//!
//! Nothing in the discovery task should panic: every input is checked and
//! every configured value bounded. Should a bug panic it anyway, a mesh
//! must not go on with no discovery and no sign of it (new watches timing
//! out, nothing NACKed or reconnected). The supervisor catches the panic,
//! says so in the log, in `sinew_xds_task_restarts_total` and in
//! [`XdsStatus::task_restarts`](super::XdsStatus), and runs the task again
//! after a pause, with the state it had: the configuration in force and
//! the watched services are kept, and the stream is opened anew.

use super::ads::Task;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// Between a panic and the restart, so that a panic on every run cannot
/// spin.
const PAUSE: Duration = Duration::from_secs(1);

/// Runs `task` until it ends normally (the mesh is gone), restarting it
/// after each panic.
pub(super) async fn supervise(mut task: Task) {
    loop {
        match AssertUnwindSafe(task.run()).catch_unwind().await {
            Ok(()) => return,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                tracing::error!(%message, "the discovery task panicked; restarting it");
                task.restarted(message);
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}
