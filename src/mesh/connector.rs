//! The mesh's connector: the bottom of the client stack, to hand to a
//! hyper-util client.
//!
//! It opens TCP connections to the endpoints the balance step picks (with
//! `TCP_NODELAY`), backs off an endpoint that refused a connection (see
//! [`ConnectBackoff`](super::ConnectBackoff)), and tells hyper which
//! protocol to speak: HTTP/2 to an endpoint whose cluster says `http2`,
//! HTTP/1.1 otherwise, so one client serves clusters of both kinds. Mutual
//! TLS will be negotiated here, the protocol then coming from ALPN.

use super::Mesh;
use super::connect::BackoffConnector;
use super::mtls::MtlsUnavailable;
use crate::error::BoxError;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

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
    mesh: Mesh,
    tcp: BackoffConnector<HttpConnector>,
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
        MeshConnector {
            mesh: self.clone(),
            tcp: BackoffConnector::new(tcp),
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<MeshConnection, BoxError>> + Send>>;

impl tower::Service<Uri> for MeshConnector {
    type Response = MeshConnection;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let transport = endpoint_of(&uri)
            .map(|address| self.mesh.transport_to(address))
            .unwrap_or_default();
        if let Some(cluster) = transport.mtls_for {
            // Never plaintext to an endpoint of a cluster that requires
            // mTLS, whichever cluster this connection is for: connections
            // are pooled by address, so the strictest cluster decides.
            return Box::pin(std::future::ready(Err(MtlsUnavailable::no_identity(
                &cluster,
            )
            .into())));
        }
        let http2 = transport.http2;
        let connecting = self.tcp.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(MeshConnection { io, http2 })
        })
    }
}

fn endpoint_of(uri: &Uri) -> Option<SocketAddr> {
    uri.authority()?.as_str().parse().ok()
}

/// How to speak to one endpoint, from the clusters that hold it.
#[derive(Debug, Default)]
struct Transport {
    /// HTTP/2: a cluster holding the endpoint speaks it.
    http2: bool,
    /// A cluster holding the endpoint that requires mutual TLS.
    mtls_for: Option<String>,
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
            if !cluster.endpoints().iter().any(|e| e.address == address) {
                continue;
            }
            let config = cluster.config();
            transport.http2 |= config.protocol == crate::config::Protocol::Http2;
            if transport.mtls_for.is_none() && config.requires_mtls() {
                transport.mtls_for = Some(name.clone());
            }
        }
        transport
    }
}

pin_project! {
    /// A connection made by [`MeshConnector`]: TCP, marked for HTTP/2 when
    /// the endpoint's cluster speaks it.
    #[derive(Debug)]
    pub struct MeshConnection {
        #[pin]
        io: TokioIo<TcpStream>,
        http2: bool,
    }
}

impl Connection for MeshConnection {
    fn connected(&self) -> Connected {
        let connected = self.io.connected();
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
        self.project().io.poll_read(cx, buf)
    }
}

impl Write for MeshConnection {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
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
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}
