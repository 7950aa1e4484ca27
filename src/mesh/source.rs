use super::Shared;
use crate::config::MeshConfig;
use crate::error::ConfigError;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Reads and parses a configuration file, returning its raw contents too
/// (to notice changes).
pub(super) fn read_file(path: &Path) -> Result<(MeshConfig, Vec<u8>), ConfigError> {
    let contents = std::fs::read(path).map_err(|e| {
        ConfigError::new(
            "config_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let config = MeshConfig::from_file_contents(path, &contents)?;
    Ok((config, contents))
}

/// Checks the file every `interval`; applies its contents when they change.
/// Ends when the mesh is gone.
pub(super) async fn watch(
    mesh: Weak<Shared>,
    path: PathBuf,
    mut seen: Vec<u8>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(mesh) = mesh.upgrade() else {
            return;
        };
        // A file that is being rewritten may be briefly missing or empty;
        // only contents that differ from the last seen are considered.
        let Ok(contents) = std::fs::read(&path) else {
            continue;
        };
        if contents == seen {
            continue;
        }
        seen = contents;
        match read_file(&path) {
            Ok((config, _)) => {
                let _ = mesh.apply(config);
            }
            Err(error) => mesh.reject(error),
        }
    }
}
