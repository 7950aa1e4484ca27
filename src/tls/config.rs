//! The rustls configs, built once per use and reading the live
//! credentials at each handshake.

use super::identity::{Identity, Live};
use super::spiffe_id::SpiffeId;
use super::verify::{SpiffeClientVerifier, SpiffeServerVerifier};
use rustls::client::{ResolvesClientCert, Resumption};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// TLS 1.3 only: the mesh has no legacy peers to wait for.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

impl Identity {
    /// A client config presenting this workload's SVID and accepting only
    /// servers whose SPIFFE ID is in `allowed` (a cluster's identities),
    /// offering `alpn` (e.g. `[b"h2"]`).
    ///
    /// Build it once per cluster and keep it: it reads the current
    /// certificate and bundle at each handshake. The server name given to
    /// the connector is not checked (the SPIFFE ID is); it keys session
    /// resumption, so use the endpoint's address. Configs for the same
    /// set of identities share one session cache (and can resume each
    /// other's sessions); configs for different sets never do.
    ///
    /// ```
    /// use sinew::tls::Identity;
    /// # fn main() -> Result<(), rustls::Error> {
    /// let identity = Identity::new();
    /// let config = identity.client_config(
    ///     ["spiffe://td/ns/shop/sa/cart".parse().unwrap()],
    ///     vec![b"h2".to_vec()],
    /// )?;
    /// assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    /// # Ok(()) }
    /// ```
    pub fn client_config(
        &self,
        allowed: impl IntoIterator<Item = SpiffeId>,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        self.client_config_for(Some(SpiffeServerVerifier::normalize(allowed)), alpn)
    }

    /// A client config presenting this workload's SVID and accepting any
    /// server whose SVID chains to the bundle's roots for its trust
    /// domain, offering `alpn`: for a cluster that requires mTLS without
    /// naming identities.
    ///
    /// ```
    /// # fn main() -> Result<(), rustls::Error> {
    /// let config = sinew::tls::Identity::new().client_config_any(vec![b"h2".to_vec()])?;
    /// assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    /// # Ok(()) }
    /// ```
    pub fn client_config_any(
        &self,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        self.client_config_for(None, alpn)
    }

    fn client_config_for(
        &self,
        allowed: Option<Vec<SpiffeId>>,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        let shared = self.client_shared(allowed);
        let mut config = ClientConfig::builder_with_provider(self.provider().clone())
            .with_protocol_versions(VERSIONS)?
            .dangerous()
            .with_custom_certificate_verifier(shared.verifier)
            .with_client_cert_resolver(self.resolver());
        config.alpn_protocols = alpn;
        config.resumption = Resumption::store(shared.sessions);
        Ok(Arc::new(config))
    }

    /// A server config presenting this workload's SVID and requiring a
    /// client SVID of a trusted trust domain (any SPIFFE ID: authorize
    /// after the handshake with [`peer_id`](super::peer_id)), offering
    /// `alpn` (e.g. `[b"h2", b"http/1.1"]`).
    ///
    /// Build it once per listener and keep it. Resumption uses session
    /// tickets from the provider's ticketer, shared by every server
    /// config of this identity, and a server-side session cache.
    ///
    /// ```
    /// use sinew::tls::Identity;
    /// # fn main() -> Result<(), rustls::Error> {
    /// let config = Identity::new().server_config(vec![b"h2".to_vec()])?;
    /// assert!(config.ticketer.enabled());
    /// # Ok(()) }
    /// ```
    pub fn server_config(&self, alpn: Vec<Vec<u8>>) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(self.provider().clone())
            .with_protocol_versions(VERSIONS)?
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(self)))
            .with_cert_resolver(self.resolver());
        config.alpn_protocols = alpn;
        config.session_storage = self.server_sessions();
        config.ticketer = self.ticketer()?;
        Ok(Arc::new(config))
    }
}

/// The current certificate and key, read at each handshake.
#[derive(Debug)]
pub(crate) struct LiveCert(pub(crate) Arc<Live>);

impl ResolvesClientCert for LiveCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // None sends no certificate: the server refuses the handshake.
        self.0.current_key()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // None aborts the handshake with a handshake_failure alert.
        let key = self.0.current_key();
        if key.is_none() {
            tracing::warn!("TLS handshake refused: no workload certificate yet");
        }
        key
    }
}
