//! The workload's live credentials: its SVID chain, private key and trust
//! bundle, swapped atomically on rotation.

use super::bundle::{BundleError, TrustBundle};
use super::config::LiveCert;
use super::spiffe_id::{SpiffeId, TrustDomain};
use super::svid::{SvidError, parse_svid};
use super::verify::{SpiffeServerVerifier, VerifyError, verify_chain};
use arc_swap::ArcSwapOption;
use rustls::client::ClientSessionMemoryCache;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::ProducesTickets;
use rustls::server::ServerSessionMemoryCache;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::watch;

/// A workload's validated certificate material: its X.509-SVID chain,
/// the matching private key and the trust bundle.
///
/// Built only through [`Credentials::new`] (or [`Credentials::from_pem`]),
/// which refuse material that would not work: a leaf that is not a valid
/// X.509-SVID now, a key that does not match the leaf, a chain that does
/// not verify against the bundle of the leaf's trust domain.
///
/// ```
/// use sinew::tls::{Credentials, IdentityError};
///
/// let err = Credentials::from_pem(b"", b"", b"").unwrap_err();
/// assert_eq!(err.to_string(), "certificate: no CERTIFICATE block in the PEM");
/// ```
pub struct Credentials {
    key: Arc<CertifiedKey>,
    bundle: TrustBundle,
    id: SpiffeId,
    not_after: SystemTime,
}

