//! The rustls verifiers: the peer's chain is verified against the bundle
//! of the trust domain in its SPIFFE ID, then the X.509-SVID rules, then
//! (client side) the peer's SPIFFE ID against the identities allowed.
//! Host names are not checked: the SPIFFE ID is the name.

use super::bundle::TrustBundle;
use super::identity::{Identity, Live};
use super::spiffe_id::SpiffeId;
use super::svid::{Svid, SvidError, parse_svid};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a peer's certificate was refused during the handshake.
///
/// The verifiers return it inside `rustls::Error::InvalidCertificate(
/// CertificateError::Other(..))`; [`VerifyError::find`] digs it out of
/// the `io::Error` a TLS handshake returns. The peer sees a
/// `bad_certificate` alert, and no application byte is exchanged.
///
/// ```
/// use sinew::tls::{SpiffeId, VerifyError};
///
/// let err = VerifyError::UnexpectedIdentity {
///     peer: "spiffe://td/ns/a/sa/evil".parse().unwrap(),
///     expected: vec!["spiffe://td/ns/a/sa/web".parse().unwrap()],
/// };
/// assert_eq!(
///     err.to_string(),
///     "peer spiffe://td/ns/a/sa/evil refused: not one of the expected identities [spiffe://td/ns/a/sa/web]"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// This workload has no credentials (hence no trust bundle) yet.
    NoCredentials,
    /// The peer's leaf is not a valid X.509-SVID.
    Svid(SvidError),
    /// The bundle has no root for the trust domain of the peer's ID.
    UnknownTrustDomain {
        /// The peer's SPIFFE ID, as its certificate claims.
        peer: SpiffeId,
    },
    /// The peer's chain does not verify against its trust domain's roots
    /// (wrong CA, bad signature, ...).
    UntrustedChain {
        /// The peer's SPIFFE ID, as its certificate claims.
        peer: SpiffeId,
        /// What the chain verification said.
        reason: String,
    },
    /// A valid SVID, but not one of the identities this client expects.
    UnexpectedIdentity {
        /// The peer's SPIFFE ID.
        peer: SpiffeId,
        /// The identities allowed (the cluster's).
        expected: Vec<SpiffeId>,
    },
}

impl VerifyError {
    /// Finds a `VerifyError` in an error returned by a handshake (an
    /// `io::Error` from tokio-rustls, a `rustls::Error`, or any error whose
    /// `source` chain leads to one).
    ///
    /// ```
    /// use sinew::tls::VerifyError;
    /// use std::sync::Arc;
    ///
    /// let rustls_err = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
    ///     rustls::OtherError(Arc::new(VerifyError::NoCredentials)),
    /// ));
    /// let io_err = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err);
    /// assert_eq!(VerifyError::find(&io_err), Some(&VerifyError::NoCredentials));
    /// ```
    pub fn find<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a VerifyError> {
        let mut current = Some(err);
        while let Some(err) = current {
            if let Some(found) = err.downcast_ref::<VerifyError>() {
                return Some(found);
            }
            if let Some(inner) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                current = Some(inner);
                continue;
            }
            if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
                err.downcast_ref::<rustls::Error>()
            {
                current = Some(&*other.0);
                continue;
            }
            current = err.source();
        }
        None
    }

    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoCredentials => f.write_str(
                "no workload certificate yet: cannot verify peers without a trust bundle",
            ),
            Self::Svid(e) => write!(f, "peer certificate refused: {e}"),
            Self::UnknownTrustDomain { peer } => write!(
                f,
                "peer {peer} refused: no trust bundle for its trust domain {}",
                peer.trust_domain()
            ),
            Self::UntrustedChain { peer, reason } => write!(
                f,
                "peer {peer} refused: its chain does not verify against the roots of {}: {reason}",
                peer.trust_domain()
            ),
            Self::UnexpectedIdentity { peer, expected } => {
                write!(
                    f,
                    "peer {peer} refused: not one of the expected identities ["
                )?;
                for (i, id) in expected.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{id}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl StdError for VerifyError {}

/// Checks a certificate chain as an SVID issued in a trust domain of
/// `bundle`, for `usage`.
pub(crate) fn verify_chain(
    bundle: &TrustBundle,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
    algs: &WebPkiSupportedAlgorithms,
) -> Result<Svid, VerifyError> {
    // The SVID rules come first so that a refusal names the rule broken
    // (webpki would call an expired leaf or a CA leaf a chain error).
    let svid = parse_svid(end_entity, system_time(now)).map_err(VerifyError::Svid)?;
    let anchors = bundle.anchors(svid.id.trust_domain());
    if anchors.is_empty() {
        return Err(VerifyError::UnknownTrustDomain { peer: svid.id });
    }
    let untrusted = |reason: String| VerifyError::UntrustedChain {
        peer: svid.id.clone(),
        reason,
    };
    let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|e| untrusted(e.to_string()))?;
    cert.verify_for_usage(algs.all, anchors, intermediates, now, usage, None, None)
        .map_err(|e| untrusted(e.to_string()))?;
    Ok(svid)
}

