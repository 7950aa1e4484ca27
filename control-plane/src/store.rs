//! The registry store's writer: one task that writes the registry to its
//! file after changes, outside the state's lock and off the async
//! threads, coalescing the changes that arrive while a write is under
//! way. A write that fails is an error in `/v1/health` until one works.

use crate::state::State;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How the registry store stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StoreStatus {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    /// The registry change last written (or tried).
    #[serde(skip)]
    pub(crate) attempted: u64,
    /// Writes that failed, since the start.
    pub failures: u64,
    /// The last write's error, until a write works.
    pub error: Option<String>,
    /// Stored leases dropped at the start, and why.
    pub dropped: Vec<String>,
}

/// The writer's handle.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    wake: Arc<Notify>,
    status: watch::Receiver<StoreStatus>,
}

impl Store {
    /// Starts the writer for `path` (none: memory only, writes are no-ops).
    pub(crate) fn start(
        path: Option<PathBuf>,
        dropped: Vec<String>,
        state: Arc<Mutex<State>>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let (report, status) = watch::channel(StoreStatus {
            path: path.clone(),
            attempted: 0,
            failures: 0,
            error: None,
            dropped,
        });
        if let Some(path) = path {
            tasks.spawn(write_after_changes(path, state, wake.clone(), report));
        }
        Self { wake, status }
    }

    /// How the store stands.
    pub(crate) fn status(&self) -> StoreStatus {
        self.status.borrow().clone()
    }

    /// Asks for registry change `change` to be written, and waits (at
    /// most `wait`) until it is, or was tried; `Err` with the write's
    /// error; `None` without a store.
    pub(crate) async fn persist(&self, change: u64, wait: Duration) -> Option<Result<(), String>> {
        // Without a store there is nothing to wait for.
        self.status.borrow().path.as_ref()?;
        self.wake.notify_one();
        let mut status = self.status.clone();
        let written = tokio::time::timeout(wait, status.wait_for(|s| s.attempted >= change)).await;
        Some(match written {
            Ok(Ok(s)) => s.error.clone().map_or(Ok(()), Err),
            Ok(Err(_)) => Err("the store writer stopped".to_owned()),
            Err(_) => Err(format!("not written within {} s", wait.as_secs())),
        })
    }

    /// Asks for the registry to be written, without waiting.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

async fn write_after_changes(
    path: PathBuf,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    report: watch::Sender<StoreStatus>,
) {
    loop {
        // A failed write is tried again, every second, until one works.
        let failed = report.borrow().error.is_some();
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)), if failed => {}
        }
        let (change, contents) = {
            let state = state.lock().unwrap_or_else(|p| p.into_inner());
            let change = state.registry.changes();
            if change <= report.borrow().attempted && !failed {
                continue;
            }
            (change, state.registry.to_store())
        };
        let target = path.clone();
        let written = match contents {
            Ok(bytes) => {
                tokio::task::spawn_blocking(move || sinew::config::write_private(&target, &bytes))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e),
        };
        if let Err(error) = &written {
            tracing::error!(path = %path.display(), %error, "cannot write the registry store");
            metrics::counter!("sinew_control_plane_store_write_failures_total").increment(1);
        }
        report.send_modify(|s| {
            s.attempted = change;
            match written {
                Ok(()) => s.error = None,
                Err(error) => {
                    s.failures += 1;
                    s.error = Some(format!("cannot write {}: {error}", path.display()));
                }
            }
        });
    }
}
