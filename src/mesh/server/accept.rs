//! Accepting connections: at most `connections.max` open at once (one
//! more is closed as soon as it is accepted), and an `accept` that fails
//! (out of file descriptors, say) backs off instead of spinning.

use super::live::Live;
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

    /// The next connection under the cap. Cancel safe.
    pub(crate) async fn accept(&mut self) -> Connection {
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
                    return Connection {
                        stream,
                        peer,
                        _open: Open(self.open.clone()),
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
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted connection, holding its place under the connection cap
/// until it is dropped. For tonic it is the item of
/// [`ServerBuilder::incoming`](super::ServerBuilder::incoming).
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    _open: Open,
}

impl Connection {
    /// The caller's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }
}

/// tonic reads the caller's address through this (`request.remote_addr()`).
#[cfg(feature = "grpc")]
impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of a listener under the cap, as a stream (for
/// `tonic::transport::Server::serve_with_incoming`). It never ends; stop
/// polling it to stop accepting.
pub(crate) fn incoming(
    acceptor: Acceptor,
) -> impl futures_util::Stream<Item = io::Result<Connection>> + Send + 'static {
    futures_util::stream::unfold(acceptor, |mut acceptor| async move {
        let connection = acceptor.accept().await;
        Some((Ok(connection), acceptor))
    })
}
