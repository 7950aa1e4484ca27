//! The mesh's connector: the bottom of the client stack, to hand to a
//! hyper-util client.
//!
//! It opens TCP connections to the endpoints the balance step picks (with
//! `TCP_NODELAY`), backs off an endpoint that refused a connection (see
//! [`ConnectBackoff`](super::ConnectBackoff)), speaks mutual TLS to the
//! endpoints of clusters that require it, and tells hyper which protocol
//! to speak: HTTP/2 to an endpoint whose cluster says `http2`, HTTP/1.1
//! otherwise (over TLS, offered by ALPN), so one client serves clusters of
//! both kinds.
//!
//! Connections are pooled by address, so the clusters that hold an
//! endpoint decide together: one that requires mTLS makes every
//! connection to the endpoint mTLS, and the endpoint's SPIFFE ID must be
//! one that each of them accepts.

use super::Mesh;
use super::connect::{Backoff, BackoffConnector, Settled};
use super::mtls::{HandshakeFailed, MtlsUnavailable, PeerIdentity};
use super::refusals::Refusals;
use super::stream::Stream;
use crate::error::BoxError;
use crate::tls::metrics::{FailureReason, Side};
use crate::tls::{Identity, SpiffeId};
use http::Uri;
use http::uri::Scheme;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

/// A connector (a `tower::Service<Uri>`) for hyper-util's client, made by
/// [`Mesh::connector`].
///
/// ```
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use sinew::retry::ReplayBody;
///
/// # async fn f() -> Result<(), sinew::error::ConfigError> {
/// let mesh = sinew::mesh::Mesh::builder().build().await?;
/// let client = Client::builder(TokioExecutor::new())
///     .build::<_, ReplayBody<Full<bytes::Bytes>>>(mesh.connector());
/// # let _ = client;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MeshConnector {
    inner: BackoffConnector<Dial>,
    refusals: Refusals,
}

impl Mesh {
    /// A connector for hyper-util's client builder, so that an application
    /// can build its own client (pool sizes, idle timeouts, HTTP/2
    /// settings) and wrap it with [`Mesh::client_layer`]. Each connector
    /// remembers its own failed endpoints; clients that share one share
    /// that memory.
    pub fn connector(&self) -> MeshConnector {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        // `https` marks a request to a cluster that requires mTLS; TLS is
        // this connector's to do.
        tcp.enforce_http(false);
        let backoff = Backoff::default();
        let refusals = Refusals::default();
        let dial = Dial {
            mesh: self.clone(),
            tcp,
            configs: Arc::default(),
            backoff: backoff.clone(),
            refusals: refusals.clone(),
        };
        MeshConnector {
            inner: BackoffConnector::new(dial, backoff),
            refusals,
        }
    }
}

impl MeshConnector {
    /// The connections whose server refused the mesh's certificate.
    pub(super) fn refusals(&self) -> Refusals {
        self.refusals.clone()
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<MeshConnection, BoxError>> + Send>>;

impl tower::Service<Uri> for MeshConnector {
    type Response = MeshConnection;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.inner.call(uri)
    }
}

/// Opens one connection: TCP, then TLS when the endpoint's clusters say so.
#[derive(Clone, Debug)]
struct Dial {
    mesh: Mesh,
    tcp: HttpConnector,
    configs: Arc<ClientConfigs>,
    backoff: Backoff,
    refusals: Refusals,
}

impl tower::Service<Uri> for Dial {
    type Response = MeshConnection;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<Uri>::poll_ready(&mut self.tcp, cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let Some(address) = endpoint_of(&uri) else {
            return refuse(format!("`{uri}` does not name an endpoint's address").into());
        };
        let transport = self.mesh.transport_to(address);
        let http2 = transport.http2;
        let tls = match transport.mtls {
            Some(target) => match self.tls_for(&target, http2) {
                Ok((config, identity)) => Some((config, target.clusters, identity)),
                Err(refused) => return refuse(refused.into()),
            },
            // Never TLS without a cluster's identities to check, nor
            // plaintext for a request that was aimed at mTLS.
            None if uri.scheme() == Some(&Scheme::HTTPS) => {
                return refuse(
                    format!("{address} is not an endpoint of a cluster that requires mTLS").into(),
                );
            }
            None => None,
        };
        let connecting = tower::Service::<Uri>::call(&mut self.tcp, uri);
        let mesh = self.mesh.clone();
        let backoff = self.backoff.clone();
        let refusals = self.refusals.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let local = tcp.local_addr()?;
            let Some((config, clusters, identity)) = tls else {
                return Ok(MeshConnection::new(Stream::Plain(tcp), http2, None));
            };
            let name = ServerName::IpAddress(address.ip().into());
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    handshake_failed(FailureReason::of(&e));
                    HandshakeFailed::new(address, clusters.clone(), e)
                })?;
            // A resumed session skipped the server's certificate: check it
            // again against the bundle and the time now.
            identity
                .recheck_resumed_server(stream.get_ref().1)
                .map_err(|e| {
                    handshake_failed(FailureReason::BadCertificate);
                    let error = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
                    HandshakeFailed::new(address, clusters.clone(), error)
                })?;
            let peer = crate::tls::peer_id(stream.get_ref().1);
            let unconfirmed = (stream.get_ref().1.protocol_version()
                == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| {
                Box::new(Unconfirmed {
                    endpoint: address,
                    local,
                    clusters,
                    backoff,
                    refusals,
                    refused: false,
                    write_failed: None,
                })
            });
            let mut connection =
                MeshConnection::new(Stream::Tls(Box::new(stream.into())), http2, peer)
                    .guarded(mesh, address);
            connection.unconfirmed = unconfirmed;
            Ok(connection)
        })
    }
}

