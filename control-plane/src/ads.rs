//! The ADS server, state of the world. Each stream keeps, per type, the
//! names it subscribes to and the version of each resource it was sent;
//! a published change goes to a stream as a response for each type with
//! something new for it, in make-before-break order (clusters, endpoints,
//! listeners, routes). For listeners and clusters the response holds every
//! subscribed resource, as the protocol requires (absence means removal);
//! for routes and endpoints it holds only those that changed.

use crate::clients::{Clients, Nack};
use crate::generate::server_listener::resolve;
use crate::generate::{CLUSTER, LISTENER, PUSH_ORDER};
use crate::limits::{Limits, truncate};
use crate::state::Published;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_server::AggregatedDiscoveryService,
};
use futures_util::Stream;
use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

type Responses = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaResponses = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

/// The ADS service.
#[derive(Clone, Debug)]
pub struct Ads {
    published: watch::Receiver<Arc<Published>>,
    clients: Clients,
    streams: Arc<AtomicU64>,
    /// Set when the control plane stops: every stream ends.
    stop: watch::Receiver<bool>,
    limits: Limits,
    /// Served over mutual TLS: every stream has a verified SPIFFE ID, and
    /// its node must match it.
    mtls: bool,
    /// Which services each client service may see.
    scopes: crate::scope::Scopes,
}

impl Ads {
    pub(crate) fn new(
        published: watch::Receiver<Arc<Published>>,
        clients: Clients,
        stop: watch::Receiver<bool>,
        limits: Limits,
        mtls: bool,
        scopes: crate::scope::Scopes,
    ) -> Self {
        Self {
            published,
            clients,
            streams: Arc::default(),
            stop,
            limits,
            mtls,
            scopes,
        }
    }
}

/// What one stream subscribes to and was sent, for one type.
#[derive(Debug, Default)]
struct Subscription {
    names: BTreeSet<String>,
    /// Listeners and clusters with no names: every resource of the type.
    wildcard: bool,
    /// Resource versions sent, by name.
    sent: HashMap<String, u64>,
    /// The nonce of the last response.
    nonce: String,
    /// The version of the last response.
    version: String,
    /// Whether anything was sent yet.
    answered: bool,
    /// The nonce last NACKed: a client repeating a NACK is logged once.
    nacked: String,
}

pub(crate) fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