fn system_time(now: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(now.as_secs())
}

/// The client side's verifier of servers: the server must present an
/// X.509-SVID of a trusted trust domain whose SPIFFE ID is one of
/// `allowed`. The server name used to connect is not checked.
///
/// It reads the trust bundle from the [`Identity`] at each handshake, so a
/// new bundle applies to the next handshake. [`Identity::client_config`]
/// builds a whole `ClientConfig` with it.
///
/// ```
/// use sinew::tls::{Identity, SpiffeServerVerifier};
///
/// let identity = Identity::new();
/// let verifier = SpiffeServerVerifier::new(
///     &identity,
///     vec!["spiffe://td/ns/shop/sa/cart".parse().unwrap()],
/// );
/// assert_eq!(verifier.allowed().len(), 1);
/// ```
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    live: Arc<Live>,
    /// Sorted, without duplicates; `None`: any identity of a trusted
    /// trust domain.
    allowed: Option<Vec<SpiffeId>>,
}

impl SpiffeServerVerifier {
    /// A verifier accepting servers whose SPIFFE ID is in `allowed`.
    pub fn new(identity: &Identity, allowed: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self::from_live(identity.live().clone(), Some(Self::normalize(allowed)))
    }

    /// A verifier accepting any server whose SVID chains to the bundle's
    /// roots for its trust domain: for a cluster that requires mTLS
    /// without naming identities (an xDS `UpstreamTlsContext` without SAN
    /// matchers).
    ///
    /// ```
    /// let verifier = sinew::tls::SpiffeServerVerifier::any(&sinew::tls::Identity::new());
    /// assert!(verifier.accepts_any());
    /// ```
    pub fn any(identity: &Identity) -> Self {
        Self::from_live(identity.live().clone(), None)
    }

    pub(crate) fn from_live(live: Arc<Live>, allowed: Option<Vec<SpiffeId>>) -> Self {
        Self { live, allowed }
    }

    pub(crate) fn normalize(allowed: impl IntoIterator<Item = SpiffeId>) -> Vec<SpiffeId> {
        let mut allowed: Vec<SpiffeId> = allowed.into_iter().collect();
        allowed.sort();
        allowed.dedup();
        allowed
    }

    /// The identities accepted, sorted (none when it
    /// [accepts any](Self::accepts_any)).
    pub fn allowed(&self) -> &[SpiffeId] {
        self.allowed.as_deref().unwrap_or_default()
    }

