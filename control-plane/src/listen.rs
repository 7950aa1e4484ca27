//! Accepting connections: at most so many at once (one more is closed
//! at once), and an `accept` that fails (out of file descriptors, say)
//! backs off instead of spinning.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection holding its place under the cap until it closes.
#[derive(Debug)]
pub(crate) struct Permitted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

/// Accepts the next connection that fits under `cap`; connections over it
/// are closed as they come, failures to accept wait and retry.
pub(crate) async fn accept(
    listener: &TcpListener,
    cap: &Arc<Semaphore>,
    what: &'static str,
) -> Permitted {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let Ok(permit) = cap.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, what, "too many connections: closing one");
                    metrics::counter!("sinew_control_plane_connections_refused_total", "listener" => what)
                        .increment(1);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                return Permitted {
                    stream,
                    _permit: permit,
                };
            }
            Err(error) => {
                tracing::warn!(%error, what, retry_in = ?backoff, "cannot accept a connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

impl Permitted {
    /// The peer's address.
    pub(crate) fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}

impl AsyncRead for Permitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Permitted {
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
