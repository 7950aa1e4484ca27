//! Golden metrics per edge: requests, failures and a latency histogram
//! for each (direction, source service, destination service), kept in
//! process and taken as deltas by whoever reports them.
//!
//! An edge is resolved once into an [`EdgeRecorder`] (a lookup under a
//! lock), and each request then costs a few relaxed atomic adds. The
//! number of edges is capped: past the cap, new edges share one overflow
//! edge whose source and destination are [`OVERFLOW`], so that a caller
//! naming itself anew on every request cannot grow memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The service name of the edge that holds the requests of edges past
/// the cap.
pub const OVERFLOW: &str = "_other";

/// How many edges a process keeps by default.
pub const DEFAULT_MAX_EDGES: usize = 1024;

/// Upper bounds of the latency buckets, in microseconds: roughly
/// logarithmic from 100 µs to 60 s. The last bucket holds everything
/// above the last bound.
pub const LATENCY_BOUNDS_MICROS: [u64; 24] = [
    100, 250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000, 75_000,
    100_000, 150_000, 250_000, 500_000, 750_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    30_000_000, 60_000_000,
];

const BUCKETS: usize = LATENCY_BOUNDS_MICROS.len() + 1;

/// Which side of the request this process was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// This process sent the request (the client stack).
    Outbound,
    /// This process received the request (the server stack).
    Inbound,
}

impl Direction {
    /// `outbound` or `inbound`, as metric labels spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// One edge of the service graph, as seen from this process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    /// Which side this process was on.
    pub direction: Direction,
    /// The calling service (`unknown` when the caller did not say).
    pub source: Arc<str>,
    /// The called service.
    pub destination: Arc<str>,
}

#[derive(Debug)]
struct Counters {
    requests: AtomicU64,
    failures: AtomicU64,
    latency_sum_micros: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Records the requests of one edge; cheap to clone, lock-free to use.
#[derive(Clone, Debug)]
pub struct EdgeRecorder(Arc<Counters>);

impl EdgeRecorder {
    /// One request finished: whether it succeeded, and how long it took.
    #[inline]
    pub fn record(&self, success: bool, latency: Duration) {
        let c = &self.0;
        c.requests.fetch_add(1, Relaxed);
        if !success {
            c.failures.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        c.latency_sum_micros.fetch_add(micros, Relaxed);
        let bucket = LATENCY_BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        c.latency[bucket].fetch_add(1, Relaxed);
    }
}

/// What an edge did since the last [`Edges::take`].
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeStats {
    /// The edge.
    pub edge: Edge,
    /// Requests finished.
    pub requests: u64,
    /// Of those, failures (5xx, gRPC server-side codes, errors).
    pub failures: u64,
    /// The latency histogram.
    pub latency: LatencyHistogram,
}

impl EdgeStats {
    /// The share of requests that succeeded, if there were any.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| 1.0 - self.failures as f64 / self.requests as f64)
    }
}

/// A latency histogram over [`LATENCY_BOUNDS_MICROS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    /// Counts per bucket: `counts[i]` holds latencies up to
    /// `LATENCY_BOUNDS_MICROS[i]` (and above the previous bound); the last
    /// holds those above every bound. Empty when nothing was recorded.
    pub counts: Vec<u64>,
    /// The sum of the latencies, in microseconds.
    pub sum_micros: u64,
}

impl LatencyHistogram {
    /// Adds `other`'s counts to this one's.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        // Saturating: histograms merged here may come from other
        // processes (the control plane's window).
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
    }

    /// The `q` quantile (0 to 1), interpolated within its bucket, or
    /// `None` for an empty histogram. A quantile in the last bucket is
    /// reported as the last bound.
    ///
    /// ```
    /// use sinew::telemetry::edges::{LatencyHistogram, LATENCY_BOUNDS_MICROS};
    /// let mut counts = vec![0; LATENCY_BOUNDS_MICROS.len() + 1];
    /// counts[3] = 10; // ten requests between 500 µs and 1 ms
    /// let histogram = LatencyHistogram { counts, sum_micros: 7_500 };
    /// let p50 = histogram.quantile(0.5).unwrap();
    /// assert!(p50 > std::time::Duration::from_micros(500) && p50 <= std::time::Duration::from_millis(1));
    /// ```
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.counts.iter().fold(0u64, |t, &c| t.saturating_add(c));
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if seen.saturating_add(count) as f64 >= rank {
                let Some(&upper) = LATENCY_BOUNDS_MICROS.get(i) else {
                    return LATENCY_BOUNDS_MICROS
                        .last()
                        .map(|&b| Duration::from_micros(b));
                };
                let lower = if i == 0 {
                    0
                } else {
                    LATENCY_BOUNDS_MICROS[i - 1]
                };
                let within = (rank - seen as f64) / count as f64;
                let micros = lower as f64 + within * (upper - lower) as f64;
                return Some(Duration::from_micros(micros as u64));
            }
            seen = seen.saturating_add(count);
        }
        LATENCY_BOUNDS_MICROS
            .last()
            .map(|&b| Duration::from_micros(b))
    }
}

