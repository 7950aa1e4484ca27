//! The push of edge metrics to the control plane (ADR 0017): every
//! interval (5 s by default), what [`Edges::take`] returns goes to the
//! control plane as one OTLP `MetricsService/Export`, on the ADS stream's
//! connection while it is open (else on one of its own, with the same
//! channel settings: the server, its TLS, the mesh's certificate),
//! with the process's identity as the resource: `service.name` is the
//! bootstrap's `node.cluster`, `service.instance.id` its `node.id`.
//!
//! A mesh pointed at a control plane pushes unless
//! [`MeshBuilder::telemetry_push`](crate::mesh::MeshBuilder::telemetry_push)
//! turns it off. Failures are logged (once per outage, then at debug) and
//! the figures kept for the next interval, merged into what comes next so
//! that memory stays one entry per edge; figures older than
//! [`PushSettings::max_retained`] intervals are dropped (counted in
//! `sinew_telemetry_push_dropped_total`). The task ends with the mesh.

use super::edges::{EdgeStats, Edges};
use super::otlp_names as names;
use crate::xds::Bootstrap;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use tonic::transport::Channel;

/// The push's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSettings {
    /// How often edges are taken and pushed. Default: 5 s.
    pub interval: Duration,
    /// How many intervals unsent figures are kept while the control plane
    /// cannot be reached, before they are dropped. Default: 12 (a minute
    /// at the default interval).
    pub max_retained: u32,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            max_retained: 12,
        }
    }
}

/// The channel of the open ADS stream, when there is one.
pub(crate) type AdsChannel = std::sync::Arc<dyn Fn() -> Option<Channel> + Send + Sync>;

/// Who is pushing, and where to.
pub(crate) struct Target {
    pub(crate) bootstrap: Bootstrap,
    pub(crate) identity: Option<crate::tls::Identity>,
    /// The ADS stream's channel, preferred to a connection of the push's
    /// own: one connection per process to the control plane.
    pub(crate) ads_channel: AdsChannel,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("bootstrap", &self.bootstrap)
            .finish_non_exhaustive()
    }
}

/// Figures not yet sent: at most one entry per edge.
#[derive(Debug, Default)]
struct Pending {
    edges: BTreeMap<super::edges::Edge, EdgeStats>,
    /// When the oldest of them was taken (unix nanoseconds), and how many
    /// intervals ago.
    since_unix_nano: u64,
    intervals: u32,
}

impl Pending {
    fn add(&mut self, taken: Vec<EdgeStats>, now_unix_nano: u64) {
        if self.edges.is_empty() {
            self.since_unix_nano = now_unix_nano;
            self.intervals = 0;
        }
        for stats in taken {
            match self.edges.get_mut(&stats.edge) {
                Some(kept) => {
                    kept.requests += stats.requests;
                    kept.failures += stats.failures;
                    kept.latency.merge(&stats.latency);
                }
                None => {
                    self.edges.insert(stats.edge.clone(), stats);
                }
            }
        }
    }
}

fn unix_nano(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

/// The OTLP export of `edges`, taken between `start` and `end` (unix
/// nanoseconds), by `service` (`instance`).
pub fn export_request<'a>(
    service: &str,
    instance: &str,
    edges: impl IntoIterator<Item = &'a EdgeStats>,
    start_unix_nano: u64,
    end_unix_nano: u64,
) -> ExportMetricsServiceRequest {
    let bounds = names::latency_bounds_seconds();
    let mut histograms = Vec::new();
    let mut failures = Vec::new();
    for stats in edges {
        let attributes = vec![
            string(names::SOURCE, &stats.edge.source),
            string(names::DESTINATION, &stats.edge.destination),
            string(names::DIRECTION, stats.edge.direction.as_str()),
        ];
        let mut counts = stats.latency.counts.clone();
        counts.resize(bounds.len() + 1, 0);
        histograms.push(HistogramDataPoint {
            attributes: attributes.clone(),
            start_time_unix_nano: start_unix_nano,
            time_unix_nano: end_unix_nano,
            count: counts.iter().sum(),
            sum: Some(stats.latency.sum_micros as f64 / 1e6),
            bucket_counts: counts,
            explicit_bounds: bounds.clone(),
            ..HistogramDataPoint::default()
        });
        failures.push(NumberDataPoint {
            attributes,
            start_time_unix_nano: start_unix_nano,
            time_unix_nano: end_unix_nano,
            value: Some(number_data_point::Value::AsInt(
                i64::try_from(stats.failures).unwrap_or(i64::MAX),
            )),
            ..NumberDataPoint::default()
        });
    }
    let delta = AggregationTemporality::Delta as i32;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    string(names::SERVICE_NAME, service),
                    string(names::SERVICE_INSTANCE_ID, instance),
                ],
                ..Resource::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: names::SCOPE.to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..InstrumentationScope::default()
                }),
                metrics: vec![
                    Metric {
                        name: names::DURATION.to_owned(),
                        description: "Requests of an edge and their latency".to_owned(),
                        unit: "s".to_owned(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: histograms,
                            aggregation_temporality: delta,
                        })),
                        ..Metric::default()
                    },
                    Metric {
                        name: names::FAILURES.to_owned(),
                        description: "Failed requests of an edge".to_owned(),
                        unit: "{request}".to_owned(),
                        data: Some(Data::Sum(Sum {
                            data_points: failures,
                            aggregation_temporality: delta,
                            is_monotonic: true,
                        })),
                        ..Metric::default()
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Pushes `edges` every interval while `alive` says the mesh lives.
pub(crate) async fn run(
    edges: Edges,
    alive: impl Fn() -> bool,
    target: Target,
    settings: PushSettings,
) {
    let Some(mut pusher) = Pusher::new(target, settings) else {
        return;
    };
    let interval = pusher.settings.interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !alive() {
            return;
        }
        pusher.tick(edges.take()).await;
    }
}

