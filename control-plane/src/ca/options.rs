//! How the CA is set up: its trust domain, where it keeps its state or
//! reads its root, and its leaves' lifetime.

use super::time::{Clock, system_clock};
use std::path::PathBuf;
use std::time::Duration;

/// The shortest leaf lifetime accepted.
pub const MIN_LEAF_TTL: Duration = Duration::from_secs(60);
/// The longest leaf lifetime accepted.
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(30 * 86_400);
/// The leaf lifetime when none is given.
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(86_400);

/// The CA's setup (`ControlPlaneBuilder::ca`).
#[derive(Clone)]
pub struct CaOptions {
    /// The trust domain. Default: `cluster.local`.
    pub trust_domain: String,
    /// Where the roots and bootstrap tokens are kept (made 0700 if
    /// missing). Default: none, memory only: a new root at every start.
    pub dir: Option<PathBuf>,
    /// A root certificate (PEM) to sign with instead of a generated one;
    /// needs [`key_file`](Self::key_file).
    pub cert_file: Option<PathBuf>,
    /// The key of [`cert_file`](Self::cert_file) (PEM).
    pub key_file: Option<PathBuf>,
    /// Leaves' lifetime, [`MIN_LEAF_TTL`] to [`MAX_LEAF_TTL`]. Default: 24 h.
    pub leaf_ttl: Duration,
    /// The clock (tests move their own). Default: the system's.
    pub clock: Clock,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            trust_domain: super::DEFAULT_TRUST_DOMAIN.to_owned(),
            dir: None,
            cert_file: None,
            key_file: None,
            leaf_ttl: DEFAULT_LEAF_TTL,
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for CaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaOptions")
            .field("trust_domain", &self.trust_domain)
            .field("dir", &self.dir)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("leaf_ttl", &self.leaf_ttl)
            .finish_non_exhaustive()
    }
}
