//! Sinew's reference control plane: an xDS server (ADS, state of the
//! world) fed by a declarative mesh file and a live service registry.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sinew_control_plane::ControlPlane;
//!
//! let control_plane = ControlPlane::builder()
//!     .mesh_file("mesh.yaml")
//!     .registry_store("registry.json")
//!     .token("s3cret")
//!     .start()
//!     .await?;
//! println!("xDS on {}", control_plane.xds_addr());
//! # Ok(()) }
//! ```
//!
//! By default xDS is served over mutual TLS with a certificate from the
//! control plane's own CA, each client's `node.cluster` checked against
//! its certificate, and the admin API's reads need a token
//! ([`ControlPlaneBuilder::insecure_xds`] and
//! [`allow_unauthenticated_reads`](ControlPlaneBuilder::allow_unauthenticated_reads)
//! open them for local development).
//!
//! The mesh file is Sinew's own configuration model
//! ([`sinew::config::MeshConfig`]), the same types the library reads; see
//! `docs/control-plane.md` for the file, the admin API and replicas.

pub mod admin;
pub mod ads;
pub mod ca;
pub mod clients;
mod dashboard;
pub mod generate;
mod graph;
mod limits;
mod listen;
mod node_identity;
pub mod registry;
mod scope;
mod served;
mod server;
mod serving;
pub mod state;
pub mod store;
pub mod telemetry;
mod transport;

pub use limits::{DEFAULT_MAX_MESSAGE_BYTES, Limits};
pub use server::{ControlPlane, ControlPlaneBuilder, StartError, check_mesh_file};
pub use serving::SPIFFE_PATH;
pub use transport::PeerInfo;
