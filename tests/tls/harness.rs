//! A TLS echo server and client on loopback, with deadlines.

use rustls::{ClientConfig, HandshakeKind, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use sinew::tls::{SpiffeId, peer_id};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Generous: the machine may be busy; a hang fails instead of waiting.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no answer within {DEADLINE:?}"),
    }
}

/// What the server learnt from a completed handshake.
#[derive(Debug)]
pub struct Accepted {
    pub peer: Option<SpiffeId>,
    pub peer_leaf: Option<CertificateDer<'static>>,
    pub kind: Option<HandshakeKind>,
}

/// An echo server: each handshake's outcome is reported, then every byte
/// that reaches the "handler" is counted and echoed.
pub struct Server {
    pub addr: SocketAddr,
    handshakes: mpsc::UnboundedReceiver<io::Result<Accepted>>,
    pub bytes_to_handler: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(config: Arc<ServerConfig>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(config);
        let (tx, handshakes) = mpsc::unbounded_channel();
        let bytes_to_handler = Arc::new(AtomicUsize::new(0));
        let bytes = bytes_to_handler.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, tx, bytes) = (acceptor.clone(), tx.clone(), bytes.clone());
                connections.spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let conn = tls.get_ref().1;
                    let _ = tx.send(Ok(Accepted {
                        peer: peer_id(conn),
                        peer_leaf: conn.peer_certificates().and_then(|c| c.first().cloned()),
                        kind: conn.handshake_kind(),
                    }));
                    let mut buf = [0u8; 1024];
                    loop {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                bytes.fetch_add(n, Ordering::SeqCst);
                                if tls.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Server {
            addr,
            handshakes,
            bytes_to_handler,
            task,
        }
    }

    /// The outcome of the next handshake the server finished or failed.
    pub async fn handshake(&mut self) -> io::Result<Accepted> {
        within("server handshake", self.handshakes.recv())
            .await
            .expect("server task ended")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn connect(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = within("tcp connect", TcpStream::connect(addr)).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    within(
        "client handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
}

/// Sends `message` and reads its echo.
pub async fn exchange(stream: &mut TlsStream<TcpStream>, message: &[u8]) -> io::Result<Vec<u8>> {
    within("exchange", async {
        stream.write_all(message).await?;
        stream.flush().await?;
        let mut echo = vec![0u8; message.len()];
        stream.read_exact(&mut echo).await?;
        Ok(echo)
    })
    .await
}

/// The server's leaf as the client saw it.
pub fn server_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}
