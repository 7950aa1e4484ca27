use crate::error::ConfigError;

/// Where a mesh's configuration stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigStatus {
    version: u64,
    last_error: Option<ConfigError>,
    rejected: u64,
}

impl ConfigStatus {
    pub(super) fn applied(version: u64) -> Self {
        Self {
            version,
            last_error: None,
            rejected: 0,
        }
    }

    pub(super) fn record_rejection(&mut self, error: ConfigError) {
        self.last_error = Some(error);
        self.rejected += 1;
    }

    /// The version of the snapshot in force (1 for the first).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Why the last configuration since the one in force was rejected.
    pub fn last_error(&self) -> Option<&ConfigError> {
        self.last_error.as_ref()
    }

    /// How many configurations were rejected since the one in force.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
}