/// The push's state from one interval to the next.
#[derive(Debug)]
struct Pusher {
    server: String,
    service: String,
    instance: String,
    target: Target,
    settings: PushSettings,
    client: Option<MetricsServiceClient<Channel>>,
    pending: Pending,
    /// Whether the last push failed (to log an outage once).
    failing: bool,
    /// Edge entries dropped unsent.
    dropped: u64,
}

impl Pusher {
    /// `None` when there is nothing to push to, or no name to push as.
    fn new(target: Target, settings: PushSettings) -> Option<Self> {
        let server = target.bootstrap.servers.first().cloned()?;
        let service = target.bootstrap.node_cluster.clone();
        if service.is_empty() {
            tracing::warn!(
                "telemetry is not pushed: the bootstrap's node.cluster, which names this service, is empty"
            );
            return None;
        }
        Some(Self {
            server,
            service,
            instance: target.bootstrap.node_id.clone(),
            target,
            settings,
            client: None,
            pending: Pending::default(),
            failing: false,
            dropped: 0,
        })
    }

    /// One interval: `taken` added to what is pending, and pushed.
    async fn tick(&mut self, taken: Vec<EdgeStats>) {
        let now = unix_nano(SystemTime::now());
        self.pending.add(taken, now);
        if self.pending.edges.is_empty() {
            return;
        }
        let result = push(
            &mut self.client,
            &self.server,
            &self.target,
            &self.service,
            &self.instance,
            &self.pending,
            now,
            self.settings.interval,
        )
        .await;
        let server = &self.server;
        match result {
            Ok(()) => {
                if self.failing {
                    tracing::info!(control_plane = %server, "telemetry pushed again");
                }
                self.failing = false;
                self.pending = Pending::default();
            }
            Err((error, retry)) => {
                self.client = None;
                if !self.failing {
                    tracing::warn!(control_plane = %server, %error, "telemetry push failed; retrying next interval");
                } else {
                    tracing::debug!(control_plane = %server, %error, "telemetry push failed");
                }
                self.failing = true;
                self.pending.intervals += 1;
                if !retry || self.pending.intervals > self.settings.max_retained {
                    let lost = self.pending.edges.len() as u64;
                    self.dropped += lost;
                    metrics::counter!("sinew_telemetry_push_dropped_total").increment(lost);
                    self.pending = Pending::default();
                }
            }
        }
    }
}

