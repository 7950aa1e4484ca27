//! A state-of-the-world ADS server for the tests, on envoy-types: it holds
//! one set of resources (with a version), answers each subscription with
//! the resources it names, pushes every change to every stream, and keeps
//! every request it receives (ACKs, NACKs and their error details).

use super::support::{Server, serve};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ConfigSource, Locality, SocketAddress, address, config_source,
    socket_address::PortSpecifier,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, route,
    route_action, route_match, weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_server::{
        AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
    },
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINTS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

/// Resources by type URL, then by name.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub version: u64,
    pub by_type: HashMap<&'static str, BTreeMap<String, Any>>,
    /// Sent in every response of their type, whatever was subscribed:
    /// for resources without a usable name (malformed, duplicated).
    pub extra: HashMap<&'static str, Vec<Any>>,
}

impl Resources {
    pub fn put(&mut self, type_url: &'static str, name: &str, any: Any) {
        self.by_type
            .entry(type_url)
            .or_default()
            .insert(name.to_owned(), any);
    }
}

#[derive(Clone)]
pub struct Ads {
    resources: Arc<watch::Sender<Resources>>,
    pub requests: Arc<Mutex<Vec<DiscoveryRequest>>>,
}

impl Default for Ads {
    fn default() -> Self {
        Self {
            resources: Arc::new(watch::channel(Resources::default()).0),
            requests: Arc::default(),
        }
    }
}

impl Ads {
    /// Changes the resources; every stream gets the new version.
    pub fn update(&self, f: impl FnOnce(&mut Resources)) {
        self.resources.send_modify(|r| {
            f(r);
            r.version += 1;
        });
    }

    /// Serves on a fresh loopback port, or on `at`.
    pub async fn serve(&self) -> Server {
        serve(AggregatedDiscoveryServiceServer::new(self.clone())).await
    }

    /// The version of the resources now published.
    pub fn version(&self) -> u64 {
        self.resources.borrow().version
    }

    /// The requests received so far that carry an error (NACKs).
    pub fn nacks(&self) -> Vec<DiscoveryRequest> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.error_detail.is_some())
            .cloned()
            .collect()
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<DiscoveryRequest> {
        self.requests.lock().unwrap().clone()
    }
}

type Responses =
    Pin<Box<dyn futures_util::Stream<Item = Result<DiscoveryResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Responses;
    type DeltaAggregatedResourcesStream = Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<
                        envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse,
                        tonic::Status,
                    >,
                > + Send,
        >,
    >;

    async fn stream_aggregated_resources(
        &self,
        request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
    ) -> Result<tonic::Response<Responses>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut snapshot = self.resources.subscribe();
        let log = self.requests.clone();
        tokio::spawn(async move {
            let mut subscribed: HashMap<String, Vec<String>> = HashMap::new();
            // What each type last sent: a type is sent again only when
            // its resources change, as real servers do.
            let mut sent: HashMap<String, Vec<Any>> = HashMap::new();
            let mut nonce = 0u64;
            loop {
                let resend: Vec<String> = tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(request)) => {
                            log.lock().unwrap().push(request.clone());
                            let names_changed = subscribed.get(&request.type_url) != Some(&request.resource_names);
                            subscribed.insert(request.type_url.clone(), request.resource_names.clone());
                            if names_changed || !sent.contains_key(&request.type_url) {
                                sent.remove(&request.type_url);
                                vec![request.type_url]
                            } else {
                                vec![]
                            }
                        }
                        _ => return,
                    },
                    changed = snapshot.changed() => match changed {
                        Ok(()) => subscribed.keys().cloned().collect(),
                        Err(_) => return,
                    },
                };
                for type_url in resend {
                    let resources = snapshot.borrow().clone();
                    let names = subscribed.get(&type_url).cloned().unwrap_or_default();
                    let all = resources
                        .by_type
                        .iter()
                        .find(|(t, _)| **t == type_url)
                        .map(|(_, r)| r.clone())
                        .unwrap_or_default();
                    let mut chosen: Vec<Any> = all
                        .iter()
                        .filter(|(name, _)| names.is_empty() || names.contains(name))
                        .map(|(_, any)| any.clone())
                        .collect();
                    if let Some(extra) = resources.extra.iter().find(|(t, _)| **t == type_url) {
                        chosen.extend(extra.1.iter().cloned());
                    }
                    if sent.get(&type_url) == Some(&chosen) {
                        continue;
                    }
                    nonce += 1;
                    sent.insert(type_url.clone(), chosen.clone());
                    let response = DiscoveryResponse {
                        version_info: resources.version.to_string(),
                        resources: chosen,
                        type_url,
                        nonce: nonce.to_string(),
                        ..DiscoveryResponse::default()
                    };
                    if tx.send(Ok(response)).is_err() {
                        return;
                    }
                }
            }
        });
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
            );
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: tonic::Request<
            tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest>,
        >,
    ) -> Result<tonic::Response<Self::DeltaAggregatedResourcesStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("delta xDS"))
    }
}

