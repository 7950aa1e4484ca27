//! Serving a hyper service: the accept loop, one task per connection (its
//! TLS handshake, then HTTP), and the graceful shutdown that drains
//! requests in flight.

use super::accept::{Accepted, Acceptor, Connection};
use super::handshake::Handshake;
use super::live::Live;
use super::stack::Inbound;
use crate::authz::ConnectionAddresses;
use crate::error::BoxError;
use crate::mesh::{PeerIdentity, Registration, RegistrationError};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tower::ServiceExt;

/// A running server, from [`ServerBuilder::serve`](super::ServerBuilder::serve)
/// or [`Mesh::serve`](crate::mesh::Mesh::serve).
///
/// [`shutdown`](Self::shutdown) stops it gracefully. Dropping the handle
/// stops it too (accepting ends at once, requests in flight drain in the
/// background), and ends the registration's heartbeats without
/// deregistering, so that its lease runs out.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    registration: Option<Registration>,
}

impl Server {
    pub(crate) fn start<S, B>(
        acceptor: Acceptor,
        handshake: Arc<Handshake>,
        addr: SocketAddr,
        live: Arc<Live>,
        app: Inbound<S>,
        drain: Duration,
        registration: Option<Registration>,
    ) -> Self
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(acceptor, handshake, live, app, drain, stopped));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
            registration,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registration with the control plane, when the server made one.
    pub fn registration(&self) -> Option<&Registration> {
        self.registration.as_ref()
    }

    /// Stops the server: deregisters (so that callers stop choosing this
    /// process), stops accepting and frees the port, then lets requests in
    /// flight finish, up to the drain timeout, after which the connections
    /// still open are closed. Idle connections close at once; HTTP/2 callers
    /// get a GOAWAY.
    ///
    /// The server stops whatever happens; the error is the deregistration's
    /// (the lease then runs out on its own).
    pub async fn shutdown(mut self) -> Result<(), RegistrationError> {
        let deregistered = match self.registration.take() {
            Some(registration) => registration.deregister().await,
            None => Ok(()),
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        deregistered
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn run<S, B>(
    mut acceptor: Acceptor,
    handshake: Arc<Handshake>,
    live: Arc<Live>,
    app: Inbound<S>,
    drain: Duration,
    mut stopped: oneshot::Receiver<()>,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    // Tells connections still in their handshake to give up at shutdown
    // (an idle connection closes at once; so does one not yet serving).
    let (draining, drained) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = acceptor.accept() => {
                let timeout = live.limits().config.connections.header_read_timeout;
                let connection = ConnectionTask {
                    handshake: handshake.clone(),
                    app: app.clone(),
                    timeout,
                    deadline: Instant::now() + timeout,
                    watcher: graceful.watcher(),
                    draining: drained.clone(),
                };
                connections.spawn(connection.run(accepted));
            }
        }
    }
    // The port is free from here on.
    drop(acceptor);
    let _ = draining.send(true);
    let open = graceful.count();
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open,
            ?drain,
            "drain timeout: closing the connections still open"
        );
    }
    connections.shutdown().await;
}

/// One connection's life, in its own task: the TLS handshake (or the
/// permissive peek), then HTTP/1.1 or HTTP/2 as the caller speaks.
struct ConnectionTask<S> {
    handshake: Arc<Handshake>,
    app: Inbound<S>,
    /// `connections.header_read_timeout` when the connection opened.
    timeout: Duration,
    /// The handshake and the first request head are due by then.
    deadline: Instant,
    watcher: Watcher,
    draining: watch::Receiver<bool>,
}

impl<S> ConnectionTask<S> {
    async fn run<B>(mut self, accepted: Accepted)
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let connection = tokio::select! {
            connection = self.handshake.run(accepted, self.deadline) => connection,
            _ = self.draining.wait_for(|draining| *draining) => None,
        };
        if let Some(connection) = connection {
            serve_connection(
                connection,
                self.app,
                self.timeout,
                self.deadline,
                self.watcher,
            )
            .await;
        }
    }
}

/// Serves one connection, HTTP/1.1 or HTTP/2 as the caller speaks. A
/// connection that sends no complete request head by `deadline` is closed
/// (hyper's own timer does the same for each next request head on
/// HTTP/1.1, within `timeout`).
async fn serve_connection<S, B>(
    connection: Connection,
    app: Inbound<S>,
    timeout: Duration,
    deadline: Instant,
    watcher: Watcher,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let first = Arc::new(FirstRequest::default());
    let service = Watched {
        app,
        first: first.clone(),
        peer: connection.peer_identity().cloned(),
        addresses: ConnectionAddresses {
            source: connection.peer_addr(),
            destination: connection.get_ref().local_addr().ok(),
        },
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    // HTTP/2 has no per-head timer after the first: a peer that stops
    // answering pings is dropped, so a dead connection frees its place
    // under the cap.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(timeout))
        .keep_alive_timeout(timeout);
    let peer = connection.peer_addr();
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(connection), service)
        .into_owned();
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    tokio::select! {
        _ = &mut conn => return,
        _ = first.arrived.notified() => {}
        _ = tokio::time::sleep_until(deadline) => {
            tracing::debug!(%peer, "no request head in time: closing the connection");
            return;
        }
    }
    if let Err(error) = conn.await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Set by a connection's first request.
#[derive(Debug, Default)]
struct FirstRequest {
    seen: AtomicBool,
    arrived: Notify,
}

/// The per-connection service hyper calls: marks the first request, puts
/// the caller's SPIFFE ID (mutual TLS) and the connection's addresses on each request, then runs the
/// stack on a clone (hyper calls through `&self`).
#[derive(Clone, Debug)]
struct Watched<S> {
    app: Inbound<S>,
    first: Arc<FirstRequest>,
    peer: Option<PeerIdentity>,
    addresses: ConnectionAddresses,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Watched<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = tower::util::Oneshot<Inbound<S>, Request<Incoming>>;

    #[inline]
    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        if !self.first.seen.load(Ordering::Relaxed)
            && !self.first.seen.swap(true, Ordering::Relaxed)
        {
            // A stored permit: the connection's task may not wait yet.
            self.first.arrived.notify_one();
        }
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(peer.clone());
        }
        request.extensions_mut().insert(self.addresses);
        self.app.clone().oneshot(request)
    }
}
