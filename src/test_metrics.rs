//! What a test's own recorder captured: a `metrics-util`
//! `DebuggingRecorder` made local to the test (never the global one, so
//! that tests running side by side do not see each other's series).

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// A local recorder and the means to read it.
pub(crate) struct Captured {
    pub(crate) recorder: DebuggingRecorder,
    snapshotter: Snapshotter,
}

/// A series: its name, labels and value.
type Series = (String, Vec<(String, String)>, f64);

/// One reading: every series with its labels and value.
#[derive(Debug)]
pub(crate) struct Values(Vec<Series>);

impl Captured {
    pub(crate) fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Self {
            recorder,
            snapshotter,
        }
    }

    /// Runs `f` with this recorder as the thread's: handles registered
    /// there report here wherever they are used afterwards.
    pub(crate) fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The values since the last reading (the recorder resets counters
    /// and gauges as it is read).
    pub(crate) fn take(&self) -> Values {
        Values(
            self.snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let (_, key) = key.into_parts();
                    let labels = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    let value = match value {
                        DebugValue::Counter(n) => n as f64,
                        DebugValue::Gauge(g) => g.into_inner(),
                        DebugValue::Histogram(h) => h.len() as f64,
                    };
                    (key.name().to_owned(), labels, value)
                })
                .collect(),
        )
    }
}

impl Values {
    /// The sum of the series named `name` that carry every one of
    /// `labels`; `None` when there is none.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, ls, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// The label names of every series named `name`.
    pub(crate) fn label_names(&self, name: &str) -> Vec<Vec<String>> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, ls, _)| ls.iter().map(|(k, _)| k.clone()).collect())
            .collect()
    }
}
