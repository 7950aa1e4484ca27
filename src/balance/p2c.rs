//! Power of two choices: two weighted-random candidates, the cheaper wins.

use super::alias::Alias;
use super::{EndpointLoad, PickerChange, PickerEndpoint};
use crate::cow_list::CowList;
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
    /// The loads, in a list whose versions share what they do not change,
    /// so that a one-endpoint change does not copy the rest.
    loads: CowList<Arc<EndpointLoad>>,
    /// The weight every endpoint has, when they all have the same.
    uniform: Option<u32>,
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
            uniform: uniform.then(|| endpoints.first().map_or(1, |e| e.weight)),
            cost,
        }
    }

    /// This picker with one change, when its endpoints keep one weight;
    /// `None` when it must be rebuilt.
    pub(super) fn changed(&self, change: &PickerChange<'_>) -> Option<Self> {
        let weight = self.uniform?;
        let mut loads = self.loads.clone();
        match change {
            PickerChange::Replaced(i, e) if e.weight == weight => {
                loads.set(*i, e.load.clone())?;
            }
            PickerChange::Added(e) if e.weight == weight => loads.push(e.load.clone()),
            PickerChange::Removed(i) => {
                loads.swap_remove(*i)?;
            }
            _ => return None,
        }
        (!loads.is_empty()).then_some(Self {
            weighted: None,
            loads,
            uniform: Some(weight),
            cost: self.cost,
        })
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
        let Some(load) = self.loads.get(i) else {
            return f64::INFINITY;
        };
        let cost = match self.cost {
            Cost::PeakEwma => load.cost(),
            Cost::InFlight => f64::from(load.inflight()),
        };
        match &self.weighted {
            Some((_, weights)) => cost / weights.get(i).copied().unwrap_or(1.0),
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
