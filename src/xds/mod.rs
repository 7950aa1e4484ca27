//! Configuration from an xDS control plane: Sinew's discovery client.
//!
//! [`MeshBuilder::control_plane`](crate::mesh::MeshBuilder::control_plane)
//! (or [`bootstrap`](crate::mesh::MeshBuilder::bootstrap), which reads
//! gRPC's bootstrap JSON) makes a mesh whose configuration comes from a
//! control plane over ADS, state of the world, subscribing the way gRPC's
//! proxyless clients do (gRFC A27): for each service a client is made for,
//! the Listener named after it; its route configuration (inline or by RDS);
//! the clusters its routes name (CDS); their endpoints (EDS). Each resource
//! is translated into Sinew's model ([`crate::config`]) and checked by the
//! same validation as a file.
//!
//! The protocol's failure rules, after gRPC's:
//!
//! - every response is ACKed with its version and nonce, or NACKed with the
//!   previous version and an error naming each rejected resource and field,
//!   while the valid resources of the same response apply (gRFC A46);
//! - a rejected resource, a Listener or Cluster left out of a response, and
//!   every resource after the stream is lost, keeps its last good value,
//!   unless the bootstrap's server lists `fail_on_data_errors` (gRFC A88);
//! - the HTTP filter chain is checked: the router last, and no filter Sinew
//!   does not implement unless it is marked `is_optional` (gRFC A39);
//! - a route whose action Sinew cannot carry out fails only the requests
//!   it takes (gRFC A28); config sources other than ADS and `self` are
//!   refused;
//! - a resource not received within the initial fetch timeout is taken not
//!   to exist, but that timer runs only while connected (gRFC A57);
//! - reconnects back off from 1 s, ×1.6, ±20%, up to 120 s;
//! - a second server in the bootstrap is tried only while the first is
//!   unreachable and something watched has no value, and left as soon as
//!   the first is reachable again (gRFC A71);
//! - opt-in fail-static: the configuration in force is written to a file,
//!   and a process that starts while the control plane is unreachable
//!   starts from it ([`MeshBuilder::xds_cache`](crate::mesh::MeshBuilder::xds_cache));
//! - make before break: when a service's new routes name a cluster whose
//!   resources are still on their way, its earlier routes stay in force
//!   until those arrive (or are refused, or found not to exist), so that no
//!   request meets a cluster without endpoints only because its assignment
//!   came a moment after the route.
//!
//! A server ([`ServerBuilder::serve`](crate::mesh::ServerBuilder::serve),
//! [`incoming`](crate::mesh::ServerBuilder::incoming)) asks for the server
//! Listener of its bound address (gRFC A36), named by the bootstrap's
//! `server_listener_resource_name_template`, and takes its transport from
//! it (mutual TLS when its `DownstreamTlsContext` requires client
//! certificates, plaintext without one), ahead of the mesh's own
//! `inbound.mtls`.
//!
//! `docs/xds.md` compares these rules with gRPC's, and lists where Sinew
//! accepts more than gRPC does.
//!
//! [`Mesh::xds_status`](crate::mesh::Mesh::xds_status) shows what the
//! client sees: per resource its version, ACK or NACK, last error, and the
//! connection.
//!
//! The same facts go to the [`metrics`](https://docs.rs/metrics) facade,
//! for whatever recorder the application installs. Every series carries
//! `control_plane`, the bootstrap's first server:
//!
//! | name | kind | labels | meaning |
//! |---|---|---|---|
//! | `sinew_xds_connected` | gauge | | 1 while a stream is open |
//! | `sinew_xds_from_cache` | gauge | | 1 while serving the fail-static cache |
//! | `sinew_xds_resources` | gauge | `type`, `state` | subscribed resources per state |
//! | `sinew_xds_responses_total` | counter | `type`, `result` (`ack`, `nack`) | responses answered |
//! | `sinew_xds_stream_failures_total` | counter | | streams that failed or could not open |
//! | `sinew_xds_task_restarts_total` | counter | | times the discovery task failed (a bug: a panic) and was restarted |
//! | `sinew_xds_apply_seconds` | histogram | | from a response's arrival to in force |

mod ads;
mod backoff;
mod bootstrap;
pub(crate) mod channel_tls;
mod discovery;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod resource;
mod state;
mod supervise;
mod translate;

#[cfg(test)]
mod metadata_tests;
#[cfg(test)]
mod readiness_tests;
#[cfg(test)]
mod server_listener_tests;
#[cfg(test)]
mod tests;

pub use bootstrap::Bootstrap;
pub use channel_tls::{CONTROL_PLANE_SPIFFE_PATH, ChannelTls};
pub use discovery::XdsStatus;
pub(crate) use discovery::{Discovery, Settings};
pub use resource::Kind;
pub use state::{ConnectionState, ResourceState, ResourceStatus};

/// The largest ADS message the discovery client accepts (64 MiB): as
/// large as Sinew's control plane sends, so that a large mesh is never
/// refused by the client after the server sent it.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
