//! What a request is evaluated as, read from the request and what the
//! server put in its extensions.

use super::RequestView;
use http::Request;
use std::net::SocketAddr;

/// The connection's addresses, put on each request by the mesh's hyper
/// server ([`Mesh::serve`](crate::mesh::Mesh::serve)); tonic puts its
/// own `TcpConnectInfo`, which is read too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionAddresses {
    /// The caller's address.
    pub(crate) source: SocketAddr,
    /// The server's address the connection came to.
    pub(crate) destination: Option<SocketAddr>,
}

/// The view of `request`: its method, path and headers, the caller's
/// SPIFFE ID ([`PeerIdentity`](crate::mesh::PeerIdentity)) and the
/// connection's addresses. Borrows only.
#[inline]
pub(crate) fn view<B>(request: &Request<B>) -> RequestView<'_> {
    let extensions = request.extensions();
    #[cfg(feature = "mesh")]
    let peer = extensions
        .get::<crate::mesh::PeerIdentity>()
        .map(crate::mesh::PeerIdentity::as_str);
    #[cfg(not(feature = "mesh"))]
    let peer = None;
    #[cfg_attr(not(feature = "grpc"), allow(unused_mut))]
    let (mut source, mut destination) = match extensions.get::<ConnectionAddresses>() {
        Some(addresses) => (Some(addresses.source), addresses.destination),
        None => (None, None),
    };
    #[cfg(feature = "grpc")]
    if source.is_none()
        && let Some(tcp) = extensions.get::<tonic::transport::server::TcpConnectInfo>()
    {
        source = tcp.remote_addr();
        destination = tcp.local_addr();
    }
    RequestView {
        method: request.method(),
        path: request.uri().path(),
        headers: request.headers(),
        peer,
        source,
        destination,
    }
}