/// One export; on failure, why and whether trying again could help.
#[allow(clippy::too_many_arguments)]
async fn push(
    client: &mut Option<MetricsServiceClient<Channel>>,
    server: &str,
    target: &Target,
    service: &str,
    instance: &str,
    pending: &Pending,
    now: u64,
    deadline: Duration,
) -> Result<(), (String, bool)> {
    let attempt = async {
        // The ADS stream's connection when it is open; else one of our
        // own, kept while it works.
        let shared = (target.ads_channel)().map(MetricsServiceClient::new);
        if shared.is_some() {
            *client = None;
        }
        let mut shared = shared;
        if shared.is_none() && client.is_none() {
            let endpoint = tonic::transport::Endpoint::from_shared(server.to_owned())
                .map_err(|e| (format!("invalid server address `{server}`: {e}"), false))?
                .connect_timeout(deadline);
            let tls = target.bootstrap.channel_tls.get(server);
            let channel =
                crate::xds::channel_tls::connect(&endpoint, tls, target.identity.as_ref())
                    .await
                    .map_err(|e| (e, true))?;
            *client = Some(MetricsServiceClient::new(channel));
        }
        let Some(c) = shared.as_mut().or(client.as_mut()) else {
            return Err(("no channel".to_owned(), true));
        };
        let request = export_request(
            service,
            instance,
            pending.edges.values(),
            pending.since_unix_nano,
            now,
        );
        match c.export(request).await {
            Ok(response) => {
                if let Some(partial) = response.into_inner().partial_success
                    && partial.rejected_data_points > 0
                {
                    tracing::warn!(
                        rejected = partial.rejected_data_points,
                        message = %partial.error_message,
                        "the control plane refused part of the telemetry pushed"
                    );
                }
                Ok(())
            }
            // A refusal of what was sent: sending it again will not help.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument | tonic::Code::PermissionDenied
                ) =>
            {
                Err((status.to_string(), false))
            }
            Err(status) => Err((status.to_string(), true)),
        }
    };
    match tokio::time::timeout(deadline, attempt).await {
        Ok(result) => result,
        Err(_) => Err((
            format!("no answer within {} ms", deadline.as_millis()),
            true,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::edges::Direction;

    fn taken(destination: &str, requests: u32) -> Vec<EdgeStats> {
        let edges = Edges::default();
        let r = edges.edge(Direction::Outbound, "cart", destination);
        for _ in 0..requests {
            r.record(true, Duration::from_millis(1));
        }
        edges.take()
    }

    #[tokio::test]
    async fn unsent_figures_merge_per_edge_and_are_dropped_after_max_retained() {
        // A port nobody listens on: every push fails at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let mut bootstrap = Bootstrap::for_server(&format!("http://127.0.0.1:{closed}"));
        bootstrap.node_cluster = "cart".to_owned();
        let settings = PushSettings {
            interval: Duration::from_secs(5),
            max_retained: 2,
        };
        let target = Target {
            bootstrap,
            identity: None,
            ads_channel: std::sync::Arc::new(|| None),
        };
        let mut pusher = Pusher::new(target, settings).unwrap_or_else(|| unreachable!());
        pusher.tick(taken("reviews", 3)).await;
        assert_eq!(pusher.pending.edges.len(), 1);
        let mut more = taken("reviews", 2);
        more.extend(taken("ratings", 1));
        pusher.tick(more).await;
        // One entry per edge, whatever the number of intervals.
        assert_eq!(pusher.pending.edges.len(), 2);
        let reviews = pusher
            .pending
            .edges
            .values()
            .find(|s| &*s.edge.destination == "reviews");
        assert_eq!(reviews.map(|s| s.requests), Some(5));
        assert!(pusher.failing);
        pusher.tick(Vec::new()).await;
        assert!(
            pusher.pending.edges.is_empty(),
            "dropped after two intervals retained"
        );
        assert_eq!(pusher.dropped, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_push_ticks_on_tokio_time_and_ends_with_the_mesh() {
        let mut bootstrap = Bootstrap::for_server("http://127.0.0.1:9");
        bootstrap.node_cluster = "cart".to_owned();
        let target = Target {
            bootstrap,
            identity: None,
            ads_channel: std::sync::Arc::new(|| None),
        };
        let checks = std::sync::atomic::AtomicU32::new(0);
        let alive = || checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3;
        let started = tokio::time::Instant::now();
        let settings = PushSettings {
            interval: Duration::from_secs(5),
            ..PushSettings::default()
        };
        // Nothing recorded: nothing is sent, the ticks go on.
        run(Edges::default(), alive, target, settings).await;
        // Alive at 5, 10 and 15 s; gone at 20 s.
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }

    #[test]
    fn an_export_carries_the_edges_and_the_identity() {
        let request = export_request("cart", "cart-1", &taken("reviews", 4), 1, 2);
        let resource = &request.resource_metrics[0];
        let attributes = resource.resource.as_ref().map(|r| r.attributes.len());
        assert_eq!(attributes, Some(2));
        let metrics = &resource.scope_metrics[0].metrics;
        assert_eq!(metrics[0].name, names::DURATION);
        let Some(Data::Histogram(h)) = &metrics[0].data else {
            unreachable!("a histogram")
        };
        assert_eq!(h.data_points[0].count, 4);
        // What an edge costs on the wire (ADR 0017 quotes it).
        use prost::Message as _;
        let mut two = taken("reviews", 4);
        two.extend(taken("ratings", 4));
        let per_edge =
            export_request("cart", "cart-1", &two, 1, 2).encoded_len() - request.encoded_len();
        // 605 bytes when measured: the 25 counts and 24 bounds dominate.
        assert!((500..700).contains(&per_edge), "{per_edge} bytes per edge");
        assert_eq!(
            h.data_points[0].bucket_counts.len(),
            h.data_points[0].explicit_bounds.len() + 1
        );
    }
}
