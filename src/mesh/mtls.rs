//! The mesh's refusal to speak plaintext to a cluster that requires mutual
//! TLS ([`ClusterConfig::requires_mtls`](crate::config::ClusterConfig::requires_mtls)).
//!
//! Two places refuse, so that no path fails open: the balance step, before
//! anything is sent (the error then reaches the caller as it is), and the
//! connector, for requests that reach it by another way (a user's own
//! client, a request aimed by hand, a configuration that changed between
//! the two).

use std::fmt;

/// A request to a cluster that requires mutual TLS could not have it, and
/// was not sent: nothing reached the endpoint, not even a TCP connection.
///
/// ```
/// # fn f(error: sinew::error::BoxError) {
/// if let Some(refused) = error.downcast_ref::<sinew::mesh::MtlsUnavailable>() {
///     eprintln!("{}: {}", refused.cluster, refused.reason);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MtlsUnavailable {
    /// The cluster that requires mTLS.
    pub cluster: String,
    /// Why the mesh cannot speak mTLS to it.
    pub reason: String,
}

impl MtlsUnavailable {
    pub(crate) fn no_identity(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            reason: "the mesh has no workload certificate (mutual TLS is not built into this \
                     version yet); requests to it are refused rather than sent in plaintext"
                .to_owned(),
        }
    }
}

impl fmt::Display for MtlsUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster `{}` requires mutual TLS and cannot have it: {}",
            self.cluster, self.reason
        )
    }
}

impl std::error::Error for MtlsUnavailable {}
