//! Load balancing: picking one endpoint of a cluster for each request.
//!
//! A [`Picker`] is built from a cluster's endpoints ([`PickerEndpoint`]:
//! weight, address, and a shared [`EndpointLoad`]) whenever the endpoint
//! set changes, and then answers [`Picker::pick`] without locks:
//!
//! | policy | how | cost of a pick |
//! |---|---|---|
//! | P2C Peak-EWMA (default) | two weighted-random candidates, the one with the lower `latency × (in flight + 1) / weight` wins | O(1) |
//! | least request | the same on in-flight requests alone | O(1) |
//! | round robin | a precomputed smooth weighted sequence, walked by an atomic counter | O(1) |
//! | random | weighted, by Vose's alias method | O(1) |
//! | ring hash | consistent hashing on a ring of weighted points (xxHash64) | O(log ring) |
//! | maglev | Google's Maglev table (xxHash64) | O(1) |
//!
//! [`EndpointLoad`] lives outside the picker, shared by `Arc`, so that a
//! rebuilt picker keeps each surviving endpoint's latency estimate and
//! in-flight count.
//!
//! ```
//! use std::sync::Arc;
//! use sinew::balance::{EndpointLoad, Picker, PickerEndpoint};
//! use sinew::config::LbPolicy;
//!
//! let endpoints: Vec<PickerEndpoint> = (0..3)
//!     .map(|i| PickerEndpoint {
//!         address: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
//!         weight: 1,
//!         load: Arc::new(EndpointLoad::default()),
//!     })
//!     .collect();
//! let picker = Picker::build(&LbPolicy::Maglev { header: None }, &endpoints);
//! let first = picker.pick(Some(42));
//! assert!(first.is_some());
//! assert_eq!(picker.pick(Some(42)), first, "the same key, the same endpoint");
//! ```

mod alias;
mod hash;
mod load;
mod maglev;
mod p2c;
mod ring;
mod round_robin;

pub use hash::hash_key;
pub use load::{EndpointLoad, InFlight};

use crate::config::LbPolicy;
use alias::Alias;
use maglev::Maglev;
use p2c::{Cost, P2c};
use ring::Ring;
use round_robin::RoundRobin;
use std::net::SocketAddr;
use std::sync::Arc;

/// What a picker needs to know of one endpoint.
#[derive(Clone, Debug)]
pub struct PickerEndpoint {
    /// Its address: hashed by the consistent-hashing pickers.
    pub address: SocketAddr,
    /// Its weight (at least 1).
    pub weight: u32,
    /// Its load, shared with the requests sent to it.
    pub load: Arc<EndpointLoad>,
}

/// A built picker for one set of endpoints. See the [module docs](self).
#[derive(Debug)]
pub struct Picker {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Empty,
    P2c(P2c),
    RoundRobin(RoundRobin),
    Random(Alias),
    Ring(Ring),
    Maglev(Maglev),
}

impl Picker {
    /// Builds the picker `policy` names for `endpoints`.
    pub fn build(policy: &LbPolicy, endpoints: &[PickerEndpoint]) -> Self {
        if endpoints.is_empty() {
            return Self {
                inner: Inner::Empty,
            };
        }
        let inner = match policy {
            LbPolicy::P2cEwma => Inner::P2c(P2c::new(endpoints, Cost::PeakEwma)),
            LbPolicy::LeastRequest => Inner::P2c(P2c::new(endpoints, Cost::InFlight)),
            LbPolicy::RoundRobin => Inner::RoundRobin(RoundRobin::new(endpoints)),
            LbPolicy::Random => Inner::Random(Alias::new(endpoints)),
            LbPolicy::RingHash { min_ring_size, .. } => {
                Inner::Ring(Ring::new(endpoints, *min_ring_size as usize))
            }
            LbPolicy::Maglev { .. } => Inner::Maglev(Maglev::new(endpoints)),
        };
        Self { inner }
    }

    /// The index (into the endpoints it was built from) of the endpoint for
    /// the next request; `None` when there are no endpoints. `hash` is the
    /// request's key for the consistent-hashing pickers (see
    /// [`hash_key`]); the others ignore it, and the hashing pickers pick at
    /// random without one.
    #[inline]
    pub fn pick(&self, hash: Option<u64>) -> Option<usize> {
        match &self.inner {
            Inner::Empty => None,
            Inner::P2c(p) => Some(p.pick()),
            Inner::RoundRobin(p) => Some(p.pick()),
            Inner::Random(p) => Some(p.sample()),
            Inner::Ring(p) => Some(p.pick(hash.unwrap_or_else(|| fastrand::u64(..)))),
            Inner::Maglev(p) => Some(p.pick(hash.unwrap_or_else(|| fastrand::u64(..)))),
        }
    }
}

#[cfg(test)]
mod tests;
