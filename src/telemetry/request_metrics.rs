//! Request metrics through the `metrics` facade, and the per-edge
//! aggregates, resolved once per label set.
//!
//! - `sinew_requests_total{direction, source, destination, route,
//!   status_class | grpc_code}`: requests finished (counter);
//! - `sinew_request_duration_seconds{...same labels}`: time to the
//!   response head (histogram).
//!
//! Every label comes from a bounded set: the direction, service names
//! (the caller's from its SPIFFE ID), the route's index in its service,
//! and the status class (`2xx`, `5xx`, `error`) or the gRPC code's name.
//! A process keeps at most [`DEFAULT_MAX_LABEL_SETS`] label sets; past
//! that, new ones are counted under [`OVERFLOW`] for the source,
//! destination and route.
//!
//! The handles of a label set (and its edge recorder) are registered with
//! the recorder installed when the set is first seen, and kept: a request
//! then costs one hash, a read lock and the recorder's own work.

use super::edges::{Direction, EdgeRecorder, Edges, OVERFLOW};
use metrics::{Counter, Histogram, Label};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How many label sets a [`RequestMetrics`] keeps by default.
pub const DEFAULT_MAX_LABEL_SETS: usize = 2048;

/// The counter of requests.
pub const REQUESTS_TOTAL: &str = "sinew_requests_total";
/// The histogram of request durations, in seconds.
pub const REQUEST_DURATION_SECONDS: &str = "sinew_request_duration_seconds";

/// What a request ended with, as a bounded label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusLabel {
    /// An HTTP status class: 1 to 5 (`1xx` to `5xx`).
    Class(u8),
    /// A gRPC status code.
    Grpc(crate::grpc::Code),
    /// No response: an error.
    Error,
    /// No response: the caller gave up on the request (its future was
    /// dropped: a timeout of the caller's, a client that went away).
    Cancelled,
}

impl StatusLabel {
    fn label(self) -> Label {
        match self {
            Self::Class(class) => {
                const CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
                let text = CLASSES.get(usize::from(class)).copied().unwrap_or("5xx");
                Label::from_static_parts("status_class", text)
            }
            Self::Grpc(code) => Label::from_static_parts("grpc_code", code.name()),
            Self::Error => Label::from_static_parts("status_class", "error"),
            Self::Cancelled => Label::from_static_parts("status_class", "cancelled"),
        }
    }
}

/// The labels of one request, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Labels<'a> {
    /// Which side this process was on.
    pub direction: Direction,
    /// The calling service.
    pub source: &'a str,
    /// The called service.
    pub destination: &'a str,
    /// The route (its index in its service), or empty.
    pub route: &'a str,
    /// The status class or gRPC code.
    pub status: StatusLabel,
}

#[derive(Debug)]
struct Owned {
    direction: Direction,
    source: Box<str>,
    destination: Box<str>,
    route: Box<str>,
    status: StatusLabel,
}

impl Owned {
    fn is(&self, labels: &Labels<'_>) -> bool {
        self.direction == labels.direction
            && self.status == labels.status
            && &*self.source == labels.source
            && &*self.destination == labels.destination
            && &*self.route == labels.route
    }
}

/// The handles of one label set.
#[derive(Clone, Debug)]
struct Handles {
    requests: Counter,
    duration: Histogram,
    edge: Option<EdgeRecorder>,
}

#[derive(Debug, Default)]
struct Table {
    /// By the labels' hash; a bucket holds the sets that share it.
    sets: HashMap<u64, Vec<(Owned, Handles)>>,
    len: usize,
}

