//! The xDS listener's connections, plaintext or mutual TLS, and who is at
//! the other end of each: its address and, over mTLS, the SPIFFE ID of
//! its verified certificate ([`PeerInfo`], in each request's extensions).
//!
//! TLS handshakes run in tasks of their own, under a deadline, so that a
//! client that never finishes its handshake holds up no one else.

use crate::listen::{Permitted, accept};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of an xDS connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// Its address.
    pub remote_addr: Option<SocketAddr>,
    /// The SPIFFE ID of its certificate, verified against the mesh's trust
    /// bundle; `None` over plaintext.
    pub spiffe_id: Option<String>,
}

/// One accepted connection.
#[derive(Debug)]
pub(crate) enum Connection {
    Plain(Permitted),
    Tls(Box<TlsStream<Permitted>>),
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Connection::Plain(stream) => PeerInfo {
                remote_addr: stream.peer_addr(),
                spiffe_id: None,
            },
            Connection::Tls(stream) => {
                let (tcp, session) = stream.get_ref();
                PeerInfo {
                    remote_addr: tcp.peer_addr(),
                    spiffe_id: sinew::tls::peer_id(session).map(|id| id.to_string()),
                }
            }
        }
    }
}

/// The connections of `listener` under `cap`, for tonic: as accepted, or
/// once their TLS handshake with `tls` succeeds. Ends (and drops the
/// listener) once tonic drops the stream.
pub(crate) fn incoming(
    listener: TcpListener,
    cap: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
) -> (
    impl futures_util::Stream<Item = io::Result<Connection>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel::<Connection>(16);
    let acceptor = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                stream = accept(&listener, &cap, "xds") => stream,
                () = tx.closed() => return,
            };
            match &tls {
                None => {
                    if tx.send(Connection::Plain(stream)).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                            Ok(Ok(stream)) => {
                                let _ = tx.send(Connection::Tls(Box::new(stream))).await;
                            }
                            Ok(Err(error)) => refused(&error.to_string()),
                            Err(_) => refused("no handshake within the deadline"),
                        }
                    });
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) },
        );
    (stream, acceptor)
}

fn refused(error: &str) {
    // A client without a certificate of the mesh: debug, not warn, since
    // anyone reaching the port can cause it.
    tracing::debug!(%error, "xDS TLS handshake refused");
    metrics::counter!("sinew_control_plane_handshakes_refused_total", "listener" => "xds")
        .increment(1);
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(s) => s.is_write_vectored(),
            Connection::Tls(s) => s.is_write_vectored(),
        }
    }
}