impl Credentials {
    /// Validates `chain` (leaf first), `key` and `bundle`, and puts them
    /// together.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundle: TrustBundle,
    ) -> Result<Self, IdentityError> {
        let provider = provider();
        let leaf = chain.first().ok_or(IdentityError::EmptyChain)?;
        let svid = parse_svid(leaf, SystemTime::now()).map_err(IdentityError::Svid)?;
        let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => IdentityError::KeyMismatch,
            other => IdentityError::Key(other.to_string()),
        })?;
        let mut credentials = Self {
            key: Arc::new(key),
            bundle: TrustBundle::new(),
            id: svid.id,
            not_after: svid.not_after,
        };
        credentials.check_bundle(&bundle, &provider.signature_verification_algorithms)?;
        credentials.bundle = bundle;
        Ok(credentials)
    }

    /// Reads PEM material: the certificate chain (leaf first), the
    /// private key (PKCS#8, PKCS#1 or SEC1), and the roots of the leaf's
    /// trust domain. Errors name which of the three is wrong.
    pub fn from_pem(
        certificate: &[u8],
        private_key: &[u8],
        ca_certificate: &[u8],
    ) -> Result<Self, IdentityError> {
        let pem = |what: &'static str, reason: String| IdentityError::Pem { what, reason };
        let chain = CertificateDer::pem_slice_iter(certificate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem("certificate", e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| pem("certificate", "no CERTIFICATE block in the PEM".to_owned()))?;
        let key = PrivateKeyDer::from_pem_slice(private_key)
            .map_err(|e| pem("private key", e.to_string()))?;
        // A29's CA file names no trust domain: its roots are the leaf's.
        let trust_domain = parse_svid(leaf, SystemTime::now())
            .map_err(IdentityError::Svid)?
            .id
            .trust_domain()
            .clone();
        let bundle =
            TrustBundle::from_pem(trust_domain, ca_certificate).map_err(IdentityError::Bundle)?;
        Self::new(chain, key, bundle)
    }

    /// The same chain and key with another trust bundle (a CA rotation),
    /// refused if the chain does not verify against it.
    pub fn with_bundle(&self, bundle: TrustBundle) -> Result<Self, IdentityError> {
        self.check_bundle(&bundle, &provider().signature_verification_algorithms)?;
        Ok(Self {
            key: self.key.clone(),
            bundle,
            id: self.id.clone(),
            not_after: self.not_after,
        })
    }

    fn check_bundle(
        &self,
        bundle: &TrustBundle,
        algs: &WebPkiSupportedAlgorithms,
    ) -> Result<(), IdentityError> {
        let (leaf, intermediates) = self
            .key
            .cert
            .split_first()
            .ok_or(IdentityError::EmptyChain)?;
        // A workload is both a client and a server of the mesh: its SVID
        // must verify for both.
        for usage in [
            webpki::KeyUsage::client_auth(),
            webpki::KeyUsage::server_auth(),
        ] {
            verify_chain(bundle, leaf, intermediates, UnixTime::now(), usage, algs).map_err(
                |e| match e {
                    VerifyError::Svid(e) => IdentityError::Svid(e),
                    VerifyError::UnknownTrustDomain { peer } => {
                        IdentityError::UnknownTrustDomain(peer.trust_domain().clone())
                    }
                    VerifyError::UntrustedChain { reason, .. } => {
                        IdentityError::UntrustedChain(reason)
                    }
                    other => IdentityError::UntrustedChain(other.to_string()),
                },
            )?;
        }
        Ok(())
    }

    /// The SPIFFE ID of the leaf.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// When the leaf expires (its notAfter).
    pub fn expires_at(&self) -> SystemTime {
        self.not_after
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// The trust bundle.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Credentials")
            .field("spiffe_id", &self.id)
            .field("expires_at", &self.not_after)
            .field("chain_len", &self.key.cert.len())
            .field(
                "trust_domains",
                &self.bundle.trust_domains().collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// The workload's live credentials, shared: cheap to clone, every clone
/// sees the same material.
///
/// [`Identity::set`] swaps in new material atomically after validating
/// it; bad material is refused with an error and the last good material
/// stays. The rustls configs built by [`Identity::client_config`] and
/// [`Identity::server_config`] read the current material at each
/// handshake, so a rotation applies to new connections only and never
/// touches established ones. Until material is set, handshakes fail with
/// [`VerifyError::NoCredentials`] (or, serving, a handshake failure): check
/// [`Identity::is_ready`] to report "no certificate yet" before trying.
///
/// ```
/// use sinew::tls::Identity;
///
/// let identity = Identity::new();
/// assert!(!identity.is_ready());
/// assert!(identity.credentials().is_err());
/// assert_eq!(identity.spiffe_id(), None);
/// ```
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    live: Arc<Live>,
    changes: watch::Sender<Option<Arc<Credentials>>>,
    /// Serializes writers, so that `set_bundle`'s read-modify-write never
    /// undoes a `set` made meanwhile, and changes are announced in order.
    writer: Mutex<()>,
    /// One verifier and session cache per set of allowed identities.
    /// rustls resumes a session only with the very verifier and resolver
    /// that made it, so configs for the same set share them; a session
    /// resumed skips the server's certificate, so a ticket won under one
    /// set never serves a connection that expects another.
    /// By the identities accepted (`None`: any).
    clients: Mutex<HashMap<Option<Vec<SpiffeId>>, ClientShared>>,
    resolver: Arc<LiveCert>,
    server_sessions: Arc<ServerSessionMemoryCache>,
    ticketer: Mutex<Option<Arc<dyn ProducesTickets>>>,
}

/// What a client config for one set of allowed identities is built of.
#[derive(Clone)]
pub(crate) struct ClientShared {
    pub(crate) verifier: Arc<SpiffeServerVerifier>,
    pub(crate) sessions: Arc<ClientSessionMemoryCache>,
}

/// The material the verifiers and resolvers read at each handshake.
#[derive(Debug)]
pub(crate) struct Live {
    current: ArcSwapOption<Credentials>,
    provider: Arc<CryptoProvider>,
}

impl Live {
    pub(crate) fn credentials(&self) -> Option<Arc<Credentials>> {
        self.current.load_full()
    }

    pub(crate) fn current_key(&self) -> Option<Arc<CertifiedKey>> {
        self.current.load().as_ref().map(|c| c.key.clone())
    }

    pub(crate) fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }
}

/// Client sessions remembered per set of allowed identities.
const CLIENT_SESSIONS: usize = 256;
/// Sets of allowed identities remembered before the map starts afresh.
const MAX_CLIENT_SETS: usize = 1024;
/// Server sessions remembered (when tickets are not used).
const SERVER_SESSIONS: usize = 1024;

impl Default for Identity {
    fn default() -> Self {
        Self::new()
    }
}

impl Identity {
    /// An identity with no material yet.
    pub fn new() -> Self {
        let live = Arc::new(Live {
            current: ArcSwapOption::empty(),
            provider: Arc::new(provider()),
        });
        Self {
            inner: Arc::new(Inner {
                resolver: Arc::new(LiveCert(live.clone())),
                live,
                changes: watch::Sender::new(None),
                writer: Mutex::new(()),
                clients: Mutex::new(HashMap::new()),
                server_sessions: ServerSessionMemoryCache::new(SERVER_SESSIONS),
                ticketer: Mutex::new(None),
            }),
        }
    }

    /// Validates and installs new material (see [`Credentials::new`]). On
    /// error the current material stays.
    pub fn set(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundle: TrustBundle,
    ) -> Result<(), IdentityError> {
        self.set_credentials(Credentials::new(chain, key, bundle)?);
        Ok(())
    }

    /// Installs credentials already validated.
    pub fn set_credentials(&self, credentials: Credentials) {
        let _writing = self.write_lock();
        self.install(credentials);
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn install(&self, credentials: Credentials) {
        super::metrics::credentials_installed(&credentials);
        let credentials = Arc::new(credentials);
        self.inner.live.current.store(Some(credentials.clone()));
        self.inner.changes.send_replace(Some(credentials));
    }

    /// Replaces the trust bundle only (a CA rotation), keeping the chain
    /// and key; refused if the current chain does not verify against it.
    pub fn set_bundle(&self, bundle: TrustBundle) -> Result<(), IdentityError> {
        let _writing = self.write_lock();
        let current = self
            .credentials()
            .map_err(|_| IdentityError::NoCredentials)?;
        self.install(current.with_bundle(bundle)?);
        Ok(())
    }

    /// The current credentials, or [`NoCredentials`] before any is set.
    pub fn credentials(&self) -> Result<Arc<Credentials>, NoCredentials> {
        self.inner.live.credentials().ok_or(NoCredentials)
    }

    /// Whether material has been set: handshakes can succeed.
    pub fn is_ready(&self) -> bool {
        self.inner.live.current.load().is_some()
    }

    /// The current leaf's SPIFFE ID.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        self.inner
            .live
            .current
            .load()
            .as_ref()
            .map(|c| c.id.clone())
    }

    /// When the current leaf expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.live.current.load().as_ref().map(|c| c.not_after)
    }

    /// A receiver that sees each new material installed.
    ///
    /// ```
    /// # use sinew::tls::Identity;
    /// let identity = Identity::new();
    /// let changes = identity.subscribe();
    /// assert!(changes.borrow().is_none());
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Credentials>>> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn live(&self) -> &Arc<Live> {
        &self.inner.live
    }

    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.inner.live.provider
    }

    pub(crate) fn resolver(&self) -> Arc<LiveCert> {
        self.inner.resolver.clone()
    }

    pub(crate) fn client_shared(&self, allowed: Option<Vec<SpiffeId>>) -> ClientShared {
        let mut clients = self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if clients.len() >= MAX_CLIENT_SETS && !clients.contains_key(&allowed) {
            // Sets of identities churn with xDS updates; configs built
            // earlier keep their own verifier and cache alive.
            clients.clear();
        }
        let live = &self.inner.live;
        clients
            .entry(allowed)
            .or_insert_with_key(|allowed| ClientShared {
                verifier: Arc::new(SpiffeServerVerifier::from_live(
                    live.clone(),
                    allowed.clone(),
                )),
                sessions: Arc::new(ClientSessionMemoryCache::new(CLIENT_SESSIONS)),
            })
            .clone()
    }

    pub(crate) fn server_sessions(&self) -> Arc<ServerSessionMemoryCache> {
        self.inner.server_sessions.clone()
    }

    /// One ticketer for every server config, so a ticket issued by one
    /// listener resumes on another.
    pub(crate) fn ticketer(&self) -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
        let mut ticketer = self
            .inner
            .ticketer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(existing) = ticketer.as_ref() {
            return Ok(existing.clone());
        }
        let made = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        *ticketer = Some(made.clone());
        Ok(made)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("current", &self.inner.live.current.load().as_deref())
            .finish_non_exhaustive()
    }
}