/// Request metrics and edge recording for one mesh (or one
/// [`TelemetryLayer`](super::layer::TelemetryLayer)): cheap to clone,
/// clones share their handles.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    table: Arc<RwLock<Table>>,
    hasher: std::hash::BuildHasherDefault<Fnv>,
    edges: Option<Edges>,
    max: usize,
    metrics: bool,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestMetrics {
    /// Metrics, no edges, the default cap.
    pub fn new() -> Self {
        Self {
            table: Arc::default(),
            hasher: Default::default(),
            edges: None,
            max: DEFAULT_MAX_LABEL_SETS,
            metrics: true,
        }
    }

    /// Also records each request into `edges`.
    pub fn with_edges(mut self, edges: Edges) -> Self {
        self.edges = Some(edges);
        self
    }

    /// Keeps at most `max` label sets (at least 1).
    pub fn with_max_label_sets(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self
    }

    /// Records edges only: no `metrics` handles.
    pub fn without_metrics(mut self) -> Self {
        self.metrics = false;
        self
    }

    /// Records one request.
    pub fn record(&self, labels: Labels<'_>, success: bool, latency: Duration) {
        let handles = self.handles(&labels);
        handles.requests.increment(1);
        handles.duration.record(latency.as_secs_f64());
        if let Some(edge) = &handles.edge {
            edge.record(success, latency);
        }
    }

    fn hash(&self, labels: &Labels<'_>) -> u64 {
        self.hasher.hash_one(labels)
    }

    fn handles(&self, labels: &Labels<'_>) -> Handles {
        let hash = self.hash(labels);
        {
            let table = self.table.read().unwrap_or_else(|p| p.into_inner());
            if let Some(found) = find(&table, hash, labels) {
                return found;
            }
        }
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = find(&table, hash, labels) {
            return found;
        }
        // Past the cap, the request counts under the overflow set (of its
        // direction and status), registered once like any other.
        let (labels, hash) = if table.len + 1 >= self.max {
            let overflow = Labels {
                source: OVERFLOW,
                destination: OVERFLOW,
                route: OVERFLOW,
                ..*labels
            };
            if let Some(found) = find(&table, self.hash(&overflow), &overflow) {
                return found;
            }
            (overflow, self.hash(&overflow))
        } else {
            (*labels, hash)
        };
        let handles = self.register(&labels);
        let owned = Owned {
            direction: labels.direction,
            source: labels.source.into(),
            destination: labels.destination.into(),
            route: labels.route.into(),
            status: labels.status,
        };
        table
            .sets
            .entry(hash)
            .or_default()
            .push((owned, handles.clone()));
        table.len += 1;
        handles
    }

    fn register(&self, labels: &Labels<'_>) -> Handles {
        let edge = self
            .edges
            .as_ref()
            .map(|edges| edges.edge(labels.direction, labels.source, labels.destination));
        if !self.metrics {
            return Handles {
                requests: Counter::noop(),
                duration: Histogram::noop(),
                edge,
            };
        }
        describe();
        let set = vec![
            Label::from_static_parts("direction", labels.direction.as_str()),
            Label::new("source", labels.source.to_owned()),
            Label::new("destination", labels.destination.to_owned()),
            Label::new("route", labels.route.to_owned()),
            labels.status.label(),
        ];
        Handles {
            requests: metrics::counter!(REQUESTS_TOTAL, set.clone()),
            duration: metrics::histogram!(REQUEST_DURATION_SECONDS, set),
            edge,
        }
    }
}

/// FNV-1a: a few nanoseconds for a few short labels, where SipHash took
/// the larger share of a request's cost. Flooding is not a concern: the
/// table is capped, and the labels come from configuration and
/// authenticated identities.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

fn find(table: &Table, hash: u64, labels: &Labels<'_>) -> Option<Handles> {
    table
        .sets
        .get(&hash)?
        .iter()
        .find(|(owned, _)| owned.is(labels))
        .map(|(_, handles)| handles.clone())
}

fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "Requests finished, by edge, route and status."
    );
    metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time from the request to its response head, by edge, route and status."
    );
}

/// The route label of the route at `index` among its service's routes:
/// `"0"` to `"31"`, then [`OVERFLOW`] (made without formatting).
pub fn route_label(index: usize) -> &'static str {
    const ROUTES: [&str; 32] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
    ];
    ROUTES.get(index).copied().unwrap_or(OVERFLOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    fn labels(source: &str) -> Labels<'_> {
        Labels {
            direction: Direction::Inbound,
            source,
            destination: "reviews",
            route: "",
            status: StatusLabel::Class(2),
        }
    }

    #[test]
    fn label_sets_are_capped() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let edges = Edges::default();
        metrics::with_local_recorder(&recorder, || {
            let m = RequestMetrics::new()
                .with_edges(edges.clone())
                .with_max_label_sets(3);
            for caller in ["a", "b", "c", "d", "a"] {
                m.record(labels(caller), true, Duration::from_millis(1));
            }
        });
        let counters: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.key().name() == REQUESTS_TOTAL)
            .map(|(key, _, _, value)| {
                let source = key
                    .key()
                    .labels()
                    .find(|l| l.key() == "source")
                    .map(|l| l.value().to_owned());
                (source, value)
            })
            .collect();
        assert_eq!(counters.len(), 3, "{counters:?}");
        assert!(counters.iter().any(|(s, _)| s.as_deref() == Some(OVERFLOW)));
        assert_eq!(edges.take().iter().map(|e| e.requests).sum::<u64>(), 5);
    }
}