impl Dial {
    /// The client config for an endpoint held by the clusters of `target`,
    /// or why there is none.
    fn tls_for(
        &self,
        target: &MtlsTarget,
        http2: bool,
    ) -> Result<(Arc<ClientConfig>, Identity), MtlsUnavailable> {
        let first = target.clusters.first().map_or("", String::as_str);
        let identity = self
            .mesh
            .identity()
            .ok_or_else(|| MtlsUnavailable::no_identity(first))?;
        if !identity.is_ready() {
            return Err(MtlsUnavailable::no_certificate_yet(first));
        }
        let allowed = match &target.allowed {
            Allowed::Any => None,
            Allowed::Only(ids) if ids.is_empty() => {
                return Err(MtlsUnavailable::new(
                    first,
                    format!(
                        "clusters {} hold the same endpoint and accept no identity in common",
                        target.clusters.join(", ")
                    ),
                ));
            }
            Allowed::Only(ids) => Some(
                ids.iter()
                    .map(|id| {
                        SpiffeId::new(id).map_err(|e| {
                            MtlsUnavailable::new(first, format!("identity `{id}`: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let config = self
            .configs
            .get(identity, allowed, http2)
            .map_err(|e| MtlsUnavailable::new(first, format!("TLS client configuration: {e}")))?;
        Ok((config, identity.clone()))
    }
}

fn refuse(error: BoxError) -> Connecting {
    Box::pin(std::future::ready(Err(error)))
}

/// The endpoint a URI names, in canonical form: an IPv4-mapped IPv6
/// address is the IPv4 address it maps (the same socket), so that no
/// spelling of an mTLS endpoint's address escapes its clusters.
fn endpoint_of(uri: &Uri) -> Option<SocketAddr> {
    let address: SocketAddr = uri.authority()?.as_str().parse().ok()?;
    Some(canonical(address))
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// Client configs by the identities they accept and the protocol they
/// offer: built once (each reads the live certificate at every handshake).
#[derive(Debug, Default)]
struct ClientConfigs {
    built: Mutex<HashMap<ConfigKey, Arc<ClientConfig>>>,
}

/// The identities accepted (sorted; `None`: any the bundle vouches for)
/// and whether HTTP/2 is offered.
type ConfigKey = (Option<Vec<SpiffeId>>, bool);

/// More distinct sets than this (identities churned by configuration) and
/// the cache starts over.
const MAX_CONFIGS: usize = 256;

impl ClientConfigs {
    fn get(
        &self,
        identity: &Identity,
        mut allowed: Option<Vec<SpiffeId>>,
        http2: bool,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        if let Some(ids) = &mut allowed {
            ids.sort();
            ids.dedup();
        }
        let key = (allowed, http2);
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = built.get(&key) {
            return Ok(config.clone());
        }
        let alpn = if http2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        };
        let config = match &key.0 {
            Some(ids) => identity.client_config(ids.iter().cloned(), vec![alpn])?,
            None => identity.client_config_any(vec![alpn])?,
        };
        if built.len() >= MAX_CONFIGS {
            built.clear();
        }
        built.insert(key, config.clone());
        Ok(config)
    }
}

/// How to speak to one endpoint, from the clusters that hold it.
#[derive(Debug, Default)]
struct Transport {
    /// HTTP/2: a cluster holding the endpoint speaks it.
    http2: bool,
    /// Set when a cluster holding the endpoint requires mutual TLS.
    mtls: Option<MtlsTarget>,
}

/// The clusters holding an endpoint that require mTLS, and the identities
/// the endpoint may present to satisfy all of them.
#[derive(Debug)]
struct MtlsTarget {
    clusters: Vec<String>,
    allowed: Allowed,
}

#[derive(Debug)]
enum Allowed {
    /// Any identity the trust bundle vouches for.
    Any,
    /// These (what every cluster holding the endpoint accepts).
    Only(Vec<String>),
}

impl Allowed {
    /// What both `self` and a cluster accepting `ids` (any, when empty)
    /// accept.
    fn and(self, ids: &[String]) -> Self {
        match (self, ids.is_empty()) {
            (this, true) => this,
            (Self::Any, false) => Self::Only(ids.to_vec()),
            (Self::Only(mut these), false) => {
                these.retain(|id| ids.contains(id));
                Self::Only(these)
            }
        }
    }
}

impl Mesh {
    /// How to speak to the endpoint at `address`. Asked once per new
    /// connection.
    fn transport_to(&self, address: SocketAddr) -> Transport {
        let snapshot = self.snapshot();
        let mut transport = Transport::default();
        for name in snapshot.config().clusters.keys() {
            let Some(cluster) = snapshot.cluster(name) else {
                continue;
            };
            if !cluster
                .endpoints()
                .iter()
                .any(|e| canonical(e.address) == address)
            {
                continue;
            }
            let config = cluster.config();
            transport.http2 |= config.protocol == crate::config::Protocol::Http2;
            if config.requires_mtls() {
                let target = transport.mtls.get_or_insert(MtlsTarget {
                    clusters: Vec::new(),
                    allowed: Allowed::Any,
                });
                target.clusters.push(name.clone());
                let allowed = std::mem::replace(&mut target.allowed, Allowed::Any);
                target.allowed = allowed.and(&config.identities);
            }
        }
        transport
    }
}

pin_project! {
    /// A connection made by [`MeshConnector`]: TCP, or mutual TLS over it
    /// to an endpoint of a cluster that requires it; marked for HTTP/2
    /// when the endpoint's cluster speaks it. Over mTLS, responses carry
    /// the endpoint's [`PeerIdentity`].
    #[derive(Debug)]
    pub struct MeshConnection {
        #[pin]
        io: TokioIo<Stream>,
        http2: bool,
        peer: Option<PeerIdentity>,
        // Set over mTLS: the connection stops writing once its peer is no
        // longer one every mTLS cluster holding the endpoint accepts.
        guard: Option<Guard>,
        // Set over TLS 1.3 until the server's first bytes arrive.
        unconfirmed: Option<Box<Unconfirmed>>,
    }
}

/// Counts an outbound handshake that failed.
fn handshake_failed(reason: FailureReason) {
    crate::tls::metrics::handshake_failed(Side::Outbound, reason);
}

/// A TLS 1.3 connection whose server has not yet said whether it accepts
/// the mesh's certificate. In TLS 1.3 the client's handshake is over
/// before the server checks the client's certificate, so a refusal
/// arrives as an alert in place of the first response: it is reported as
/// the [`HandshakeFailed`] it is (the request was never processed) and
/// counts against the endpoint in the connect backoff.
///
/// Waiting for the server's verdict before handing the connection over
/// would cost every new connection a round trip, or the whole connect
/// timeout with a server that sends nothing before the first request.
#[derive(Debug)]
struct Unconfirmed {
    endpoint: SocketAddr,
    local: SocketAddr,
    clusters: Vec<String>,
    backoff: Backoff,
    refusals: Refusals,
    refused: bool,
    /// A write that failed while the verdict was awaited.
    write_failed: Option<io::Error>,
}

impl Unconfirmed {
    fn authority(&self) -> String {
        self.endpoint.to_string()
    }

    /// The server's first answer: bytes (or the end), or an error.
    fn settle(mut self, read: &mut io::Result<()>) {
        let Err(error) = read else {
            return; // dropped: the endpoint works
        };
        let Some(alert) = refuses_certificate(error) else {
            return;
        };
        self.refused = true;
        handshake_failed(FailureReason::PeerRefused);
        self.refusals
            .record(self.endpoint, self.local, self.clusters.clone(), alert);
        self.backoff.failed(&self.authority());
        tracing::warn!(
            endpoint = %self.endpoint,
            clusters = %self.clusters.join(", "),
            %error,
            "the endpoint refused the mesh's certificate"
        );
        // `ConnectionRefused`: the server refused the connection, and the
        // request was never processed.
        let cause = std::mem::replace(error, io::Error::from(io::ErrorKind::ConnectionRefused));
        *error = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            HandshakeFailed::new(self.endpoint, std::mem::take(&mut self.clusters), cause),
        );
    }
}

/// Not refused, whether the server answered, the connection failed
/// otherwise, or it closed before either: the endpoint's past failures
/// are forgotten, as for any connection that got through.
impl Drop for Unconfirmed {
    fn drop(&mut self) {
        // A write that failed without a verdict says nothing either way.
        if !self.refused && self.write_failed.is_none() {
            self.backoff.succeeded(&self.authority());
        }
    }
}

/// The alert in `error` by which a server refuses the client's
/// certificate, if it is one.
fn refuses_certificate(error: &io::Error) -> Option<rustls::AlertDescription> {
    use rustls::AlertDescription as A;
    let Some(rustls::Error::AlertReceived(alert)) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return None;
    };
    // Only alerts about certificates: a server sends them for no other
    // reason, whereas `access_denied` or `handshake_failure` could follow
    // a request the server did read.
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::CertificateRequired
    )
    .then_some(*alert)
}

impl Settled for MeshConnection {
    fn settled(&self) -> bool {
        self.unconfirmed.is_none()
    }
}

/// Keeps a pooled mTLS connection to what the configuration accepts now.
/// The pool reuses a connection by address, whatever cluster a request is
/// for, and the identity check runs at connect; when the clusters holding
/// the endpoint change (one that accepts other identities takes it in),
/// the next write checks the peer again, and a peer no longer accepted
/// fails the write: the request is not sent, and the pool drops the
/// connection.
#[derive(Debug)]
struct Guard {
    mesh: Mesh,
    endpoint: SocketAddr,
    /// The configuration version last checked against.
    checked: u64,
    refused: bool,
}

impl Guard {
    fn check(&mut self, peer: &SpiffeId) -> io::Result<()> {
        let version = self.mesh.shared.routing.load().snapshot.version();
        if version != self.checked && !self.refused {
            self.checked = version;
            let accepted = match self.mesh.transport_to(self.endpoint).mtls {
                None => true,
                Some(MtlsTarget {
                    allowed: Allowed::Any,
                    ..
                }) => true,
                Some(MtlsTarget {
                    allowed: Allowed::Only(ids),
                    ..
                }) => ids.iter().any(|id| id.as_str() == peer.to_string()),
            };
            self.refused = !accepted;
        }
        if self.refused {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{}'s identity {peer} is no longer one that every mTLS cluster holding it accepts",
                    self.endpoint
                ),
            ));
        }
        Ok(())
    }
}

impl MeshConnection {
    fn new(stream: Stream, http2: bool, peer: Option<SpiffeId>) -> Self {
        Self {
            io: TokioIo::new(stream),
            http2,
            peer: peer.map(PeerIdentity::new),
            guard: None,
            unconfirmed: None,
        }
    }

    fn guarded(mut self, mesh: Mesh, endpoint: SocketAddr) -> Self {
        let checked = mesh.shared.routing.load().snapshot.version();
        self.guard = Some(Guard {
            mesh,
            endpoint,
            checked,
            refused: false,
        });
        self
    }

    /// Before writing: over mTLS, the peer must still be accepted.
    #[inline]
    fn allowed(self: Pin<&mut Self>) -> io::Result<()> {
        let this = self.project();
        match (this.guard, this.peer.as_ref()) {
            (Some(guard), Some(peer)) => guard.check(peer.id()),
            _ => Ok(()),
        }
    }

    /// Whether a write failed before the server's verdict was read.
    #[inline]
    fn awaiting_verdict(&self) -> bool {
        self.unconfirmed
            .as_ref()
            .is_some_and(|u| u.write_failed.is_some())
    }

    /// A write failed before the server's verdict was read: a server that
    /// refused the mesh's certificate closed the connection after its
    /// alert, so the write may fail first (broken pipe, reset). The alert
    /// is then still to be read (the closed connection is readable at
    /// once) and is the error the write reports.
    fn hear_refusal<T>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        done: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut this = self.project();
        let Some(unconfirmed) = this.unconfirmed.as_mut() else {
            return done;
        };
        match done {
            Poll::Ready(Err(error)) => unconfirmed.write_failed = Some(error),
            done if unconfirmed.write_failed.is_none() => return done,
            _ => {}
        }
        let mut scratch = [std::mem::MaybeUninit::uninit(); 64];
        let mut scratch = hyper::rt::ReadBuf::uninit(&mut scratch);
        let read = ready!(this.io.as_mut().poll_read(cx, scratch.unfilled()));
        // Still there (checked above); were it gone, the write failed all
        // the same.
        let Some(mut unconfirmed) = this.unconfirmed.take() else {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        };
        let written = unconfirmed
            .write_failed
            .take()
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe));
        let Err(read) = read else {
            // Bytes or the end: no refusal, the write's own error stands.
            return Poll::Ready(Err(written));
        };
        let mut read = Err(read);
        unconfirmed.settle(&mut read);
        match read {
            Err(refused) if HandshakeFailed::find(&refused).is_some() => Poll::Ready(Err(refused)),
            _ => Poll::Ready(Err(written)),
        }
    }

    /// The identity the endpoint presented, over mutual TLS.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }
}

