//! The server side of the mesh: what a process serving a service enforces
//! on the requests it receives.
//!
//! [`Mesh::server`] names the served service and gives a [`ServerBuilder`].
//! Its inbound limits come from the service's `inbound` block in the
//! mesh's configuration ([`InboundConfig`]), or from
//! [`ServerBuilder::inbound`] while the configuration has none, and follow
//! the configuration live. Three ways to use it:
//!
//! - [`ServerBuilder::serve`] (or [`Mesh::serve`] with the defaults) runs a
//!   hyper server for a tower service: mutual TLS, HTTP/1.1 and HTTP/2
//!   detected per connection, a header-read timeout, a connection cap,
//!   graceful shutdown, and, with [`ServerBuilder::register`], the
//!   registration with the control plane;
//! - [`ServerBuilder::layer`] is the request stack as a tower layer, for
//!   `tonic::transport::Server::builder().layer(..)` or any server;
//! - [`ServerBuilder::incoming`] is the listener's connections under the
//!   cap, past their TLS handshakes, for tonic's
//!   `serve_with_incoming_shutdown` (with the layer, which carries the
//!   caller's identity and address from the connection to the request).
//!
//! Each connection, in its own task (never in the accept loop):
//!
//! ```text
//! accept       under connections.max, or closed at once; it holds its place until it closes
//! transport    by inbound.mtls in force when it opens:
//!                strict      mutual TLS; a plaintext caller or a bad certificate fails the handshake
//!                permissive  the first byte tells: 0x16 (a TLS record) mutual TLS, else plaintext
//!                disabled    plaintext
//!              not set: strict when the mesh has an identity, disabled when it has none
//! HTTP         HTTP/2 or HTTP/1.1 (ALPN h2 / http/1.1 over TLS, detected in plaintext)
//! ```
//!
//! The handshake (or the permissive peek) and the first request head are
//! due within `connections.header_read_timeout` of the opening: a caller
//! that sends nothing, or stalls half way, is closed then. The TLS server
//! configuration is built once per server from the mesh's
//! [`Identity`](crate::tls::Identity) and reads its live certificate at
//! each handshake, so a rotation applies to new connections and leaves
//! open ones alone. Any client SVID of a trusted trust domain is let in
//! (which callers may do what is authorization's business), and its
//! SPIFFE ID goes into each request's extensions as a
//! [`PeerIdentity`](crate::mesh::PeerIdentity). A mode that needs TLS on a
//! mesh without an identity is refused when serving starts
//! ([`ServeError::Config`] naming `inbound.mtls`); should a configuration
//! change bring it later, connections are refused (fail closed) and a
//! warning logged.
//!
//! The request stack, outermost first (`stack.rs` assembles it):
//!
//! ```text
//! ErrorResponse      refusals become 403/503/429/504, or gRPC PERMISSION_DENIED / UNAVAILABLE / RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED
//! Authorize          the service's inbound.authorization policies (crate::authz); a refused caller costs no token or slot
//! EnforceDeadline    an expired budget is refused unseen; the handler is cancelled at the deadline
//! Shed               load_shed: the application is not ready
//! RateLimit          the token bucket
//! ConcurrencyLimit   a fixed limit with a bounded queue
//! AdaptiveLimit      a limit learned from latency
//! app
//! ```
//!
//! ```no_run
//! use sinew::mesh::Mesh;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! # let identity = sinew::tls::Identity::new();
//! // With an identity, callers must speak mutual TLS (strict).
//! let mesh = Mesh::builder().config_file("mesh.yaml").identity(identity).build().await?;
//! let app = tower::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
//!     let caller = req.extensions().get::<sinew::mesh::PeerIdentity>();
//!     let hello = format!("hello, {}", caller.map_or("stranger".into(), |p| p.id().to_string()));
//!     Ok::<_, std::convert::Infallible>(http::Response::new(hello))
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let server = mesh
//!     .server("reviews")
//!     .drain_timeout(Duration::from_secs(10))
//!     .serve(listener, app)
//!     .await?;
//! // ... until it is time to stop:
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! [`InboundConfig`]: crate::config::InboundConfig

