//! TLS termination: each connection's transport, settled in its own task
//! by the service's `mtls` mode in force when it opens.
//!
//! - `disabled`: plaintext;
//! - `strict`: mutual TLS, a plaintext caller fails the handshake;
//! - `permissive`: the first byte tells (a TLS record starts with 0x16,
//!   the handshake content type), then mutual TLS or plaintext.
//!
//! A caller has until the deadline (the header-read timeout from the
//! connection's opening) to finish its handshake; one that sends nothing,
//! or stops half way, is closed then and frees its place under the cap.

use super::accept::{Accepted, Connection};
use super::live::Live;
use crate::config::MtlsMode;
use crate::error::ConfigError;
use crate::mesh::PeerIdentity;
use crate::mesh::stream::Stream;
use crate::tls::metrics::{FailureReason, Side};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// Counts an inbound handshake that failed.
fn failed(reason: FailureReason) {
    crate::tls::metrics::handshake_failed(Side::Inbound, reason);
}

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

/// Settles the transport of one server's connections.
pub(crate) struct Handshake {
    live: Arc<Live>,
    /// Built once per server from the mesh's identity (when it has one):
    /// it reads the live certificate at each handshake, so a rotation
    /// applies to new connections and leaves open ones alone.
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// Refuses a mode that needs TLS on a mesh without an identity (see
    /// [`check`]).
    pub(crate) fn new(live: Arc<Live>) -> Result<Self, ConfigError> {
        check(&live)?;
        let tls = match live.identity() {
            Some(identity) => {
                // ALPN: hyper's auto builder then serves what was chosen.
                let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                let config = identity.server_config(alpn).map_err(|e| {
                    ConfigError::new(live.mtls_field(), format!("TLS server configuration: {e}"))
                })?;
                Some(TlsAcceptor::from(config))
            }
            None => None,
        };
        Ok(Self { live, tls })
    }

    /// The connection with its transport settled, or `None` when it was
    /// refused or did not finish by `deadline` (it is then closed, and
    /// the reason logged).
    ///
    /// While the server Listener the mesh subscribed for this address
    /// (gRFC A36) has not arrived, the connection waits for it, within
    /// the same deadline: its mode is not guessed.
    pub(crate) async fn run(&self, accepted: Accepted, deadline: Instant) -> Option<Connection> {
        let Accepted { stream, peer, open } = accepted;
        if tokio::time::timeout_at(deadline, self.live.settled())
            .await
            .is_err()
        {
            tracing::warn!(%peer, "no server Listener from the control plane in time: closing the connection");
            return None;
        }
        let mode = self.live.mtls();
        let settled = tokio::time::timeout_at(deadline, self.settle(stream, mode)).await;
        match settled {
            Ok(Ok((stream, identity))) => Some(Connection::new(stream, peer, identity, open)),
            Ok(Err(Refused::NoIdentity)) => {
                failed(FailureReason::NoIdentity);
                tracing::warn!(
                    %peer, ?mode,
                    "inbound.mtls requires TLS and the mesh has no workload identity: connection refused"
                );
                None
            }
            Ok(Err(Refused::Closed(error))) => {
                tracing::debug!(%peer, ?mode, %error, "connection closed before its first byte");
                None
            }
            Ok(Err(Refused::Io(error))) => {
                failed(FailureReason::of(&error));
                tracing::debug!(%peer, ?mode, %error, "TLS handshake failed: connection refused");
                None
            }
            Ok(Err(Refused::Resumed(error))) => {
                failed(FailureReason::BadCertificate);
                tracing::info!(%peer, %error, "a resumed TLS session no longer verifies: connection closed");
                None
            }
            Err(_) => {
                // In permissive mode a caller that sent nothing may not
                // have meant TLS at all.
                if mode == MtlsMode::Strict {
                    failed(FailureReason::Timeout);
                }
                tracing::debug!(%peer, ?mode, "no TLS handshake in time: closing the connection");
                None
            }
        }
    }

    async fn settle(
        &self,
        tcp: TcpStream,
        mode: MtlsMode,
    ) -> Result<(Stream, Option<PeerIdentity>), Refused> {
        let tls = match mode {
            MtlsMode::Disabled => false,
            MtlsMode::Strict => true,
            MtlsMode::Permissive => {
                let mut first = [0u8; 1];
                if tcp.peek(&mut first).await.map_err(Refused::Closed)? == 0 {
                    return Err(Refused::Closed(std::io::ErrorKind::UnexpectedEof.into()));
                }
                first[0] == TLS_HANDSHAKE
            }
        };
        if !tls {
            return Ok((Stream::Plain(tcp), None));
        }
        // A mode that needs TLS on a mesh without an identity can only
        // come from a configuration change after the start: fail closed.
        let acceptor = self.tls.as_ref().ok_or(Refused::NoIdentity)?;
        let stream = acceptor.accept(tcp).await.map_err(Refused::Io)?;
        // A resumed session skipped the client's certificate: check it
        // again against the bundle and the time now.
        if let Some(identity) = self.live.identity() {
            identity
                .recheck_resumed_client(stream.get_ref().1)
                .map_err(Refused::Resumed)?;
        }
        let identity = crate::tls::peer_id(stream.get_ref().1).map(PeerIdentity::new);
        Ok((Stream::Tls(Box::new(stream.into())), identity))
    }
}

enum Refused {
    NoIdentity,
    /// Closed (or failed) before the first byte told TLS from plaintext:
    /// no handshake to count.
    Closed(std::io::Error),
    Io(std::io::Error),
    Resumed(crate::tls::VerifyError),
}

/// Refuses a mode in force that needs TLS (`strict`, `permissive`) when
/// the mesh has no identity to present, naming the field.
pub(crate) fn check(live: &Live) -> Result<(), ConfigError> {
    let mode = live.mtls();
    if mode != MtlsMode::Disabled && live.identity().is_none() {
        let mode = match mode {
            MtlsMode::Strict => "strict",
            _ => "permissive",
        };
        return Err(ConfigError::new(
            live.mtls_field(),
            format!(
                "`{mode}` needs a workload identity, and the mesh has none \
                 (give it one with MeshBuilder::identity, or set `disabled`)"
            ),
        ));
    }
    Ok(())
}
