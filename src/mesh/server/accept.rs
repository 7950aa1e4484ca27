//! Accepting connections: at most `connections.max` open at once (one
//! more is closed as soon as it is accepted), and an `accept` that fails
//! (out of file descriptors, say) backs off instead of spinning. A
//! connection holds its place from `accept` on, through its TLS handshake,
//! until it closes.

use super::handshake::Handshake;
use super::live::Live;
use crate::mesh::PeerIdentity;
use crate::mesh::stream::Stream;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections under the cap in force.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    live: Arc<Live>,
    open: Arc<AtomicUsize>,
    backoff: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(5);

impl Acceptor {
    pub(crate) fn new(listener: TcpListener, live: Arc<Live>) -> Self {
        Self {
            listener,
            live,
            open: Arc::default(),
            backoff: FIRST_BACKOFF,
        }
    }

    /// The next connection under the cap, before its TLS handshake. Cancel
    /// safe.
    pub(crate) async fn accept(&mut self) -> Accepted {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    self.backoff = FIRST_BACKOFF;
                    let max = self.live.limits().config.connections.max;
                    if self.open.fetch_add(1, Ordering::AcqRel) >= max {
                        self.open.fetch_sub(1, Ordering::AcqRel);
                        tracing::debug!(%peer, max, "too many connections: closing one");
                        continue;
                    }
                    // Small responses go out at once.
                    let _ = stream.set_nodelay(true);
                    return Accepted {
                        stream,
                        peer,
                        open: Open(self.open.clone()),
                    };
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?self.backoff, "cannot accept a connection");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Counts a connection open until it is dropped.
#[derive(Debug)]
pub(crate) struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP connection accepted under the cap, its handshake still to come.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) open: Open,
}

impl Connection {
    pub(crate) fn new(
        stream: Stream,
        peer: SocketAddr,
        identity: Option<PeerIdentity>,
        open: Open,
    ) -> Self {
        Self {
            stream,
            peer,
            identity,
            _open: open,
        }
    }
}

/// An accepted connection, past its TLS handshake when it had one,
/// holding its place under the connection cap until it is dropped. For
/// tonic it is the item of
/// [`ServerBuilder::incoming`](super::ServerBuilder::incoming).
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    peer: SocketAddr,
    identity: Option<PeerIdentity>,
    _open: Open,
}

impl Connection {
    /// The caller's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The caller's SPIFFE ID, when it came over mutual TLS; `None` for a
    /// plaintext connection.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The socket (under TLS, when the connection is TLS).
    pub fn get_ref(&self) -> &TcpStream {
        self.stream.tcp()
    }
}

/// What tonic puts in each request's extensions for a [`Connection`]
/// (its `Connected::ConnectInfo`). The server stack
/// ([`InboundLayer`](super::InboundLayer)) spreads it into tonic's
/// [`TcpConnectInfo`](tonic::transport::server::TcpConnectInfo), so that
/// `request.remote_addr()` works, and the caller's
/// [`PeerIdentity`] when it has one.
#[cfg(feature = "grpc")]
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    tcp: tonic::transport::server::TcpConnectInfo,
    identity: Option<PeerIdentity>,
}

#[cfg(feature = "grpc")]
impl ConnectionInfo {
    /// The addresses of the connection.
    pub fn tcp(&self) -> &tonic::transport::server::TcpConnectInfo {
        &self.tcp
    }

    /// The caller's SPIFFE ID, when it came over mutual TLS.
    pub fn peer_identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// Puts the parts of the `ConnectionInfo` in `extensions` (tonic's
    /// `TcpConnectInfo` and the `PeerIdentity`) as their own entries.
    #[inline]
    pub(crate) fn spread(extensions: &mut http::Extensions) {
        let Some(info) = extensions.get::<Self>() else {
            return;
        };
        let (tcp, identity) = (info.tcp.clone(), info.identity.clone());
        extensions.insert(tcp);
        if let Some(identity) = identity {
            extensions.insert(identity);
        }
    }
}

/// tonic reads the caller's address and identity through this.
#[cfg(feature = "grpc")]
impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            tcp: self.stream.tcp().connect_info(),
            identity: self.identity.clone(),
        }
    }
}

impl AsyncRead for Connection {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    #[inline]
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

type Handshaking = Pin<Box<dyn Future<Output = Option<Connection>> + Send>>;

/// The connections of a listener under the cap, past their handshakes, as
/// a stream (for `tonic::transport::Server::serve_with_incoming`). The
/// handshakes run side by side, each bounded by the header-read timeout,
/// so a slow caller holds back no other. It never ends; stop polling it
/// to stop accepting.
pub(crate) fn incoming(
    acceptor: Acceptor,
    handshake: Arc<Handshake>,
) -> impl futures_util::Stream<Item = io::Result<Connection>> + Send + 'static {
    let pending: FuturesUnordered<Handshaking> = FuturesUnordered::new();
    futures_util::stream::unfold(
        (acceptor, handshake, pending),
        |(mut acceptor, handshake, mut pending)| async move {
            loop {
                tokio::select! {
                    accepted = acceptor.accept() => {
                        let timeout = acceptor.live.limits().config.connections.header_read_timeout;
                        let deadline = tokio::time::Instant::now() + timeout;
                        let handshake = handshake.clone();
                        pending.push(Box::pin(async move { handshake.run(accepted, deadline).await }));
                    }
                    Some(done) = pending.next(), if !pending.is_empty() => {
                        if let Some(connection) = done {
                            return Some((Ok(connection), (acceptor, handshake, pending)));
                        }
                    }
                }
            }
        },
    )
}
