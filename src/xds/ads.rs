//! The ADS stream: one bidirectional gRPC stream per connection, state of
//! the world, all four types on it. Requests name every subscribed
//! resource of a type; each response is answered with an ACK (its version
//! and nonce) or a NACK (the previous version, its nonce, and an error
//! naming each rejected resource and field).

use super::backoff::Backoff;
use super::discovery::Settings;
use super::resource::Kind;
use super::state::State;
use crate::config::MeshConfig;
use crate::mesh::Shared;
use envoy_types::pb::envoy::config::core::v3::{
    Locality as PbLocality, Node, node::UserAgentVersionType,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How a session ended.
enum Ended {
    /// The mesh is gone: stop.
    Stopped,
    /// The stream failed; `worked` when it had delivered a response.
    Failed { worked: bool, error: String },
    /// On a fallback server, the primary became reachable again: go back
    /// to it now (gRFC A71).
    PrimaryBack,
}

pub(super) struct Task {
    pub(super) shared: Weak<Shared>,
    pub(super) settings: Settings,
    pub(super) state: Arc<Mutex<State>>,
    pub(super) commands: mpsc::UnboundedReceiver<super::discovery::Watch>,
    pub(super) changed: watch::Sender<u64>,
    pub(super) warm: Arc<std::sync::atomic::AtomicBool>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Task {
    /// Runs until the mesh is gone. Borrowed, so that after a panic the
    /// supervisor can run it again with what it held.
    pub(super) async fn run(&mut self) {
        let node = node(&self.settings);
        super::metrics::describe();
        let mut backoff = Backoff::default();
        let mut ever_received = false;
        let servers = self.settings.bootstrap.servers.clone();
        loop {
            let mut switch_back = false;
            for (i, server) in servers.iter().enumerate() {
                // A fallback server only while something watched has no
                // value (gRFC A71); otherwise the primary is retried.
                if i > 0 && !lock(&self.state).missing_any() {
                    break;
                }
                let primary = servers.first().filter(|_| i > 0).map(String::as_str);
                match self.session(server, primary, &node).await {
                    Ended::Stopped => return,
                    Ended::PrimaryBack => {
                        tracing::info!(
                            server,
                            "the primary control plane is reachable again: switching back to it"
                        );
                        lock(&self.state)
                            .disconnected(server, "switching back to the primary".to_owned());
                        self.notify();
                        backoff.reset();
                        switch_back = true;
                        break;
                    }
                    Ended::Failed { worked, error } => {
                        tracing::warn!(server, %error, "control plane stream ended");
                        super::metrics::stream_failed(self.control_plane());
                        lock(&self.state).disconnected(server, error);
                        self.notify();
                        if worked {
                            ever_received = true;
                            backoff.reset();
                            break;
                        }
                    }
                }
            }
            if switch_back {
                continue;
            }
            if !ever_received {
                self.load_cache();
            }
            let delay = backoff.next_delay();
            let until = Instant::now() + delay;
            // Watches asked for meanwhile are subscribed on reconnect.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    command = self.commands.recv() => match command {
                        Some(watch) => {
                            watch.apply(&mut lock(&self.state));
                        }
                        None => return,
                    },
                }
            }
        }
    }

    /// Records a panic the supervisor caught, and shows it.
    pub(super) fn restarted(&self, message: String) {
        {
            let mut state = lock(&self.state);
            state.restarts += 1;
            state.last_panic = Some(message);
        }
        super::metrics::task_restarted(self.control_plane());
        self.notify();
    }

    /// The first server of the bootstrap: the `control_plane` label.
    fn control_plane(&self) -> &str {
        self.settings
            .bootstrap
            .servers
            .first()
            .map_or("", String::as_str)
    }

    fn notify(&self) {
        {
            // Under the state's lock, as `Discovery::watch` clears it: a
            // service watched meanwhile cannot be missed.
            let mut state = lock(&self.state);
            super::metrics::state(self.control_plane(), &state);
            let all = state.publish();
            self.warm.store(all, std::sync::atomic::Ordering::Relaxed);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// One stream to `server`. On a fallback server, `primary` is probed
    /// meanwhile, and the session ends as soon as it can be reached.
    async fn session(&mut self, server: &str, primary: Option<&str>, node: &Node) -> Ended {
        #[cfg(test)]
        tests::panic_if_asked();
        let endpoint = match tonic::transport::Endpoint::from_shared(server.to_owned()) {
            Ok(e) => e.connect_timeout(Duration::from_secs(5)),
            Err(e) => {
                return Ended::Failed {
                    worked: false,
                    error: format!("invalid server address `{server}`: {e}"),
                };
            }
        };
        let tls = self.settings.bootstrap.channel_tls.get(server);
        let identity = self.settings.identity.as_ref();
        let channel = match super::channel_tls::connect(&endpoint, tls, identity).await {
            Ok(channel) => channel,
            Err(error) => {
                return Ended::Failed {
                    worked: false,
                    error,
                };
            }
        };
        // Only the primary's: the telemetry push goes to the primary.
        if primary.is_none() {
            lock(&self.state).channel = Some(channel.clone());
        }
        // As large as Sinew's control plane may send.
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES);
        let (requests, outbound) = mpsc::unbounded_channel::<DiscoveryRequest>();
        {
            let mut state = lock(&self.state);
            let wanted = state.wanted();
            state.subscribe(&wanted, false);
            let fail = self
                .settings
                .bootstrap
                .fail_on_data_errors
                .iter()
                .any(|s| s == server);
            state.connected(server, fail);
            for kind in Kind::ALL {
                let names = state.names(kind);
                if !names.is_empty() {
                    let _ = requests.send(request(
                        node,
                        kind,
                        state.version(kind),
                        String::new(),
                        names,
                        None,
                    ));
                }
            }
        }
        self.notify();
        let outbound = futures_util::stream::unfold(outbound, |mut rx| async move {
            rx.recv().await.map(|r| (r, rx))
        });
        // Some servers (gRPC's own) send the stream's headers only with
        // their first response, which needs a request: watches asked for
        // meanwhile are sent while the call opens.
        let call = client.stream_aggregated_resources(outbound);
        tokio::pin!(call);
        let opened = loop {
            tokio::select! {
                opened = &mut call => break opened,
                command = self.commands.recv() => match command {
                    Some(watch) => {
                        // The handle put the service in the state already;
                        // its subscriptions follow here.
                        let mut state = lock(&self.state);
                        watch.apply(&mut state);
                        resubscribe(&mut state, node, &requests);
                    }
                    None => return Ended::Stopped,
                },
            }
        };
        let mut inbound = match opened {
            Ok(response) => response.into_inner(),
            Err(status) => {
                return Ended::Failed {
                    worked: false,
                    error: format!("stream refused: {}", status.message()),
                };
            }
        };
        let mut worked = false;
        let probe = reachable(primary.map(str::to_owned), self.settings.clone());
        tokio::pin!(probe);
        loop {
            let (expired, next_timer) =
                lock(&self.state).expire(self.settings.initial_fetch_timeout);
            if expired {
                self.push_config(&[]);
                self.notify();
            }
            let timer = next_timer.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(response)) => {
                        worked = true;
                        self.respond(node, &requests, response);
                    }
                    Ok(None) => return Ended::Failed { worked, error: "the server closed the stream".to_owned() },
                    Err(status) => return Ended::Failed { worked, error: format!("{}: {}", status.code(), status.message()) },
                },
                command = self.commands.recv() => match command {
                    Some(watch) => {
                        // The handle put the service in the state already;
                        // its subscriptions follow here.
                        let mut state = lock(&self.state);
                        watch.apply(&mut state);
                        resubscribe(&mut state, node, &requests);
                    }
                    None => return Ended::Stopped,
                },
                _ = tokio::time::sleep_until(timer) => {}
                () = &mut probe => return Ended::PrimaryBack,
            }
            if self.shared.strong_count() == 0 {
                return Ended::Stopped;
            }
        }
    }

    /// Applies a response, answers it, follows the cascade, and updates the
    /// mesh.
    fn respond(
        &self,
        node: &Node,
        requests: &mpsc::UnboundedSender<DiscoveryRequest>,
        response: DiscoveryResponse,
    ) {
        let received = std::time::Instant::now();
        let Some(kind) = Kind::from_type_url(&response.type_url) else {
            tracing::warn!(type_url = %response.type_url, "ignoring a response of a type never requested");
            return;
        };
        let (changed, accepted) = {
            let mut state = lock(&self.state);
            let applied = state.apply_response(
                kind,
                &response.version_info,
                &response.nonce,
                &response.resources,
            );
            let (version, error) = match &applied.rejected {
                Some(message) => {
                    tracing::warn!(version = %response.version_info, %message, "NACK: rejected resources; the last good ones stay in use");
                    (state.version(kind), Some(message.clone()))
                }
                None => (response.version_info.clone(), None),
            };
            let _ = requests.send(request(
                node,
                kind,
                version,
                response.nonce.clone(),
                state.names(kind),
                error,
            ));
            resubscribe(&mut state, node, requests);
            (applied.changed, applied.rejected.is_none())
        };
        if !changed.is_empty() {
            self.push_config(&changed);
        }
        let took = received.elapsed();
        {
            let mut state = lock(&self.state);
            state.last_apply = Some(took);
            state.responses += 1;
        }
        super::metrics::response(self.control_plane(), kind, accepted, took);
        self.notify();
    }

    /// Puts what changed in force: endpoint-only changes as endpoint
    /// updates of the clusters they feed (in the time of the change), any
    /// other change as a whole new configuration.
    fn push_config(&self, changed: &[(Kind, String)]) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        // While a service waits for part of its configuration, an
        // assignment may be what it waited for: assemble the whole again.
        let endpoints_only = !changed.is_empty()
            && changed.iter().all(|(k, _)| *k == Kind::Endpoints)
            && !lock(&self.state).waiting;
        if endpoints_only && self.update_endpoints(&shared, changed) {
            self.write_cache(&shared);
            return;
        }
        let config = lock(&self.state).assemble();
        if shared.apply(config).is_ok() {
            lock(&self.state).from_cache = None;
            self.write_cache(&shared);
        }
    }

    /// Returns false when the change needs a whole configuration.
    fn update_endpoints(&self, shared: &Shared, changed: &[(Kind, String)]) -> bool {
        // Applied under the state's lock, so that the endpoints are read in
        // place rather than copied (assignments run to 100,000 endpoints).
        let state = lock(&self.state);
        let snapshot = shared.snapshot();
        for (_, eds) in changed {
            let Some(endpoints) = state.endpoints(eds) else {
                return false;
            };
            for cluster in state.clusters_fed_by(eds) {
                // A cluster not in force yet (no route names it) waits.
                if snapshot.cluster(&cluster).is_some()
                    && shared.replace_endpoints(&cluster, endpoints).is_err()
                {
                    return false;
                }
            }
        }
        true
    }

    /// Fail-static: the configuration in force, written where the next
    /// start can read it when the control plane is unreachable.
    fn write_cache(&self, shared: &Shared) {
        let Some(path) = &self.settings.cache else {
            return;
        };
        let config = shared.snapshot().to_config();
        let result = serde_json::to_vec(&config)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                // One that could not be read back would be no cache at all.
                if bytes.len() as u64 > crate::config::MAX_FILE_BYTES {
                    return Err(std::io::Error::other(format!(
                        "the configuration is {} bytes, over the {} a cache may hold",
                        bytes.len(),
                        crate::config::MAX_FILE_BYTES
                    )));
                }
                crate::config::write_private(path, &bytes)
            });
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "cannot write the configuration cache");
        }
    }

    /// Starts from the cached configuration, once, when the control plane
    /// has never answered.
    fn load_cache(&self) {
        let Some(path) = &self.settings.cache else {
            return;
        };
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if lock(&self.state).from_cache.is_some() || shared.snapshot().version() > 1 {
            return;
        }
        // (whether the file is simply not there, why it cannot be used)
        let read = crate::config::read_limited(path)
            .map_err(|e| (e.kind() == std::io::ErrorKind::NotFound, e.to_string()))
            .and_then(|bytes| {
                let written = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map_err(|e| (false, e.to_string()))?;
                let config: MeshConfig =
                    serde_json::from_slice(&bytes).map_err(|e| (false, e.to_string()))?;
                Ok((config, written))
            });
        match read {
            Ok((config, written)) => match shared.apply(config) {
                Ok(version) => {
                    tracing::warn!(path = %path.display(), version, "control plane unreachable: serving the cached configuration");
                    lock(&self.state).from_cache = Some(written);
                    self.notify();
                }
                Err(error) => tracing::warn!(%error, "the configuration cache is invalid"),
            },
            Err((true, error)) => {
                tracing::info!(path = %path.display(), %error, "no configuration cache to start from")
            }
            Err((false, error)) => {
                tracing::warn!(path = %path.display(), %error, "the configuration cache cannot be read")
            }
        }
    }
}

