//! The rolling window of pushed edge metrics: per edge, the last
//! `window` in buckets of `bucket`, in bounded memory.
//!
//! Each edge holds at most `window / bucket` buckets (older ones fall off
//! as time moves), and at most `max_edges` edges are kept: a new edge past
//! the cap first makes room by forgetting edges with nothing left in the
//! window, then by dropping the edge updated longest ago, counted in
//! [`Window::evicted`]. Memory is thus `max_edges × buckets × one
//! histogram`, whatever the workloads send.

use super::options::TelemetryOptions;
use serde::Serialize;
use sinew::telemetry::edges::{Direction, LatencyHistogram};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// One edge as pushed: who called whom, seen from which side.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) source: String,
    pub(crate) destination: String,
    pub(crate) direction: Direction,
}

/// What one export says of one edge.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Delta {
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) latency: LatencyHistogram,
}

#[derive(Debug)]
struct Bucket {
    index: u64,
    delta: Delta,
}

#[derive(Debug)]
struct Series {
    buckets: VecDeque<Bucket>,
    first_seen: Instant,
    last_update: Instant,
}

/// An edge's figures over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeSummary {
    /// Requests in the window.
    pub requests: u64,
    /// Of those, failures.
    pub failures: u64,
    /// Requests per second, over the part of the window the edge was seen
    /// in (at least one bucket).
    pub rps: f64,
    /// The share of requests that succeeded; `None` without requests.
    pub success_rate: Option<f64>,
    /// The median latency, in milliseconds.
    pub p50_ms: Option<f64>,
    /// The 99th percentile latency, in milliseconds.
    pub p99_ms: Option<f64>,
}

/// Per edge, the last `window` of pushed metrics.
#[derive(Debug)]
pub(crate) struct Window {
    origin: Instant,
    bucket: Duration,
    buckets: u64,
    max_edges: usize,
    series: BTreeMap<Key, Series>,
    /// Edges dropped to make room for new ones.
    pub(crate) evicted: u64,
}

impl Window {
    pub(crate) fn new(options: &TelemetryOptions, now: Instant) -> Self {
        Self {
            origin: now,
            bucket: options.bucket,
            buckets: options.buckets(),
            max_edges: options.max_edges,
            series: BTreeMap::new(),
            evicted: 0,
        }
    }

    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        (elapsed / self.bucket.as_nanos().max(1)) as u64
    }

    /// The first bucket index still in the window at `index`.
    fn oldest(&self, index: u64) -> u64 {
        (index + 1).saturating_sub(self.buckets)
    }

    /// Adds what an export said of `key` at `now`.
    pub(crate) fn record(&mut self, now: Instant, key: Key, delta: &Delta) {
        let index = self.index(now);
        if !self.series.contains_key(&key) && self.series.len() >= self.max_edges {
            self.make_room(index);
        }
        let series = self.series.entry(key).or_insert_with(|| Series {
            buckets: VecDeque::new(),
            first_seen: now,
            last_update: now,
        });
        series.last_update = now;
        match series.buckets.back_mut() {
            Some(last) if last.index == index => merge(&mut last.delta, delta),
            _ => series.buckets.push_back(Bucket {
                index,
                delta: delta.clone(),
            }),
        }
        let oldest = (index + 1).saturating_sub(self.buckets);
        while series.buckets.front().is_some_and(|b| b.index < oldest) {
            series.buckets.pop_front();
        }
    }

    /// Frees one place: edges with nothing left in the window go first,
    /// then the edge updated longest ago (counted).
    fn make_room(&mut self, index: u64) {
        let oldest = self.oldest(index);
        self.series
            .retain(|_, s| s.buckets.back().is_some_and(|b| b.index >= oldest));
        if self.series.len() < self.max_edges {
            return;
        }
        let stalest = self
            .series
            .iter()
            .min_by_key(|(_, s)| s.last_update)
            .map(|(k, _)| k.clone());
        if let Some(key) = stalest {
            self.series.remove(&key);
            self.evicted += 1;
        }
    }

    /// How many edges are kept.
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// Every edge with requests in the window at `now`, with its figures.
    pub(crate) fn summaries(&self, now: Instant) -> Vec<(Key, EdgeSummary)> {
        let index = self.index(now);
        let oldest = self.oldest(index);
        let window = self.bucket * self.buckets as u32;
        self.series
            .iter()
            .filter_map(|(key, series)| {
                let mut total = Delta::default();
                for bucket in series.buckets.iter().filter(|b| b.index >= oldest) {
                    merge(&mut total, &bucket.delta);
                }
                if total.requests == 0 {
                    return None;
                }
                // Over the time the edge was seen, so that a fresh edge's
                // rate is not diluted by the part of the window before it.
                let seen = now
                    .saturating_duration_since(series.first_seen)
                    .clamp(self.bucket, window);
                let ms = |q: f64| total.latency.quantile(q).map(|d| d.as_secs_f64() * 1e3);
                Some((
                    key.clone(),
                    EdgeSummary {
                        requests: total.requests,
                        failures: total.failures,
                        rps: total.requests as f64 / seen.as_secs_f64(),
                        success_rate: (total.requests > 0)
                            .then(|| 1.0 - total.failures as f64 / total.requests as f64),
                        p50_ms: ms(0.5),
                        p99_ms: ms(0.99),
                    },
                ))
            })
            .collect()
    }
}

