//! The mesh's telemetry: its own service name, its per-edge aggregates and
//! its request metrics, shared by every client and server it makes.

use super::Mesh;
use crate::telemetry::edges::{Direction, Edges};
use crate::telemetry::layer::{Settings, UNKNOWN};
use crate::telemetry::request_metrics::RequestMetrics;
use std::sync::Arc;

/// One per [`Mesh`]: clones of the mesh share it.
#[derive(Debug)]
pub(crate) struct MeshTelemetry {
    /// This process's service: the source of its outbound edges.
    pub(crate) service: Arc<str>,
    pub(crate) edges: Edges,
    /// Metric handles and edge recorders, per label set.
    pub(crate) metrics: RequestMetrics,
}

impl MeshTelemetry {
    pub(crate) fn new(service: Option<&str>) -> Self {
        let edges = Edges::default();
        Self {
            service: Arc::from(service.filter(|s| !s.is_empty()).unwrap_or(UNKNOWN)),
            metrics: RequestMetrics::new().with_edges(edges.clone()),
            edges,
        }
    }

    /// The settings of the telemetry of calls to `destination`.
    pub(crate) fn outbound(&self, destination: &str) -> Arc<Settings> {
        Arc::new(Settings::new(
            Direction::Outbound,
            self.service.clone(),
            Some(Arc::from(destination)),
            Some(self.metrics.clone()),
        ))
    }

    /// The settings of the telemetry of a server of `service`.
    #[cfg(feature = "server")]
    pub(crate) fn inbound(&self, service: &str) -> Arc<Settings> {
        Arc::new(Settings::new(
            Direction::Inbound,
            Arc::from(service),
            None,
            Some(self.metrics.clone()),
        ))
    }
}

impl Mesh {
    /// The golden metrics of each edge this mesh's clients and servers
    /// took part in (requests, failures, latency histogram per direction,
    /// source service and destination service), for whoever reports them:
    /// [`Edges::take`] returns what happened since the last take.
    ///
    /// Outbound edges go from this mesh's service
    /// ([`MeshBuilder::service_name`](super::MeshBuilder::service_name)) to
    /// the called service; inbound edges from the caller's service (the
    /// `sa` of its SPIFFE ID, `unknown` without mutual TLS) to the served
    /// one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sinew::error::ConfigError> {
    /// let mesh = sinew::mesh::Mesh::builder().service_name("web").build().await?;
    /// assert_eq!(mesh.service_name(), "web");
    /// assert!(mesh.edges().take().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn edges(&self) -> &Edges {
        &self.shared.telemetry.edges
    }

    /// This mesh's own service, as its telemetry names it (`unknown`
    /// unless the builder or the bootstrap's node cluster named it).
    pub fn service_name(&self) -> &str {
        &self.shared.telemetry.service
    }
}
