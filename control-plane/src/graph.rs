//! `GET /v1/graph`: the service graph the dashboard draws. Nodes are
//! services (those served, those connected, and those seen on an edge);
//! edges carry the figures workloads pushed over the telemetry window;
//! each service lists what the control plane knows of it: its clusters'
//! endpoints and their health, its connected xDS clients with what they
//! ACKed or NACKed, the processes that pushed telemetry, and the
//! certificates the CA issued to it.

use crate::admin::{Admin, Reply, reply};
use crate::clients::ClientView;
use crate::telemetry::{GraphEdge, IntakeCounts, Reporter};
use http::StatusCode;
use serde::Serialize;
use sinew::config::{EndpointConfig, MeshConfig};
use std::collections::{BTreeMap, BTreeSet};

/// The whole answer.
#[derive(Debug, Serialize)]
struct Graph {
    /// The configuration version served.
    version: u64,
    /// How far back the edges' figures reach.
    window_seconds: u64,
    generated_at_unix_ms: u64,
    services: Vec<Service>,
    edges: Vec<GraphEdge>,
    intake: IntakeCounts,
}

#[derive(Debug, Default, Serialize)]
struct Service {
    name: String,
    /// Whether the control plane serves configuration for it.
    served: bool,
    clusters: Vec<Cluster>,
    clients: Vec<ClientView>,
    reporters: Vec<Reporter>,
    certificates: Vec<crate::ca::IssuedView>,
}

#[derive(Debug, Serialize)]
struct Cluster {
    name: String,
    endpoints: Vec<EndpointConfig>,
}

/// The clusters a service's routes send to.
fn clusters_of(config: &MeshConfig, service: &str) -> BTreeSet<String> {
    config
        .services
        .get(service)
        .into_iter()
        .flat_map(|s| s.routes.iter())
        .flat_map(|r| r.split.iter().map(|w| w.cluster.clone()))
        .collect()
}

/// The service a client belongs to: its certificate's, else its node's
/// cluster.
fn service_of_client(client: &ClientView) -> String {
    match &client.spiffe_id {
        Some(id) => crate::node_identity::service_of(id).to_owned(),
        None => client.cluster.clone(),
    }
}

/// Whether `spiffe_id` is the control plane's own (its CA issues itself
/// a serving certificate): no service of the mesh, so no node of the graph.
fn is_control_plane(spiffe_id: &str) -> bool {
    spiffe_id
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.find('/').map(|at| &rest[at..]))
        == Some(crate::serving::SPIFFE_PATH)
}

fn service<'a>(services: &'a mut BTreeMap<String, Service>, name: &str) -> &'a mut Service {
    services.entry(name.to_owned()).or_insert_with(|| Service {
        name: name.to_owned(),
        ..Service::default()
    })
}

pub(crate) fn graph(admin: &Admin) -> Reply {
    let published = admin
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .published();
    let config = published.config();
    let edges = admin.telemetry.edges();
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    for name in config.services.keys() {
        let s = service(&mut services, name);
        s.served = true;
    }
    for edge in &edges {
        service(&mut services, &edge.source);
        service(&mut services, &edge.destination);
    }
    for client in admin.clients.list() {
        let name = service_of_client(&client);
        if !name.is_empty() {
            service(&mut services, &name).clients.push(client);
        }
    }
    for reporter in admin.telemetry.reporters() {
        service(&mut services, &reporter.service.clone())
            .reporters
            .push(reporter);
    }
    for issued in admin.ca.issued() {
        let name = crate::node_identity::service_of(&issued.spiffe_id).to_owned();
        if !name.is_empty() && !is_control_plane(&issued.spiffe_id) {
            service(&mut services, &name).certificates.push(issued);
        }
    }
    for (name, s) in services.iter_mut() {
        s.clusters = clusters_of(&config, name)
            .into_iter()
            .filter_map(|c| {
                config.clusters.get(&c).map(|cluster| Cluster {
                    name: c,
                    endpoints: cluster.endpoints.clone(),
                })
            })
            .collect();
    }
    let options = admin.telemetry.options();
    reply(
        StatusCode::OK,
        Graph {
            version: published.version,
            window_seconds: options.window.as_secs(),
            generated_at_unix_ms: crate::clients::unix_ms(std::time::SystemTime::now()),
            services: services.into_values().collect(),
            edges,
            intake: admin.telemetry.counts(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::is_control_plane;

    #[test]
    fn the_control_planes_own_identity_is_no_service() {
        assert!(is_control_plane(
            "spiffe://cluster.local/sinew/control-plane"
        ));
        assert!(!is_control_plane("spiffe://cluster.local/ns/shop/sa/cart"));
        assert!(!is_control_plane(
            "spiffe://cluster.local/ns/sinew/sa/control-plane"
        ));
        assert!(!is_control_plane("control-plane"));
    }
}