impl Connection for MeshConnection {
    fn connected(&self) -> Connected {
        let mut connected = self.io.inner().tcp().connected();
        if let Some(peer) = &self.peer {
            connected = connected.extra(peer.clone());
        }
        if self.http2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl Read for MeshConnection {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let Some(unconfirmed) = this.unconfirmed.take() else {
            return this.io.poll_read(cx, buf);
        };
        match this.io.poll_read(cx, buf) {
            Poll::Pending => {
                *this.unconfirmed = Some(unconfirmed);
                Poll::Pending
            }
            Poll::Ready(mut read) => {
                unconfirmed.settle(&mut read);
                Poll::Ready(read)
            }
        }
    }
}

impl Write for MeshConnection {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(refused) = self.as_mut().allowed() {
            return Poll::Ready(Err(refused));
        }
        if self.awaiting_verdict() {
            return self.hear_refusal(cx, Poll::Pending);
        }
        let written = self.as_mut().project().io.poll_write(cx, buf);
        self.hear_refusal(cx, written)
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.awaiting_verdict() {
            return self.hear_refusal(cx, Poll::Pending);
        }
        let flushed = self.as_mut().project().io.poll_flush(cx);
        self.hear_refusal(cx, flushed)
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Err(refused) = self.as_mut().allowed() {
            return Poll::Ready(Err(refused));
        }
        if self.awaiting_verdict() {
            return self.hear_refusal(cx, Poll::Pending);
        }
        let written = self.as_mut().project().io.poll_write_vectored(cx, bufs);
        self.hear_refusal(cx, written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unconfirmed(backoff: &Backoff) -> Unconfirmed {
        Unconfirmed {
            endpoint: "10.0.0.1:443".parse().unwrap_or_else(|_| unreachable!()),
            local: "10.0.0.2:50000".parse().unwrap_or_else(|_| unreachable!()),
            clusters: vec!["reviews".to_owned()],
            backoff: backoff.clone(),
            refusals: Refusals::default(),
            refused: false,
            write_failed: None,
        }
    }

    fn alert(alert: rustls::AlertDescription) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(alert),
        )
    }