fn full_state(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

struct StreamTask {
    id: u64,
    clients: Clients,
    subscriptions: HashMap<&'static str, Subscription>,
    nonces: u64,
    out: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    limits: Limits,
    /// Where the client connects from: a server listening on a wildcard
    /// address is the endpoint at this address.
    peer: Option<std::net::IpAddr>,
    /// The SPIFFE ID of the client's certificate (over mTLS), which its
    /// node is checked against.
    identity: Option<String>,
    /// Whether the node was checked (on the stream's first request).
    node_checked: bool,
    /// The services this client may call, when its service is scoped.
    scope: Option<std::collections::BTreeSet<String>>,
}

impl StreamTask {
    /// Handles one request: records its ACK or NACK, takes its names, and
    /// answers what the client does not have yet.
    async fn on_request(&mut self, request: DiscoveryRequest, published: &Published) -> bool {
        if let (Some(identity), false) = (&self.identity, self.node_checked) {
            if let Err(status) = crate::node_identity::check(identity, request.node.as_ref()) {
                tracing::info!(stream = self.id, spiffe_id = %identity, %status, "xDS client refused");
                metrics::counter!("sinew_control_plane_xds_refused_total", "reason" => "node")
                    .increment(1);
                let _ = self.out.send(Err(status)).await;
                return false;
            }
            self.node_checked = true;
        }
        if request.resource_names.len() > self.limits.max_resource_names {
            let status = Status::invalid_argument(format!(
                "resource_names: {} names, more than the {} allowed in one request",
                request.resource_names.len(),
                self.limits.max_resource_names
            ));
            let _ = self.out.send(Err(status)).await;
            return false;
        }
        let Some(type_url) = PUSH_ORDER.iter().find(|t| **t == request.type_url) else {
            tracing::debug!(
                type_url = %truncate(&request.type_url, 256),
                "ignoring a request for an unknown type"
            );
            return true;
        };
        if let Some(node) = &request.node {
            let max = self.limits.max_node_id_bytes;
            self.clients.update(self.id, |c| {
                if c.node_id.is_empty() {
                    c.node_id = truncate(&node.id, max);
                    c.user_agent = truncate(&node.user_agent_name, max);
                    c.cluster = truncate(&node.cluster, max);
                }
            });
        }
        let sub = self.subscriptions.entry(type_url).or_default();
        if !request.response_nonce.is_empty() && request.response_nonce == sub.nonce {
            let short = short(type_url).to_owned();
            let acked = truncate(&request.version_info, 64);
            let rejected = sub.version.clone();
            let max = self.limits.max_nack_message_bytes;
            let error = request.error_detail.map(|e| truncate(&e.message, max));
            if let Some(message) = &error {
                if sub.nacked == request.response_nonce {
                    // The same NACK again: recorded, not logged again.
                    tracing::debug!(stream = self.id, r#type = %short, version = %rejected, "NACK repeated");
                } else {
                    sub.nacked = request.response_nonce.clone();
                    tracing::warn!(stream = self.id, r#type = %short, version = %rejected, error = %message, "NACK");
                }
            }
            self.clients.update(self.id, |c| {
                let view = c.types.entry(short).or_default();
                match error {
                    Some(message) => {
                        view.last_nack = Some(Nack {
                            version: rejected,
                            message,
                            at_unix_ms: crate::clients::unix_ms(SystemTime::now()),
                        })
                    }
                    None => view.acked = Some(acked),
                }
            });
        } else if !request.response_nonce.is_empty() {
            // An answer to an older response: the newer one is on its way.
            return true;
        }
        let names: BTreeSet<String> = request.resource_names.into_iter().collect();
        let wildcard = full_state(type_url) && (names.is_empty() || names.contains("*"));
        let changed = names != sub.names || wildcard != sub.wildcard;
        if changed {
            sub.names = names;
            sub.wildcard = wildcard;
            // Names no longer subscribed are forgotten, so that a new
            // subscription to them is answered again.
            let (names, wildcard) = (&sub.names, sub.wildcard);
            sub.sent.retain(|n, _| wildcard || names.contains(n));
            let count = if wildcard { 1 } else { sub.names.len() };
            let short = short(type_url).to_owned();
            self.clients.update(self.id, |c| {
                c.types.entry(short).or_default().subscribed = count;
            });
        }
        // Full-state types answer every change of names (an empty answer
        // says the names do not exist); the others answer what is new.
        let force = changed && full_state(type_url);
        self.send(type_url, published, force).await
    }

    /// Sends `type_url`'s news to the client; false when the stream is
    /// gone.
    async fn send(&mut self, type_url: &'static str, published: &Published, force: bool) -> bool {
        let Some(sub) = self.subscriptions.get_mut(type_url) else {
            return true;
        };
        let empty = Default::default();
        let current = published.resources.get(type_url).unwrap_or(&empty);
        let visible = self
            .scope
            .as_ref()
            .map(|may_call| crate::scope::Visible::new(may_call, published));
        let hidden = |n: &String| {
            visible
                .as_ref()
                .is_some_and(|v| v.hides(published, type_url, n))
        };
        let wanted: Vec<&String> = if sub.wildcard {
            current.keys().filter(|n| !hidden(n)).collect()
        } else {
            sub.names.iter().filter(|n| !hidden(n)).collect()
        };
        // By name, or for a server Listener by the address in its name.
        let peer = self.peer;
        let lookup = |n: &String| resolve(&published.resources, type_url, n, peer);
        let resources: Vec<(&String, Arc<crate::generate::Encoded>)> = if full_state(type_url) {
            let present: Vec<_> = wanted
                .iter()
                .filter_map(|n| lookup(n).map(|e| (*n, e)))
                .collect();
            let differs = present.len() != sub.sent.len()
                || present
                    .iter()
                    .any(|(n, e)| sub.sent.get(*n) != Some(&e.version));
            if !(force || differs || !sub.answered) {
                return true;
            }
            sub.sent = present
                .iter()
                .map(|(n, e)| ((*n).clone(), e.version))
                .collect();
            present
        } else {
            let news: Vec<_> = wanted
                .iter()
                .filter_map(|n| lookup(n).map(|e| (*n, e)))
                .filter(|(n, e)| sub.sent.get(*n) != Some(&e.version))
                .collect();
            sub.sent.retain(|n, _| current.contains_key(n));
            if news.is_empty() {
                return true;
            }
            for (n, e) in &news {
                sub.sent.insert((*n).clone(), e.version);
            }
            news
        };
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let version = published.version.to_string();
        sub.nonce = nonce.clone();
        sub.version = version.clone();
        sub.answered = true;
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: resources.into_iter().map(|(_, e)| e.any.clone()).collect(),
            type_url: type_url.to_owned(),
            nonce,
            ..DiscoveryResponse::default()
        };
        let short = short(type_url).to_owned();
        self.clients.update(self.id, |c| {
            c.types.entry(short).or_default().sent = Some(version);
        });
        self.out.send(Ok(response)).await.is_ok()
    }

    /// Sends a newly published version's news, type by type.
    async fn on_publish(&mut self, published: &Published) -> bool {
        for type_url in PUSH_ORDER {
            if !self.send(type_url, published, false).await {
                return false;
            }
        }
        true
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Responses;
    type DeltaAggregatedResourcesStream = DeltaResponses;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Responses>, Status> {
        let info = request.extensions().get::<crate::PeerInfo>().cloned();
        let peer = info.as_ref().and_then(|i| i.remote_addr);
        let identity = info.and_then(|i| i.spiffe_id);
        let scope = identity
            .as_deref()
            .map(crate::node_identity::service_of)
            .and_then(|service| self.scopes.get(service).cloned());
        if self.mtls && identity.is_none() {
            // The TLS verifier requires an SVID: this is only a guard.
            return Err(Status::unauthenticated(
                "a client certificate with a SPIFFE ID is required",
            ));
        }
        let mut inbound = request.into_inner();
        let id = self.streams.fetch_add(1, Ordering::Relaxed) + 1;
        // A few responses may wait for a slow client; then its stream
        // waits too, instead of the control plane buffering without end.
        let (out, rx) = mpsc::channel(4);
        let mut published = self.published.clone();
        let mut stop = self.stop.clone();
        let clients = self.clients.clone();
        let limits = self.limits.clone();
        clients.opened(id, peer, identity.clone());
        tokio::spawn(async move {
            let mut task = StreamTask {
                id,
                clients: clients.clone(),
                subscriptions: HashMap::new(),
                nonces: 0,
                out,
                limits,
                peer: peer.map(|p| p.ip()),
                identity,
                node_checked: false,
                scope,
            };
            loop {
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(request)) => {
                            let current = published.borrow_and_update().clone();
                            if !task.on_request(request, &current).await {
                                break;
                            }
                        }
                        Ok(None) => break,
                        // Undecodable or too large: the client is told why.
                        Err(status) => {
                            tracing::debug!(stream = id, %status, "a request could not be read");
                            let _ = task.out.send(Err(status)).await;
                            break;
                        }
                    },
                    changed = published.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let current = published.borrow_and_update().clone();
                        if !task.on_publish(&current).await {
                            break;
                        }
                    }
                    // The only change is to stopped.
                    _ = stop.changed() => break,
                }
            }
            clients.closed(id);
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not served; use state of the world (StreamAggregatedResources)",
        ))
    }
}
