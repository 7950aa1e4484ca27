//! What the control plane serves: the mesh file's last good configuration
//! joined with the registry's live endpoints, validated as one snapshot,
//! turned into xDS resources and published to every stream.

use crate::generate::{ResourceSet, resources};
use crate::registry::Registry;
use serde::Serialize;
use sinew::config::{MeshConfig, RouteConfig, ServiceConfig, Snapshot, WeightedCluster};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;

/// One published version of the mesh.
#[derive(Debug)]
pub struct Published {
    /// Increases with every change.
    pub version: u64,
    /// The configuration served: the mesh file's plus registered
    /// endpoints.
    pub config: MeshConfig,
    /// That configuration as xDS resources.
    pub resources: ResourceSet,
}

/// How the mesh file stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeshFileStatus {
    /// Versions of the file accepted so far (1 for the first).
    pub accepted: u64,
    /// The last rejected version's error, naming the field, until a
    /// later version is accepted.
    pub error: Option<String>,
    /// When the file was last read, changed or not, in milliseconds since
    /// the Unix epoch.
    pub checked_at_unix_ms: Option<u64>,
}

/// The inputs and what was published from them.
#[derive(Debug)]
pub struct State {
    mesh: MeshConfig,
    pub(crate) mesh_status: MeshFileStatus,
    pub(crate) registry: Registry,
    publish: watch::Sender<Arc<Published>>,
}

impl State {
    /// State starting from `mesh` (valid) and `registry`.
    pub fn new(mesh: MeshConfig, registry: Registry) -> (Self, watch::Receiver<Arc<Published>>) {
        let first = Arc::new(Published {
            version: 0,
            config: MeshConfig::default(),
            resources: ResourceSet::new(),
        });
        let (publish, published) = watch::channel(first);
        let mut state = Self {
            mesh,
            mesh_status: MeshFileStatus {
                accepted: 1,
                error: None,
                checked_at_unix_ms: Some(crate::clients::unix_ms(SystemTime::now())),
            },
            registry,
            publish,
        };
        state.republish();
        (state, published)
    }

    /// The version in force.
    pub fn published(&self) -> Arc<Published> {
        self.publish.borrow().clone()
    }

    /// A new mesh file, already validated.
    pub fn set_mesh(&mut self, mesh: MeshConfig) {
        self.mesh = mesh;
        self.mesh_status.accepted += 1;
        self.mesh_status.error = None;
        self.republish();
    }

    /// A rejected mesh file: the previous one stays in force.
    pub fn reject_mesh(&mut self, error: String) {
        tracing::warn!(%error, "mesh file rejected; the previous one stays in force");
        self.mesh_status.error = Some(error);
    }

    /// Publishes the mesh as it now stands, when it differs from what is
    /// in force.
    pub fn republish(&mut self) {
        let config = self.effective();
        // The mesh file was validated alone; registrations only add
        // endpoints and plain services, but a check costs little here.
        if let Err(error) = Snapshot::build(config.clone(), 0) {
            tracing::error!(%error, "the mesh with its registrations is invalid; not published");
            return;
        }
        let current = self.publish.borrow().clone();
        if current.version > 0 && current.config == config {
            return;
        }
        let resources = resources(&config);
        let version = current.version + 1;
        self.publish.send_replace(Arc::new(Published {
            version,
            config,
            resources,
        }));
    }

    /// The mesh file's configuration with each registered instance in its
    /// cluster (a cluster and a service are made for a name the file does
    /// not know).
    fn effective(&self) -> MeshConfig {
        let mut config = self.mesh.clone();
        let mut leases: Vec<_> = self.registry.leases().collect();
        // A stable order, whatever the map's.
        leases.sort_by(|a, b| {
            (&a.1.registration.name, &a.1.registration.address)
                .cmp(&(&b.1.registration.name, &b.1.registration.address))
        });
        for (_, lease) in leases {
            let r = &lease.registration;
            let cluster = config.clusters.entry(r.name.clone()).or_default();
            if !cluster.endpoints.iter().any(|e| e.address == r.address) {
                cluster.endpoints.push(r.endpoint());
            }
            config
                .services
                .entry(r.name.clone())
                .or_insert_with(|| ServiceConfig {
                    routes: vec![RouteConfig {
                        split: vec![WeightedCluster {
                            cluster: r.name.clone(),
                            weight: 1,
                        }],
                        ..RouteConfig::default()
                    }],
                });
        }
        config
    }
}