mod accept;
mod handshake;
mod live;
mod serve;
mod stack;

pub use accept::Connection;
#[cfg(feature = "grpc")]
pub use accept::ConnectionInfo;
pub use serve::Server;
pub use stack::{Inbound, InboundLayer, Shed};

use crate::config::InboundConfig;
use crate::error::{BoxError, ConfigError};
use crate::mesh::{Mesh, RegistrationBuilder, RegistrationError};
use accept::Acceptor;
use handshake::Handshake;
use http::{Request, Response};
use hyper::body::Incoming;
use live::Live;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::Layer;

/// Builds the server side of one service. Made by [`Mesh::server`].
#[derive(Debug)]
pub struct ServerBuilder {
    mesh: Mesh,
    service: String,
    inbound: InboundConfig,
    drain_timeout: Duration,
    registration: Option<RegistrationBuilder>,
}

/// Why a server could not start.
#[derive(Debug)]
pub enum ServeError {
    /// The server's settings are invalid; the error names the field.
    Config(ConfigError),
    /// The listener's address could not be read.
    Io(std::io::Error),
    /// Registering with the control plane failed.
    Registration(RegistrationError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid server settings: {e}"),
            Self::Io(e) => write!(f, "listener: {e}"),
            Self::Registration(e) => write!(f, "registration: {e}"),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(e) => Some(e),
            Self::Io(e) => Some(e),
            Self::Registration(e) => Some(e),
        }
    }
}

impl Mesh {
    /// The server side of `service`: see [`ServerBuilder`].
    pub fn server(&self, service: impl Into<String>) -> ServerBuilder {
        ServerBuilder {
            mesh: self.clone(),
            service: service.into(),
            inbound: InboundConfig::default(),
            drain_timeout: Duration::from_secs(30),
            registration: None,
        }
    }

    /// Serves `app` as `service` on `listener` with the server's defaults:
    /// `mesh.server(service).serve(listener, app)`.
    pub async fn serve<S, B>(
        &self,
        service: impl Into<String>,
        listener: TcpListener,
        app: S,
    ) -> Result<Server, ServeError>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.server(service).serve(listener, app).await
    }
}

impl ServerBuilder {
    /// The inbound limits while the mesh's configuration has no `inbound`
    /// block for the service (a configuration from an xDS control plane
    /// never has one: see docs/adr/0011-server-stack.md). A block in the
    /// configuration replaces these whole. Default: [`InboundConfig::default`].
    pub fn inbound(mut self, inbound: InboundConfig) -> Self {
        self.inbound = inbound;
        self
    }

