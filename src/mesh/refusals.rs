//! The connections whose server refused the mesh's certificate.
//!
//! Over TLS 1.3 the refusal comes after the client's handshake, as an
//! alert read by the connection's task. A request waiting on that
//! connection fails with whatever hyper makes of the closed connection:
//! over HTTP/1.1, "connection was not ready" when the alert beat the
//! request out; over HTTP/2, a closed stream. The connection is known by
//! its two addresses (hyper-util keeps them in the error), so the
//! request's error can be told for the [`HandshakeFailed`] it is. An
//! HTTP/2 request can also fail while its connection is set up, before
//! the client knows the connection: then a refusal by its endpoint since
//! the request began tells it.

use super::HandshakeFailed;
use crate::error::BoxError;
use hyper_util::client::legacy::connect::HttpInfo;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How many refused connections are remembered: requests fail on one as
/// soon as its alert is read, so only the latest few matter.
const KEPT: usize = 16;

#[derive(Debug)]
struct Refused {
    /// Which refusal this is, counting from 1.
    seq: u64,
    endpoint: SocketAddr,
    local: SocketAddr,
    clusters: Vec<String>,
    alert: rustls::AlertDescription,
}

/// The latest connections refused, shared by a connector, its
/// connections and the clients on it.
#[derive(Clone, Debug, Default)]
pub(super) struct Refusals(Arc<Kept>);

#[derive(Debug, Default)]
struct Kept {
    count: AtomicU64,
    latest: Mutex<VecDeque<Refused>>,
}

/// The refusals so far, when a request began.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mark(u64);

impl Refusals {
    fn kept(&self) -> std::sync::MutexGuard<'_, VecDeque<Refused>> {
        self.0.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the count of refusals stands.
    #[inline]
    pub(super) fn mark(&self) -> Mark {
        Mark(self.0.count.load(Ordering::Acquire))
    }

    /// The server at `endpoint` refused the connection from `local` with
    /// `alert`.
    pub(super) fn record(
        &self,
        endpoint: SocketAddr,
        local: SocketAddr,
        clusters: Vec<String>,
        alert: rustls::AlertDescription,
    ) {
        let mut kept = self.kept();
        if kept.len() == KEPT {
            kept.pop_front();
        }
        let seq = self.0.count.fetch_add(1, Ordering::AcqRel) + 1;
        kept.push_back(Refused {
            seq,
            endpoint: canonical(endpoint),
            local: canonical(local),
            clusters,
            alert,
        });
    }

    /// The error for a request to `endpoint` that failed: a
    /// [`HandshakeFailed`] when, since the request began, the server of
    /// its connection refused the mesh's certificate on it (the server
    /// then processed nothing on it), or, for a request that failed before
    /// it had a connection, its endpoint refused one.
    pub(super) fn explain(
        &self,
        error: hyper_util::client::legacy::Error,
        endpoint: Option<&http::uri::Authority>,
        began: Mark,
    ) -> BoxError {
        if HandshakeFailed::find(&error).is_some() || self.mark().0 == 0 {
            return error.into();
        }
        let matches: Box<dyn Fn(&Refused) -> bool> = match error.connect_info() {
            Some(info) => {
                let mut extras = http::Extensions::new();
                info.get_extras(&mut extras);
                let Some(info) = extras.get::<HttpInfo>() else {
                    return error.into();
                };
                let (endpoint, local) =
                    (canonical(info.remote_addr()), canonical(info.local_addr()));
                // Refused since the request began: a later connection
                // that happens to reuse the local port is not taken for
                // the refused one.
                Box::new(move |r| r.seq > began.0 && r.endpoint == endpoint && r.local == local)
            }
            None if error.is_connect() => return error.into(),
            None => {
                let Some(endpoint) = endpoint.and_then(|a| a.as_str().parse().ok()) else {
                    return error.into();
                };
                let endpoint = canonical(endpoint);
                Box::new(move |r| r.seq > began.0 && r.endpoint == endpoint)
            }
        };
        let kept = self.kept();
        let Some(refused) = kept.iter().rev().find(|r| matches(r)) else {
            drop(kept);
            return error.into();
        };
        let cause = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            rustls::Error::AlertReceived(refused.alert),
        );
        Box::new(HandshakeFailed::new(
            refused.endpoint,
            refused.clusters.clone(),
            cause,
        ))
    }
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}
