//! The control plane's own certificate, from its own CA: an X.509-SVID
//! for [`SPIFFE_PATH`] in the CA's trust domain that also names the
//! control plane's hosts (DNS names, IPs), so that gRPC clients checking
//! a host name accept it as well as Sinew's SPIFFE verifiers do. It is
//! renewed at half its lifetime and whenever the trust bundle changes (a
//! root rotation), and read at each handshake.

use crate::ca::{Ca, Refusal};
use rustls::pki_types::pem::PemObject;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};
use sinew::tls::{Credentials, Identity, SpiffeClientVerifier};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The path of the control plane's SPIFFE ID:
/// `spiffe://<trust-domain>/sinew/control-plane`. Bootstrap tokens only
/// grant workload IDs (`/ns/<namespace>/sa/<service>`), so no workload can
/// be issued it.
pub const SPIFFE_PATH: &str = "/sinew/control-plane";

/// TLS 1.3 only, as the mesh's own connections.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// How often the bundle is compared with the CA's, at most.
const BUNDLE_CHECK: Duration = Duration::from_secs(30);

/// The control plane's live certificate and what verifies its clients.
#[derive(Clone, Debug)]
pub(crate) struct Serving {
    /// The credentials as the mesh's TLS holds them: their bundle is what
    /// client certificates are verified against.
    identity: Identity,
    /// The same certificate and key, for the resolver.
    key: Arc<LiveKey>,
    spiffe_id: String,
}

#[derive(Debug, Default)]
struct LiveKey(Mutex<Option<Arc<CertifiedKey>>>);

impl ResolvesServerCert for LiveKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Serving {
    /// Issues the first certificate; the error says why it could not be.
    /// Returns it with when to renew it (unix seconds).
    pub(crate) async fn start(ca: &Ca, hosts: &[String]) -> Result<(Self, u64), String> {
        let spiffe_id = format!("{}{SPIFFE_PATH}", ca.trust_domain().id());
        let serving = Self {
            identity: Identity::new(),
            key: Arc::default(),
            spiffe_id,
        };
        let refresh_at = serving.renew(ca, hosts).await?;
        Ok((serving, refresh_at))
    }

    /// Signs a new leaf and puts it in force; when the current one should
    /// be renewed (unix seconds).
    async fn renew(&self, ca: &Ca, hosts: &[String]) -> Result<u64, String> {
        let (signed, key_pem) = ca
            .serving(&self.spiffe_id, hosts)
            .await
            .map_err(|r| match r {
                Refusal::Invalid(m)
                | Refusal::NotFound(m)
                | Refusal::Conflict(m)
                | Refusal::Full(m)
                | Refusal::Unavailable(m) => m,
            })?;
        let credentials = Credentials::from_pem(
            signed.chain_pem.as_bytes(),
            key_pem.as_bytes(),
            signed.bundle_pem.as_bytes(),
        )
        .map_err(|e| format!("the control plane's own certificate: {e}"))?;
        let certified = CertifiedKey::from_der(
            credentials.chain().to_vec(),
            rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| format!("the control plane's own key: {e}"))?,
            &provider(),
        )
        .map_err(|e| format!("the control plane's own key: {e}"))?;
        self.identity.set_credentials(credentials);
        *self.key.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(certified));
        Ok(signed.refresh_at)
    }

    /// Keeps the certificate fresh: renewed at its refresh time, and as
    /// soon as the CA's bundle differs from the one it was issued with.
    pub(crate) async fn keep_fresh(self, ca: Ca, hosts: Vec<String>, mut refresh_at: u64) {
        let mut bundle = ca.bundle_pem_now();
        loop {
            let until = refresh_at.saturating_sub(ca.unix_now());
            tokio::time::sleep(
                Duration::from_secs(until).clamp(Duration::from_secs(1), BUNDLE_CHECK),
            )
            .await;
            let now_bundle = ca.bundle_pem_now();
            if ca.unix_now() < refresh_at && now_bundle == bundle {
                continue;
            }
            match self.renew(&ca, &hosts).await {
                Ok(next) => {
                    refresh_at = next;
                    bundle = now_bundle;
                    tracing::info!(spiffe_id = %self.spiffe_id, "the control plane's certificate renewed");
                }
                Err(error) => {
                    // The current one stays in force until it expires.
                    tracing::error!(%error, "cannot renew the control plane's certificate");
                    refresh_at = ca.unix_now().saturating_add(BUNDLE_CHECK.as_secs());
                }
            }
        }
    }

    /// The xDS listener's config: this certificate, and a client SVID
    /// required, chained to the mesh's trust bundle.
    pub(crate) fn mtls_config(&self) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(&self.identity)))
            .with_cert_resolver(self.key.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The admin listener's config: this certificate, no client
    /// certificate (callers present tokens).
    pub(crate) fn server_config(&self, alpn: Vec<Vec<u8>>) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(self.key.clone());
        config.alpn_protocols = alpn;
        Ok(Arc::new(config))
    }
}