/// Completes once `primary` accepts a connection, trying with gRPC's
/// backoff; never when there is no primary to go back to.
async fn reachable(primary: Option<String>, settings: Settings) {
    let Some(primary) = primary else {
        return std::future::pending().await;
    };
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(primary.clone()) else {
        return std::future::pending().await;
    };
    let endpoint = endpoint.connect_timeout(Duration::from_secs(5));
    let tls = settings.bootstrap.channel_tls.get(&primary);
    let mut backoff = Backoff::default();
    loop {
        tokio::time::sleep(backoff.next_delay()).await;
        if super::channel_tls::connect(&endpoint, tls, settings.identity.as_ref())
            .await
            .is_ok()
        {
            return;
        }
    }
}

/// Sends a request for each type whose subscribed names changed.
fn resubscribe(state: &mut State, node: &Node, requests: &mpsc::UnboundedSender<DiscoveryRequest>) {
    let wanted = state.wanted();
    for kind in state.subscribe(&wanted, true) {
        let _ = requests.send(request(
            node,
            kind,
            state.version(kind),
            state.nonce(kind),
            state.names(kind),
            None,
        ));
    }
}

fn request(
    node: &Node,
    kind: Kind,
    version: String,
    nonce: String,
    names: Vec<String>,
    error: Option<String>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version,
        node: Some(node.clone()),
        resource_names: names,
        type_url: kind.type_url().to_owned(),
        response_nonce: nonce,
        error_detail: error.map(|message| RpcStatus {
            // INVALID_ARGUMENT, as gRPC's clients send.
            code: 3,
            message,
            details: Vec::new(),
        }),
        ..DiscoveryRequest::default()
    }
}

fn node(settings: &Settings) -> Node {
    let b = &settings.bootstrap;
    Node {
        id: b.node_id.clone(),
        cluster: b.node_cluster.clone(),
        locality: b.locality.as_ref().map(|l| PbLocality {
            region: l.region.clone(),
            zone: l.zone.clone(),
            ..PbLocality::default()
        }),
        user_agent_name: "sinew".to_owned(),
        user_agent_version_type: Some(UserAgentVersionType::UserAgentVersion(
            env!("CARGO_PKG_VERSION").to_owned(),
        )),
        ..Node::default()
    }
}

/// An error with its sources, which is where transport errors say what
/// happened.
pub(super) fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        // Layers often repeat their source's words.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;

    thread_local! {
        /// Makes the next session on this thread panic: the supervisor's
        /// test has no other way to make a bug.
        static PANIC_NEXT_SESSION: Cell<bool> = const { Cell::new(false) };
    }

    pub(in super::super) fn panic_next_session() {
        PANIC_NEXT_SESSION.with(|p| p.set(true));
    }

    pub(super) fn panic_if_asked() {
        if PANIC_NEXT_SESSION.with(|p| p.replace(false)) {
            panic!("a bug, injected by a test");
        }
    }
}