fn merge(into: &mut Delta, from: &Delta) {
    into.requests = into.requests.saturating_add(from.requests);
    into.failures = into.failures.saturating_add(from.failures);
    into.latency.merge(&from.latency);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew::telemetry::edges::LATENCY_BOUNDS_MICROS;

    fn key(source: &str) -> Key {
        Key {
            source: source.to_owned(),
            destination: "reviews".to_owned(),
            direction: Direction::Outbound,
        }
    }

    fn delta(requests: u64, failures: u64) -> Delta {
        let mut counts = vec![0; LATENCY_BOUNDS_MICROS.len() + 1];
        counts[3] = requests;
        Delta {
            requests,
            failures,
            latency: LatencyHistogram {
                counts,
                sum_micros: requests * 800,
            },
        }
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let now = Instant::now();
        let mut window = Window::new(&TelemetryOptions::default(), now);
        window.record(now, key("cart"), &delta(100, 10));
        let later = now + Duration::from_secs(60);
        window.record(later, key("cart"), &delta(50, 0));
        let s = &window.summaries(later)[0].1;
        assert_eq!((s.requests, s.failures), (150, 10));
        assert!((s.rps - 2.5).abs() < 1e-9, "{s:?}");
        let p50 = s.p50_ms.unwrap_or_default();
        assert!(p50 > 0.5 && p50 <= 1.0, "{s:?}");
        // Five minutes after the first export, only the second is left.
        let s = &window.summaries(now + Duration::from_secs(305))[0].1;
        assert_eq!((s.requests, s.failures), (50, 0));
        assert!(window.summaries(now + Duration::from_secs(400)).is_empty());
        let series = &window.series[&key("cart")];
        assert!(series.buckets.len() <= 30);
    }

    #[test]
    fn edges_past_the_cap_evict_the_stalest() {
        let options = TelemetryOptions {
            max_edges: 2,
            ..Default::default()
        };
        let now = Instant::now();
        let mut window = Window::new(&options, now);
        window.record(now, key("a"), &delta(1, 0));
        window.record(now + Duration::from_secs(1), key("b"), &delta(1, 0));
        window.record(now + Duration::from_secs(2), key("c"), &delta(1, 0));
        assert_eq!(window.len(), 2);
        assert_eq!(window.evicted, 1);
        let kept: Vec<String> = window
            .summaries(now + Duration::from_secs(2))
            .into_iter()
            .map(|(k, _)| k.source)
            .collect();
        assert_eq!(kept, ["b", "c"]);
        // An edge gone quiet makes room without counting as evicted.
        let much_later = now + Duration::from_secs(1000);
        window.record(much_later, key("d"), &delta(1, 0));
        assert_eq!(window.evicted, 1);
    }
}
