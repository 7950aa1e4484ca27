//! Workload identity for mutual TLS: SPIFFE IDs, X.509-SVIDs, trust
//! bundles, and rustls configs that follow rotating credentials.
//!
//! Each workload has a SPIFFE ID, `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`
//! by default ([`SpiffeId::workload`]), carried as the single URI SAN of
//! its X.509-SVID. An [`Identity`] holds the live material (chain, key,
//! [`TrustBundle`]); [`Identity::client_config`] and
//! [`Identity::server_config`] build rustls configs once, which read the
//! material at each handshake: a rotation applies to new connections and
//! leaves established ones alone. TLS 1.3 only, aws-lc-rs.
//!
//! Peers are verified as SPIFFE peers, not by host name: the chain
//! against the roots of the trust domain in the peer's SPIFFE ID, the
//! X.509-SVID rules ([`verify_svid`]), and, for a client, the server's
//! SPIFFE ID against the identities it expects. A refusal is a
//! [`VerifyError`] naming the reason.
//!
//! Material comes from the control plane's CA ([`Issuer`]: the key made
//! in process, a CSR sent, renewed at half the leaf's lifetime), or from
//! files written by an external issuer: [`FileWatcher`], in the shape of
//! gRPC's `file_watcher` certificate provider (gRFC A29).
//!
//! ```
//! use sinew::tls::{Identity, SpiffeId, TrustDomain};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let td = TrustDomain::new("cluster.local")?;
//! let cart = SpiffeId::workload(&td, "shop", "cart")?;
//!
//! let identity = Identity::new(); // then identity.set(chain, key, bundle)
//! let client = identity.client_config([cart], vec![b"h2".to_vec()])?;
//! let server = identity.server_config(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?;
//! # let _ = (client, server);
//! # Ok(()) }
//! ```

pub(crate) mod admin_client;
mod bundle;
mod ca_api;
mod config;
mod file_source;
mod identity;
mod issuer;
pub(crate) mod metrics;
mod peer;
mod spiffe_id;
mod svid;
mod verify;

pub use bundle::{BundleError, TrustBundle};
pub use file_source::{FileWatcher, FileWatcherConfig, certificate_providers};
pub use identity::{Credentials, Identity, IdentityError, NoCredentials};
pub use issuer::{IssueError, Issuer, IssuerConfig};
pub use peer::peer_id;
pub use spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};
pub use svid::{SvidError, verify_svid};
pub use verify::{SpiffeClientVerifier, SpiffeServerVerifier, VerifyError};