    /// Whether any identity of a trusted trust domain is accepted.
    pub fn accepts_any(&self) -> bool {
        self.allowed.is_none()
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let credentials = self
            .live
            .credentials()
            .ok_or_else(|| VerifyError::NoCredentials.into_rustls())?;
        let svid = verify_chain(
            credentials.bundle(),
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            self.live.algorithms(),
        )
        .map_err(VerifyError::into_rustls)?;
        if let Some(allowed) = &self.allowed
            && allowed.binary_search(&svid.id).is_err()
        {
            return Err(VerifyError::UnexpectedIdentity {
                peer: svid.id,
                expected: allowed.clone(),
            }
            .into_rustls());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.live.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.live.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.live.algorithms().supported_schemes()
    }
}

/// The server side's verifier of clients: a client certificate is
/// mandatory, and must be an X.509-SVID of a trusted trust domain. Any
/// SPIFFE ID is accepted: what each may do is authorization's business,
/// after the handshake (read it with [`peer_id`](super::peer_id)). A client
/// that sends no certificate is refused by rustls itself, with
/// `rustls::Error::NoCertificatesPresented`.
///
/// It reads the trust bundle from the [`Identity`] at each handshake.
///
/// ```
/// use sinew::tls::{Identity, SpiffeClientVerifier};
/// use rustls::server::danger::ClientCertVerifier;
///
/// let verifier = SpiffeClientVerifier::new(&Identity::new());
/// assert!(verifier.client_auth_mandatory());
/// ```
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    live: Arc<Live>,
}

impl SpiffeClientVerifier {
    /// A verifier reading the trust bundle from `identity`.
    pub fn new(identity: &Identity) -> Self {
        Self {
            live: identity.live().clone(),
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Every workload has exactly one SVID: there is nothing to choose.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let credentials = self
            .live
            .credentials()
            .ok_or_else(|| VerifyError::NoCredentials.into_rustls())?;
        verify_chain(
            credentials.bundle(),
            end_entity,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            self.live.algorithms(),
        )
        .map_err(VerifyError::into_rustls)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.live.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.live.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.live.algorithms().supported_schemes()
    }
}

impl Identity {
    /// Checks again, against the trust bundle and the time now, the client
    /// of a server connection whose handshake resumed a session: a resumed
    /// TLS 1.3 handshake sends no certificate, so the verifier did not
    /// run, and the session may outlive the root or the leaf it was made
    /// with (tickets live for hours). A full handshake needs no second
    /// look. Call it after the handshake, before serving the connection.
    ///
    /// ```
    /// # fn f(identity: &sinew::tls::Identity, tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    /// if let Err(refused) = identity.recheck_resumed_client(tls.get_ref().1) {
    ///     eprintln!("closing a resumed connection: {refused}");
    /// }
    /// # }
    /// ```
    pub fn recheck_resumed_client(
        &self,
        connection: &rustls::ServerConnection,
    ) -> Result<(), VerifyError> {
        self.recheck_resumed(connection, webpki::KeyUsage::client_auth())
    }

    /// The same for the server of a client connection
    /// ([`recheck_resumed_client`](Self::recheck_resumed_client)).
    ///
    /// ```
    /// # fn f(identity: &sinew::tls::Identity, tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) {
    /// if let Err(refused) = identity.recheck_resumed_server(tls.get_ref().1) {
    ///     eprintln!("not using a resumed connection: {refused}");
    /// }
    /// # }
    /// ```
    pub fn recheck_resumed_server(
        &self,
        connection: &rustls::ClientConnection,
    ) -> Result<(), VerifyError> {
        self.recheck_resumed(connection, webpki::KeyUsage::server_auth())
    }

    fn recheck_resumed(
        &self,
        connection: &rustls::CommonState,
        usage: webpki::KeyUsage,
    ) -> Result<(), VerifyError> {
        if connection.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
            return Ok(());
        }
        let credentials = self
            .live()
            .credentials()
            .ok_or(VerifyError::NoCredentials)?;
        let Some((leaf, intermediates)) = connection
            .peer_certificates()
            .and_then(|chain| chain.split_first())
        else {
            return Err(VerifyError::Svid(SvidError::NoUriSan));
        };
        verify_chain(
            credentials.bundle(),
            leaf,
            intermediates,
            UnixTime::now(),
            usage,
            self.live().algorithms(),
        )
        .map(|_| ())
    }
}
