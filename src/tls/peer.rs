//! The peer's SPIFFE ID, after a handshake.

use super::spiffe_id::SpiffeId;
use super::svid::spiffe_id_of;

/// The SPIFFE ID of the peer of a TLS connection whose handshake is done,
/// read from its leaf certificate (which the verifiers have checked).
/// Works after a resumed handshake too: rustls keeps the peer's
/// certificates with the session.
///
/// Pass a `rustls::ServerConnection` or `ClientConnection` (for
/// tokio-rustls, `stream.get_ref().1`). `None` before the handshake, or
/// for a peer without a SPIFFE ID.
///
/// ```
/// use std::sync::Arc;
/// # fn main() -> Result<(), rustls::Error> {
/// let identity = sinew::tls::Identity::new();
/// let config = identity.server_config(vec![b"h2".to_vec()])?;
/// let conn = rustls::ServerConnection::new(config)?;
/// assert_eq!(sinew::tls::peer_id(&conn), None);
/// # Ok(()) }
/// ```
pub fn peer_id(connection: &rustls::CommonState) -> Option<SpiffeId> {
    spiffe_id_of(connection.peer_certificates()?.first()?)
}
