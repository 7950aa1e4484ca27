//! A breaker's series, through the `metrics` facade:
//!
//! - `sinew_breaker_transitions_total{…, from, to}`: changes of state;
//! - `sinew_breaker_state{…, state}`: 1 for the state the breaker is in,
//!   0 for the others (`closed`, `open`, `half_open`).
//!
//! `…` is the label set given to [`BreakerLayer::with_metric_labels`]
//! (the mesh gives `cluster`). Every handle is registered when the layer
//! is labelled; a transition then costs an atomic add and three stores.

use super::layer::BreakerLayer;
use super::state::{State, Transition};
use metrics::{Counter, Gauge, Label};

/// Changes of state.
pub(crate) const TRANSITIONS: &str = "sinew_breaker_transitions_total";
/// The state, one series per state.
pub(crate) const STATE: &str = "sinew_breaker_state";

const STATES: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

/// `closed`, `open` or `half_open`, as the labels spell it.
pub(crate) fn state_label(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Open => "open",
        State::HalfOpen => "half_open",
    }
}

fn index(state: State) -> usize {
    match state {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
    }
}

struct BreakerMetrics {
    /// By from, by to (the diagonal is never counted).
    transitions: [[Counter; 3]; 3],
    states: [Gauge; 3],
}

impl BreakerMetrics {
    fn new(labels: &[Label]) -> Self {
        metrics::describe_counter!(
            TRANSITIONS,
            "Circuit breaker changes of state, by cluster, from and to"
        );
        metrics::describe_gauge!(
            STATE,
            "1 for the state a circuit breaker is in (closed, open, half_open), 0 for the others"
        );
        let with = |extra: &[(&'static str, State)]| {
            let mut all = labels.to_vec();
            all.extend(
                extra
                    .iter()
                    .map(|(k, s)| Label::from_static_parts(k, state_label(*s))),
            );
            all
        };
        Self {
            transitions: STATES.map(|from| {
                STATES.map(|to| metrics::counter!(TRANSITIONS, with(&[("from", from), ("to", to)])))
            }),
            states: STATES.map(|s| metrics::gauge!(STATE, with(&[("state", s)]))),
        }
    }

    fn show(&self, state: State) {
        for (s, gauge) in STATES.iter().zip(&self.states) {
            gauge.set(if *s == state { 1.0 } else { 0.0 });
        }
    }

    fn record(&self, transition: Transition) {
        self.transitions[index(transition.from)][index(transition.to)].increment(1);
        self.show(transition.to);
    }
}

impl<C> BreakerLayer<C> {
    /// Counts this breaker's transitions and shows its state through the
    /// `metrics` facade under `labels` (besides `from`, `to` and
    /// `state`), e.g. the cluster it guards. Keep the values few: names
    /// from configuration, never per-request values.
    ///
    /// ```
    /// use sinew::breaker::{BreakerConfig, BreakerLayer};
    ///
    /// let layer = BreakerLayer::new(BreakerConfig::default())
    ///     .unwrap()
    ///     .with_metric_labels([("cluster", "reviews")]);
    /// # let _ = layer;
    /// ```
    pub fn with_metric_labels<K, V>(self, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<metrics::SharedString>,
        V: Into<metrics::SharedString>,
    {
        let labels: Vec<Label> = labels.into_iter().map(|(k, v)| Label::new(k, v)).collect();
        let metrics = BreakerMetrics::new(&labels);
        metrics.show(self.state());
        self.on_transition(move |t| metrics.record(t))
    }
}