pub fn any<M: Message>(type_url: &str, message: &M) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: message.encode_to_vec(),
    }
}

/// A config source pointing at the ADS stream, as control planes write.
pub fn ads_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..ConfigSource::default()
    }
}

/// The router filter, last in every filter chain.
pub fn router() -> HttpFilter {
    HttpFilter {
        name: "envoy.filters.http.router".to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                .to_owned(),
            value: Vec::new(),
        })),
        ..HttpFilter::default()
    }
}

/// A client Listener for `service` whose routes come by RDS as `route`.
pub fn listener(service: &str, route: &str) -> Any {
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: route.to_owned(),
            config_source: Some(ads_source()),
        })),
        http_filters: vec![router()],
        ..HttpConnectionManager::default()
    };
    any(
        LISTENER,
        &Listener {
            name: service.to_owned(),
            api_listener: Some(ApiListener {
                api_listener: Some(any(
                    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    &hcm,
                )),
            }),
            ..Listener::default()
        },
    )
}

/// A route configuration sending everything to `clusters` by weight.
pub fn route_config(name: &str, clusters: &[(&str, u32)]) -> Any {
    let action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters: clusters
                    .iter()
                    .map(|(c, w)| ClusterWeight {
                        name: (*c).to_owned(),
                        weight: Some(UInt32Value { value: *w }),
                        ..ClusterWeight::default()
                    })
                    .collect(),
                ..WeightedCluster::default()
            },
        )),
        ..RouteAction::default()
    };
    any(
        ROUTE,
        &RouteConfiguration {
            name: name.to_owned(),
            virtual_hosts: vec![VirtualHost {
                name: "all".to_owned(),
                domains: vec!["*".to_owned()],
                routes: vec![Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_owned())),
                        ..RouteMatch::default()
                    }),
                    action: Some(route::Action::Route(action)),
                    ..Route::default()
                }],
                ..VirtualHost::default()
            }],
            ..RouteConfiguration::default()
        },
    )
}

/// An EDS cluster with the given load-balancing policy.
pub fn eds_cluster(name: &str, lb: cluster::LbPolicy) -> Any {
    any(
        CLUSTER,
        &Cluster {
            name: name.to_owned(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(cluster::EdsClusterConfig {
                service_name: name.to_owned(),
                eds_config: Some(ads_source()),
            }),
            lb_policy: lb as i32,
            ..Cluster::default()
        },
    )
}

/// An assignment of `addresses` in one locality.
pub fn assignment(name: &str, addresses: &[SocketAddr]) -> Any {
    any(
        ENDPOINTS,
        &ClusterLoadAssignment {
            cluster_name: name.to_owned(),
            endpoints: vec![LocalityLbEndpoints {
                locality: Some(Locality {
                    region: "eu".to_owned(),
                    zone: "eu-1a".to_owned(),
                    ..Locality::default()
                }),
                lb_endpoints: addresses
                    .iter()
                    .map(|a| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(Address {
                                address: Some(address::Address::SocketAddress(SocketAddress {
                                    address: a.ip().to_string(),
                                    port_specifier: Some(PortSpecifier::PortValue(u32::from(
                                        a.port(),
                                    ))),
                                    ..SocketAddress::default()
                                })),
                            }),
                            ..Endpoint::default()
                        })),
                        ..LbEndpoint::default()
                    })
                    .collect(),
                ..LocalityLbEndpoints::default()
            }],
            ..ClusterLoadAssignment::default()
        },
    )
}