    /// Sets `connections.header_read_timeout` of [`inbound`](Self::inbound):
    /// the TLS handshake and the first request head are due within it.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.inbound.connections.header_read_timeout = timeout;
        self
    }

    /// Sets `connections.max` of [`inbound`](Self::inbound).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.inbound.connections.max = max;
        self
    }

    /// How long [`Server::shutdown`] waits for requests in flight before it
    /// closes their connections. Default: 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Registers the served address with the control plane when serving
    /// starts, and deregisters at [`Server::shutdown`]. The registration's
    /// address may leave out what only the listener knows: port 0 becomes
    /// the bound port, and an unspecified IP (`0.0.0.0`) the bound IP
    /// (a listener bound to every address needs the address callers reach,
    /// given here).
    ///
    /// ```no_run
    /// # async fn run(mesh: sinew::mesh::Mesh, app: impl tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<String>, Error = std::convert::Infallible, Future: Send + 'static> + Clone + Send + 'static) -> Result<(), Box<dyn std::error::Error>> {
    /// use sinew::mesh::Registration;
    ///
    /// let listener = tokio::net::TcpListener::bind("10.0.0.5:0").await?;
    /// let registration = Registration::builder("http://cp:18001", "reviews-v1", "0.0.0.0:0".parse()?);
    /// let server = mesh.server("reviews").register(registration).serve(listener, app).await?;
    /// # Ok(()) }
    /// ```
    pub fn register(mut self, registration: RegistrationBuilder) -> Self {
        self.registration = Some(registration);
        self
    }

    fn live(&self) -> Result<Arc<Live>, ConfigError> {
        Live::new(self.mesh.clone(), &self.service, self.inbound.clone()).map(Arc::new)
    }

    /// The limits of a server listening on `addr`: with a control plane,
    /// its server Listener is subscribed (see [`incoming`](Self::incoming)).
    fn live_on(&self, addr: std::net::SocketAddr) -> Result<Arc<Live>, ConfigError> {
        Live::new(self.mesh.clone(), &self.service, self.inbound.clone())
            .map(|live| Arc::new(live.serving(addr)))
    }

    /// The request stack as a tower layer (its order: docs/architecture.md, ADR 0011),
    /// e.g. for `tonic::transport::Server::builder().layer(..)`. Each call
    /// makes limits of its own; clones of one layer share theirs. With
    /// [`incoming`](Self::incoming), it also puts the caller's
    /// [`PeerIdentity`](crate::mesh::PeerIdentity) and tonic's
    /// `TcpConnectInfo` (for `request.remote_addr()`) on each request.
    ///
    /// Refused when `inbound.mtls` asks for TLS and the mesh has no
    /// identity.
    pub fn layer(&self) -> Result<InboundLayer, ConfigError> {
        let live = self.live()?;
        handshake::check(&live)?;
        Ok(InboundLayer::new(live))
    }

    /// The connections of `listener`, at most `connections.max` open at
    /// once, past their TLS handshakes, as a stream for tonic's
    /// `serve_with_incoming(_shutdown)`. Each connection holds its place
    /// until it closes. The handshakes run side by side (a slow caller
    /// holds back no other), each bounded by `connections.header_read_timeout`;
    /// what comes after is tonic's to serve. Use it with
    /// [`layer`](Self::layer): the layer reads the connection's
    /// `ConnectionInfo` (tonic's `Connected::ConnectInfo`).
    ///
    /// With a mesh configured by a control plane whose bootstrap has a
    /// `server_listener_resource_name_template`, the server Listener
    /// (gRFC A36) of the listener's bound address (as bound: a wildcard
    /// bind names the wildcard address) is subscribed, and its transport
    /// (mutual TLS or plaintext) takes precedence over `inbound.mtls`
    /// while the control plane serves it; each connection takes the mode
    /// in force when it opens.
    ///
    /// Refused when `inbound.mtls` asks for TLS and the mesh has no
    /// identity.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> Result<
        impl futures_util::Stream<Item = std::io::Result<Connection>> + Send + 'static,
        ConfigError,
    > {
        let addr = listener.local_addr().map_err(|e| {
            ConfigError::new("listener", format!("cannot read its bound address: {e}"))
        })?;
        let live = self.live_on(addr)?;
        let handshake = Arc::new(Handshake::new(live.clone())?);
        Ok(accept::incoming(Acceptor::new(listener, live), handshake))
    }

    /// Serves `app` behind the server stack on `listener` until
    /// [`Server::shutdown`]: connections under the cap, HTTP/1.1 and HTTP/2
    /// detected per connection, the header-read timeout, and, when
    /// [`register`](Self::register) was called, the registration (made
    /// before the first connection is accepted). The transport follows the
    /// server Listener as for [`incoming`](Self::incoming).
    pub async fn serve<S, B>(self, listener: TcpListener, app: S) -> Result<Server, ServeError>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        crate::error::check::duration("drain_timeout", self.drain_timeout)
            .map_err(ServeError::Config)?;
        let addr = listener.local_addr().map_err(ServeError::Io)?;
        let live = self.live_on(addr).map_err(ServeError::Config)?;
        let handshake = Handshake::new(live.clone()).map_err(ServeError::Config)?;
        let registration = match self.registration {
            Some(registration) => {
                let registration = registration
                    .bound_to(addr)
                    .map_err(ServeError::Config)?
                    .start()
                    .await
                    .map_err(ServeError::Registration)?;
                Some(registration)
            }
            None => None,
        };
        let app = InboundLayer::new(live.clone()).layer(app);
        Ok(Server::start(
            Acceptor::new(listener, live.clone()),
            Arc::new(handshake),
            addr,
            live,
            app,
            self.drain_timeout,
            registration,
        ))
    }
}