    // The end-to-end case is in tests/mesh/review.rs; these are the cases
    // a real server does not give on demand.
    #[tokio::test(start_paused = true)]
    async fn a_refused_certificate_backs_the_endpoint_off_and_an_answer_clears_it() {
        let backoff = Backoff::default();
        let mut read = Err(alert(rustls::AlertDescription::UnknownCA));
        unconfirmed(&backoff).settle(&mut read);
        let error = read.err().unwrap_or_else(|| unreachable!());
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
        assert!(HandshakeFailed::find(&error).is_some_and(|f| f.clusters == ["reviews"]));
        assert!(crate::classify::never_processed(&error));
        assert!(backoff.waiting("10.0.0.1:443").is_some());

        unconfirmed(&backoff).settle(&mut Ok(()));
        assert!(backoff.waiting("10.0.0.1:443").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_a_refused_handshake() {
        let backoff = Backoff::default();
        for error in [
            alert(rustls::AlertDescription::InternalError),
            alert(rustls::AlertDescription::AccessDenied),
            io::Error::from(io::ErrorKind::ConnectionReset),
        ] {
            let kind = error.kind();
            let mut read = Err(error);
            unconfirmed(&backoff).settle(&mut read);
            let error = read.err().unwrap_or_else(|| unreachable!());
            assert_eq!(error.kind(), kind);
            assert!(HandshakeFailed::find(&error).is_none());
        }
        assert!(backoff.waiting("10.0.0.1:443").is_none());
    }
}