/// No certificate material yet: a workload that has not received its
/// SVID, or whose files have not been read. Callers report it instead of
/// connecting (never falling back to plaintext).
///
/// ```
/// # use sinew::tls::NoCredentials;
/// assert_eq!(NoCredentials.to_string(), "no workload certificate yet");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoCredentials;

impl fmt::Display for NoCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no workload certificate yet")
    }
}

impl std::error::Error for NoCredentials {}

/// Certificate material refused by [`Credentials::new`] or
/// [`Identity::set`].
///
/// ```
/// # use sinew::tls::IdentityError;
/// assert_eq!(
///     IdentityError::KeyMismatch.to_string(),
///     "private key: does not match the leaf certificate's public key"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The chain has no certificate.
    EmptyChain,
    /// A PEM input could not be read (`what`: `certificate`, `private key`
    /// or `CA certificate`).
    Pem {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The leaf is not a valid X.509-SVID now.
    Svid(SvidError),
    /// The private key could not be loaded.
    Key(String),
    /// The private key does not match the leaf.
    KeyMismatch,
    /// The bundle has no root for the leaf's trust domain.
    UnknownTrustDomain(TrustDomain),
    /// The chain does not verify against the bundle.
    UntrustedChain(String),
    /// The trust bundle could not be read.
    Bundle(BundleError),
    /// Only a trust bundle was given, but there is no chain and key yet.
    NoCredentials,
    /// A file could not be read (`field` names the setting).
    File {
        /// The setting naming the file, e.g. `certificate_file`.
        field: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyChain => f.write_str("certificate: the chain is empty"),
            Self::Pem { what, reason } => write!(f, "{what}: {reason}"),
            Self::Svid(e) => write!(f, "certificate: {e}"),
            Self::Key(reason) => write!(f, "private key: {reason}"),
            Self::KeyMismatch => {
                f.write_str("private key: does not match the leaf certificate's public key")
            }
            Self::UnknownTrustDomain(td) => {
                write!(
                    f,
                    "CA certificate: no root for the leaf's trust domain {td}"
                )
            }
            Self::UntrustedChain(reason) => write!(
                f,
                "CA certificate: the chain does not verify against the trust bundle: {reason}"
            ),
            Self::Bundle(e) => write!(f, "CA certificate: {e}"),
            Self::NoCredentials => {
                f.write_str("no certificate and key to go with the trust bundle")
            }
            Self::File {
                field,
                path,
                reason,
            } => write!(f, "{field} {}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for IdentityError {}
