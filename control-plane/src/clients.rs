//! Which client holds which version: per connected stream, per type, what
//! was sent, what was ACKed, and the last NACK with its message.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One connected client, as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ClientView {
    /// The stream's number, unique in this process.
    pub stream: u64,
    /// The node id the client sent.
    pub node_id: String,
    /// Its user agent (e.g. `grpc-python`, `sinew`).
    pub user_agent: String,
    /// The node's cluster: the service it belongs to.
    pub cluster: String,
    /// Its address, when known.
    pub peer: Option<SocketAddr>,
    /// The SPIFFE ID of its certificate, over mutual TLS.
    pub spiffe_id: Option<String>,
    /// When its stream opened, in milliseconds since the Unix epoch.
    pub connected_at_unix_ms: u64,
    /// Per resource type (by its short name): what it holds.
    pub types: BTreeMap<String, TypeView>,
}

/// One client's standing for one resource type.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TypeView {
    /// Resources subscribed (`*` counts as one).
    pub subscribed: usize,
    /// The version last sent.
    pub sent: Option<String>,
    /// The version last ACKed: what the client holds.
    pub acked: Option<String>,
    /// The last NACK.
    pub last_nack: Option<Nack>,
}

/// A rejected response.
#[derive(Clone, Debug, Serialize)]
pub struct Nack {
    /// The version rejected.
    pub version: String,
    /// The client's error message.
    pub message: String,
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// Every connected client.
#[derive(Clone, Debug, Default)]
pub struct Clients(Arc<Mutex<BTreeMap<u64, ClientView>>>);

impl Clients {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ClientView>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stream opened.
    pub(crate) fn opened(&self, stream: u64, peer: Option<SocketAddr>, spiffe_id: Option<String>) {
        self.lock().insert(
            stream,
            ClientView {
                stream,
                node_id: String::new(),
                user_agent: String::new(),
                cluster: String::new(),
                peer,
                spiffe_id,
                connected_at_unix_ms: unix_ms(SystemTime::now()),
                types: BTreeMap::new(),
            },
        );
    }

    /// A stream closed.
    pub(crate) fn closed(&self, stream: u64) {
        self.lock().remove(&stream);
    }

    /// Changes one client's record.
    pub(crate) fn update(&self, stream: u64, f: impl FnOnce(&mut ClientView)) {
        if let Some(client) = self.lock().get_mut(&stream) {
            f(client);
        }
    }

    /// Every connected client, by stream.
    pub fn list(&self) -> Vec<ClientView> {
        self.lock().values().cloned().collect()
    }
}

/// A time as milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
