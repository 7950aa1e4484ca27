use super::source::{read_file, watch};
use super::{Mesh, Shared};
use crate::config::{Locality, MeshConfig, Snapshot};
use crate::error::ConfigError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`Mesh`]. Made by [`Mesh::builder`].
#[derive(Debug)]
pub struct MeshBuilder {
    source: Source,
    reload_interval: Duration,
    locality: Option<Locality>,
}

#[derive(Debug)]
enum Source {
    Config(MeshConfig),
    File(PathBuf),
}

impl Default for MeshBuilder {
    fn default() -> Self {
        Self {
            source: Source::Config(MeshConfig::default()),
            reload_interval: Duration::from_secs(1),
            locality: None,
        }
    }
}

impl MeshBuilder {
    /// Uses a configuration built in code. Replace it later with
    /// [`Mesh::apply`].
    pub fn config(mut self, config: MeshConfig) -> Self {
        self.source = Source::Config(config);
        self
    }

    /// Reads the configuration from a file (JSON when its name ends in
    /// `.json`, YAML otherwise) and applies it again whenever its contents
    /// change.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = Source::File(path.into());
        self
    }

    /// Where this process runs. Clusters with `prefer_local_zone` send its
    /// requests to endpoints in the same zone while enough of them are
    /// available. Default: unknown (no zone preference).
    pub fn locality(mut self, region: impl Into<String>, zone: impl Into<String>) -> Self {
        self.locality = Some(Locality {
            region: region.into(),
            zone: zone.into(),
        });
        self
    }

    /// How often a configuration file is checked for changes. Default: 1 s.
    pub fn reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every;
        self
    }

    /// Builds the mesh. The first configuration must be valid: its error,
    /// naming the field, is returned otherwise. A file source starts its
    /// watcher on the current tokio runtime; it stops when the last clone
    /// of the mesh is dropped.
    pub async fn build(self) -> Result<Mesh, ConfigError> {
        if self.reload_interval.is_zero() {
            return Err(ConfigError::new(
                "reload_interval",
                "must be greater than zero",
            ));
        }
        match self.source {
            Source::Config(config) => {
                let shared = Shared::new(Snapshot::build(config, 1)?, self.locality);
                Ok(Mesh {
                    shared: Arc::new(shared),
                })
            }
            Source::File(path) => {
                let (config, contents) = read_file(&path)?;
                let shared = Arc::new(Shared::new(Snapshot::build(config, 1)?, self.locality));
                tokio::spawn(watch(
                    Arc::downgrade(&shared),
                    path,
                    contents,
                    self.reload_interval,
                ));
                Ok(Mesh { shared })
            }
        }
    }
}