#[derive(Debug)]
struct Table {
    edges: HashMap<Edge, EdgeRecorder>,
    max: usize,
}

/// The edges of one process. Cheap to clone; clones share the edges.
#[derive(Clone, Debug)]
pub struct Edges(Arc<Mutex<Table>>);

impl Default for Edges {
    fn default() -> Self {
        Self::with_max(DEFAULT_MAX_EDGES)
    }
}

impl Edges {
    /// Edges capped at `max` (past it, requests go to the overflow edge).
    pub fn with_max(max: usize) -> Self {
        Self(Arc::new(Mutex::new(Table {
            edges: HashMap::new(),
            max: max.max(1),
        })))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The recorder of an edge, made on first use. Resolve it once (per
    /// client, per caller identity) rather than per request.
    ///
    /// ```
    /// use sinew::telemetry::edges::{Direction, Edges};
    /// use std::time::Duration;
    /// let edges = Edges::default();
    /// let recorder = edges.edge(Direction::Outbound, "cart", "reviews");
    /// recorder.record(true, Duration::from_millis(3));
    /// recorder.record(false, Duration::from_millis(40));
    /// let taken = edges.take();
    /// assert_eq!(taken[0].requests, 2);
    /// assert_eq!(taken[0].failures, 1);
    /// assert!(edges.take().is_empty(), "taken, and nothing since");
    /// ```
    pub fn edge(&self, direction: Direction, source: &str, destination: &str) -> EdgeRecorder {
        let edge = Edge {
            direction,
            source: source.into(),
            destination: destination.into(),
        };
        let mut table = self.table();
        if let Some(recorder) = table.edges.get(&edge) {
            return recorder.clone();
        }
        let edge = if table.edges.len() + 1 >= table.max {
            Edge {
                direction,
                source: OVERFLOW.into(),
                destination: OVERFLOW.into(),
            }
        } else {
            edge
        };
        table
            .edges
            .entry(edge)
            .or_insert_with(|| EdgeRecorder(Arc::default()))
            .clone()
    }

    /// What each edge did since the last take, edges with no requests
    /// left out, sorted by edge.
    pub fn take(&self) -> Vec<EdgeStats> {
        let table = self.table();
        let mut taken: Vec<EdgeStats> = table
            .edges
            .iter()
            .filter_map(|(edge, recorder)| {
                let c = &recorder.0;
                let requests = c.requests.swap(0, Relaxed);
                if requests == 0 {
                    return None;
                }
                Some(EdgeStats {
                    edge: edge.clone(),
                    requests,
                    failures: c.failures.swap(0, Relaxed),
                    latency: LatencyHistogram {
                        counts: c.latency.iter().map(|b| b.swap(0, Relaxed)).collect(),
                        sum_micros: c.latency_sum_micros.swap(0, Relaxed),
                    },
                })
            })
            .collect();
        drop(table);
        taken.sort_by(|a, b| a.edge.cmp(&b.edge));
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_edges_share_the_overflow_edge() {
        let edges = Edges::with_max(3);
        for caller in ["a", "b", "c", "d"] {
            edges
                .edge(Direction::Inbound, caller, "reviews")
                .record(true, Duration::from_millis(1));
        }
        let taken = edges.take();
        assert_eq!(taken.len(), 3);
        let overflow = taken
            .iter()
            .find(|s| &*s.edge.source == OVERFLOW)
            .map(|s| s.requests);
        assert_eq!(overflow, Some(2), "{taken:?}");
    }

    #[test]
    fn quantiles_follow_the_buckets() {
        let edges = Edges::default();
        let r = edges.edge(Direction::Outbound, "cart", "reviews");
        for _ in 0..99 {
            r.record(true, Duration::from_micros(800));
        }
        r.record(true, Duration::from_secs(2));
        let taken = edges.take();
        let h = &taken[0].latency;
        let p50 = h.quantile(0.5).unwrap_or_default();
        assert!(p50 > Duration::from_micros(500) && p50 <= Duration::from_millis(1));
        let p999 = h.quantile(0.999).unwrap_or_default();
        assert!(p999 > Duration::from_secs(1), "{p999:?}");
        assert_eq!(h.sum_micros, 99 * 800 + 2_000_000);
        assert_eq!(taken[0].success_rate(), Some(1.0));
    }
}
