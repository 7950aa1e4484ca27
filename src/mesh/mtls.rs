//! The mesh's refusal to speak plaintext to a cluster that requires mutual
//! TLS ([`ClusterConfig::requires_mtls`](crate::config::ClusterConfig::requires_mtls)).
//!
//! Two places refuse, so that no path fails open: the balance step, before
//! anything is sent (the error then reaches the caller as it is), and the
//! connector, for requests that reach it by another way (a user's own
//! client, a request aimed by hand, a configuration that changed between
//! the two).

use crate::tls::Identity;
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
    pub(crate) fn new(cluster: &str, reason: impl Into<String>) -> Self {
        Self {
            cluster: cluster.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn no_identity(cluster: &str) -> Self {
        Self::new(
            cluster,
            "the mesh has no workload identity (give it one with MeshBuilder::identity); \
             requests to it are refused rather than sent in plaintext",
        )
    }

    pub(crate) fn no_certificate_yet(cluster: &str) -> Self {
        Self::new(
            cluster,
            "the mesh's workload identity has no certificate yet; requests to it are \
             refused rather than sent in plaintext",
        )
    }
}

/// What the balance step checks before sending to a cluster that requires
/// mTLS: that the mesh has an identity with a certificate.
#[derive(Clone, Debug)]
pub(super) enum Gate {
    NoIdentity,
    Identity(Identity),
}

impl Gate {
    pub(super) fn of(identity: Option<&Identity>) -> Self {
        identity.map_or(Self::NoIdentity, |i| Self::Identity(i.clone()))
    }

    /// Refuses, naming `cluster`, when mTLS cannot be had now.
    pub(super) fn check(&self, cluster: &str) -> Result<(), MtlsUnavailable> {
        match self {
            Self::NoIdentity => Err(MtlsUnavailable::no_identity(cluster)),
            Self::Identity(identity) if !identity.is_ready() => {
                Err(MtlsUnavailable::no_certificate_yet(cluster))
            }
            Self::Identity(_) => Ok(()),
        }
    }
}

/// The TLS handshake with an endpoint failed: the endpoint did not
/// process the request (in its own words, when it refused the mesh's
/// certificate after the handshake, see below). The error says why (the endpoint's certificate
/// was not an identity the cluster accepts, was not trusted, the endpoint
/// refused the mesh's certificate, ...);
/// [`VerifyError::find`](crate::tls::VerifyError::find) on it tells a
/// certificate the mesh refused apart.
///
/// Over TLS 1.3 a server checks the client's certificate after the
/// client's handshake is over, so its refusal arrives where the response
/// would have: the mesh's clients report it as this error, over HTTP/1.1
/// and HTTP/2, and [`HandshakeFailed::find`] finds it in the error. The
/// refusal is also logged (warning `sinew::mesh::connector`) and the
/// connect backoff holds off new connections to the endpoint.
#[derive(Debug)]
pub struct HandshakeFailed {
    /// The endpoint.
    pub endpoint: std::net::SocketAddr,
    /// The clusters holding the endpoint that require mTLS.
    pub clusters: Vec<String>,
    error: std::io::Error,
}

impl HandshakeFailed {
    /// The `HandshakeFailed` in `error`'s chain of sources, looking inside
    /// the `io::Error`s that hide what they wrap from `source()`.
    ///
    /// ```
    /// # async fn f(mesh: sinew::mesh::Mesh, request: http::Request<http_body_util::Full<bytes::Bytes>>) {
    /// use tower::ServiceExt;
    /// if let Err(error) = mesh.http_client("reviews").oneshot(request).await {
    ///     if let Some(failed) = sinew::mesh::HandshakeFailed::find(error.as_ref()) {
    ///         eprintln!("no mutual TLS with {}: {failed}", failed.endpoint);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a HandshakeFailed> {
        let mut next = Some(error);
        while let Some(err) = next {
            if let Some(found) = err.downcast_ref::<HandshakeFailed>() {
                return Some(found);
            }
            next = match err
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.get_ref())
            {
                Some(wrapped) => Some(wrapped),
                None => err.source(),
            };
        }
        None
    }

    pub(super) fn new(
        endpoint: std::net::SocketAddr,
        clusters: Vec<String>,
        error: std::io::Error,
    ) -> Self {
        Self {
            endpoint,
            clusters,
            error,
        }
    }
}

impl fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mutual TLS with {} (cluster {}) failed: {}",
            self.endpoint,
            self.clusters.join(", "),
            self.error
        )
    }
}

impl std::error::Error for HandshakeFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
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

/// The SPIFFE ID of the peer at the other end of a mutual TLS connection:
/// on responses through the mesh's connector (the endpoint), and on
/// requests a mesh server received (the caller). Cheap to clone.
///
/// ```
/// # fn f(response: http::Response<()>) {
/// if let Some(peer) = response.extensions().get::<sinew::mesh::PeerIdentity>() {
///     println!("answered by {}", peer.id());
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity(std::sync::Arc<PeerId>);

/// The ID, and its text made once per connection (authorization matches
/// on the text at every request).
#[derive(Debug, PartialEq, Eq, Hash)]
struct PeerId {
    id: crate::tls::SpiffeId,
    text: Box<str>,
}

impl PeerIdentity {
    /// The peer's identity.
    ///
    /// ```
    /// let id: sinew::tls::SpiffeId = "spiffe://example.org/ns/shop/sa/cart".parse().unwrap();
    /// let peer = sinew::mesh::PeerIdentity::new(id.clone());
    /// assert_eq!(peer.id(), &id);
    /// ```
    pub fn new(id: crate::tls::SpiffeId) -> Self {
        let text = id.to_string().into_boxed_str();
        Self(std::sync::Arc::new(PeerId { id, text }))
    }

    /// The peer's SPIFFE ID.
    pub fn id(&self) -> &crate::tls::SpiffeId {
        &self.0.id
    }

    /// The peer's SPIFFE ID as text.
    ///
    /// ```
    /// let id: sinew::tls::SpiffeId = "spiffe://example.org/ns/shop/sa/cart".parse().unwrap();
    /// let peer = sinew::mesh::PeerIdentity::new(id);
    /// assert_eq!(peer.as_str(), "spiffe://example.org/ns/shop/sa/cart");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0.text
    }
}
