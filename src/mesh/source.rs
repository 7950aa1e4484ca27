use super::Shared;
use crate::config::{MeshConfig, SettledFile};
use crate::error::ConfigError;
use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// Reads and parses a configuration file, returning its raw contents too
/// (to notice changes).
pub(super) fn read_file(path: &Path) -> Result<(MeshConfig, Vec<u8>), ConfigError> {
    let contents = crate::config::read_limited(path).map_err(|e| {
        ConfigError::new(
            "config_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let config = MeshConfig::from_file_contents(path, &contents)?;
    Ok((config, contents))
}

/// Checks the file every `interval`; applies its contents when a change
/// has settled (see [`SettledFile`]). Ends when the mesh is gone.
pub(super) async fn watch(mesh: Weak<Shared>, path: PathBuf, seen: Vec<u8>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut file = SettledFile::new(&path, seen);
    loop {
        ticks.tick().await;
        let Some(mesh) = mesh.upgrade() else {
            return;
        };
        let Some(contents) = file.check() else {
            continue;
        };
        match MeshConfig::from_file_contents(&path, &contents) {
            Ok(config) => {
                let _ = mesh.apply(config);
            }
            Err(error) => mesh.reject(error),
        }
    }
}
