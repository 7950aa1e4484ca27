//! Telemetry from workloads (ADR 0017): the OTLP metrics service on the
//! xDS listener, where Sinew's library pushes its golden metrics per edge,
//! and the rolling window they are kept in, which the admin API's
//! `/v1/graph` and the dashboard show.

mod intake;
mod options;
mod parse;
mod window;

pub(crate) use intake::Intake;
pub use options::TelemetryOptions;
pub use window::EdgeSummary;

use serde::Serialize;
use sinew::telemetry::edges::Direction;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use window::{Key, Window};

/// One edge of the service graph over the window: what its caller
/// reported (`outbound`) and what its callee did (`inbound`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GraphEdge {
    /// The calling service.
    pub source: String,
    /// The called service.
    pub destination: String,
    /// As the callers reported it.
    pub outbound: Option<EdgeSummary>,
    /// As the callees reported it.
    pub inbound: Option<EdgeSummary>,
}

/// A process that pushed telemetry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reporter {
    /// Its service.
    pub service: String,
    /// Its instance (xDS node id).
    pub instance: String,
    /// When it last pushed, in milliseconds since the Unix epoch.
    pub last_export_unix_ms: u64,
}

/// What the intake has counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IntakeCounts {
    /// Exports applied.
    pub exports: u64,
    /// Exports refused whole (malformed, too large, wrong identity).
    pub rejected_exports: u64,
    /// Edges of applied exports left out: reported by a process that was
    /// on neither side of them.
    pub rejected_edges: u64,
    /// Edges dropped from the window to make room for new ones.
    pub evicted_edges: u64,
    /// Edges in the window now.
    pub edges: usize,
}

#[derive(Debug)]
struct Inner {
    window: Window,
    reporters: BTreeMap<(String, String), (Instant, u64)>,
    counts: IntakeCounts,
}

/// The pushed telemetry. Cheap to clone; clones share it.
#[derive(Clone, Debug)]
pub struct Telemetry {
    inner: Arc<Mutex<Inner>>,
    options: Arc<TelemetryOptions>,
}

impl Telemetry {
    /// An empty window with `options`.
    pub fn new(options: TelemetryOptions) -> Self {
        let now = Instant::now();
        Self {
            inner: Arc::new(Mutex::new(Inner {
                window: Window::new(&options, now),
                reporters: BTreeMap::new(),
                counts: IntakeCounts::default(),
            })),
            options: Arc::new(options),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The options in force.
    pub fn options(&self) -> &TelemetryOptions {
        &self.options
    }

    fn rejected(&self) {
        self.lock().counts.rejected_exports += 1;
        metrics::counter!("sinew_control_plane_telemetry_exports_total", "result" => "rejected")
            .increment(1);
    }

    fn apply(&self, report: parse::Report, rejected_edges: u64) {
        let now = Instant::now();
        let mut inner = self.lock();
        for (key, delta) in &report.edges {
            inner.window.record(now, key.clone(), delta);
        }
        // Reporters are bounded like edges: the stalest goes first.
        let id = (report.service, report.instance);
        if !inner.reporters.contains_key(&id) && inner.reporters.len() >= self.options.max_edges {
            let stalest = inner
                .reporters
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                inner.reporters.remove(&k);
            }
        }
        let unix_ms = crate::clients::unix_ms(std::time::SystemTime::now());
        inner.reporters.insert(id, (now, unix_ms));
        inner.counts.exports += 1;
        inner.counts.rejected_edges += rejected_edges;
        metrics::counter!("sinew_control_plane_telemetry_exports_total", "result" => "applied")
            .increment(1);
    }

    /// The service graph over the window, edges sorted.
    pub fn edges(&self) -> Vec<GraphEdge> {
        let summaries = self.lock().window.summaries(Instant::now());
        let mut edges: BTreeMap<(String, String), GraphEdge> = BTreeMap::new();
        for (
            Key {
                source,
                destination,
                direction,
            },
            summary,
        ) in summaries
        {
            let edge = edges
                .entry((source.clone(), destination.clone()))
                .or_insert_with(|| GraphEdge {
                    source,
                    destination,
                    outbound: None,
                    inbound: None,
                });
            match direction {
                Direction::Outbound => edge.outbound = Some(summary),
                Direction::Inbound => edge.inbound = Some(summary),
            }
        }
        edges.into_values().collect()
    }

    /// The processes that pushed, most recent first per service.
    pub fn reporters(&self) -> Vec<Reporter> {
        self.lock()
            .reporters
            .iter()
            .map(|((service, instance), (_, unix_ms))| Reporter {
                service: service.clone(),
                instance: instance.clone(),
                last_export_unix_ms: *unix_ms,
            })
            .collect()
    }

    /// What the intake counted.
    pub fn counts(&self) -> IntakeCounts {
        let inner = self.lock();
        IntakeCounts {
            evicted_edges: inner.window.evicted,
            edges: inner.window.len(),
            ..inner.counts.clone()
        }
    }
}
