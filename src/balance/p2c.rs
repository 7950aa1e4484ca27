//! Power of two choices: two weighted-random candidates, the cheaper wins.

use super::alias::Alias;
use super::{EndpointLoad, PickerEndpoint};
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
pub(super) enum Cost {
    /// Latency estimate × (in flight + 1).
    PeakEwma,
    /// In flight.
    InFlight,
}

#[derive(Debug)]
pub(super) struct P2c {
    /// Weighted sampling; `None` when every weight is the same, which
    /// saves two table reads (cache misses, at scale) per pick.
    weighted: Option<(Alias, Vec<f64>)>,
    loads: Vec<Arc<EndpointLoad>>,
    cost: Cost,
}

impl P2c {
    pub(super) fn new(endpoints: &[PickerEndpoint], cost: Cost) -> Self {
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        Self {
            weighted: (!uniform).then(|| {
                let weights = endpoints
                    .iter()
                    .map(|e| f64::from(e.weight.max(1)))
                    .collect();
                (Alias::new(endpoints), weights)
            }),
            loads: endpoints.iter().map(|e| e.load.clone()).collect(),
            cost,
        }
    }

    #[inline]
    fn candidate(&self) -> usize {
        match &self.weighted {
            Some((alias, _)) => alias.sample(),
            None => fastrand::usize(..self.loads.len()),
        }
    }

    #[inline]
    fn cost_of(&self, i: usize) -> f64 {
        let load = &self.loads[i];
        let cost = match self.cost {
            Cost::PeakEwma => load.cost(),
            Cost::InFlight => f64::from(load.inflight()),
        };
        match &self.weighted {
            Some((_, weights)) => cost / weights[i],
            None => cost,
        }
    }

    #[inline]
    pub(super) fn pick(&self) -> usize {
        let a = self.candidate();
        if self.loads.len() == 1 {
            return a;
        }
        let mut b = self.candidate();
        if b == a {
            // One retry is enough to make a repeat rare; a repeat just
            // means this pick has one candidate.
            b = self.candidate();
        }
        if self.cost_of(b) < self.cost_of(a) {
            b
        } else {
            a
        }
    }
}
