//! Load balancing: picking one endpoint of a cluster for each request,
//! as pickers and as a tower layer usable alone.
//!
//! A [`Picker`] is built from a cluster's endpoints ([`PickerEndpoint`]:
//! weight, address, and a shared [`EndpointLoad`]) whenever the endpoint
//! set changes, and then answers [`Picker::pick`] without locks:
//!
//! | policy | how | cost of a pick | size of its table (N endpoints) |
//! |---|---|---|---|
//! | P2C Peak-EWMA (default) | two weighted-random candidates, the one with the lower `latency × (in flight + 1) / weight` wins | O(1) | an alias table of N when weights differ |
//! | least request | the same on in-flight requests alone | O(1) | the same |
//! | round robin | a precomputed smooth weighted sequence, walked by an atomic counter | O(1) | at most 65,536 + N turns when weights differ, built in O(turns × log N) |
//! | random | weighted, by Vose's alias method | O(1) | N |
//! | ring hash | consistent hashing on a ring of weighted points (xxHash64) | O(log ring) | fewer than 2 × `min_ring_size` + N points |
//! | maglev | Google's Maglev table (xxHash64) | O(1) | the first prime ≥ max(65,537, 13 × N) |
//!
//! Every table is bounded by the number of endpoints, never by their
//! weights: weights are scaled down (keeping at least one entry per
//! endpoint) where their sum would pass the bound.
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
//!
//! # The balance layer
//!
//! [`BalanceLayer`] balances any HTTP service (a hyper-util client, say)
//! over an [`EndpointSet`], with no `Mesh` needed: each
//! request goes to the endpoint the set's policy picks, its URI pointed at
//! the endpoint's address (path and query kept); it counts as in flight on
//! the endpoint until its response body ends, and its time to the response
//! head feeds Peak-EWMA. An empty set fails requests with [`NoEndpoint`],
//! which [`never_processed`](crate::classify::never_processed) knows was
//! not sent. The hot path allocates nothing.
//!
//! The set can change at any time, under load: by hand
//! ([`EndpointSet::insert`], [`remove`](EndpointSet::remove),
//! [`replace`](EndpointSet::replace)), or fed by tower's
//! [`Discover`](tower::discover::Discover) ([`EndpointSet::feed`]) or a
//! watch channel ([`EndpointSet::follow`]). A change reaches the picker
//! incrementally where the policy allows; endpoints that stay keep their
//! load; a removed endpoint gets no request picked after the change.
//!
//! ```
//! use sinew::balance::{BalanceLayer, EndpointSet};
//! use sinew::config::LbPolicy;
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sinew::error::ConfigError> {
//! let set = EndpointSet::new(LbPolicy::P2cEwma)?;
//! // Endpoints from wherever they are discovered.
//! let (endpoints, watched) = tokio::sync::watch::channel(vec![
//!     ("127.0.0.1:8080".parse().unwrap(), 1),
//!     ("127.0.0.1:8081".parse().unwrap(), 1),
//! ]);
//! tokio::spawn(set.follow(watched));
//!
//! let client = hyper_util::client::legacy::Client::builder(
//!     hyper_util::rt::TokioExecutor::new(),
//! )
//! .build_http::<http_body_util::Empty<bytes::Bytes>>();
//! let balanced = ServiceBuilder::new()
//!     .layer(BalanceLayer::new(set.clone()))
//!     .service(client);
//! // balanced.oneshot(Request::get("/items").body(Empty::new())?).await
//! # let _ = (balanced, endpoints);
//! # Ok(()) }
//! ```
//!
//! Unlike `tower::balance`, which holds one service per endpoint, the
//! layer holds addresses and sends every request through one inner
//! service, whose pool keeps connections per address: see ADR 0010.

mod alias;
mod body;
mod edf;
mod edit;
mod error;
mod feed;
mod future;
mod hash;
mod layer;
mod load;
mod maglev;
mod p2c;
mod ring;
mod round_robin;
mod set;

pub use body::BalanceBody;
pub(crate) use body::has_ended;
pub use error::NoEndpoint;
pub use future::ResponseFuture;
pub use hash::{HashKey, hash_key};
pub use layer::{Balance, BalanceLayer, ServedBy};
pub use load::{EndpointLoad, InFlight};
pub use set::EndpointSet;
pub(crate) use set::shared_authority;

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

/// One change to the endpoints a picker was built from, for
/// [`Picker::changed`]. Indices are those of the list before the change;
/// a removal moves the last endpoint into the gap (as
/// [`Vec::swap_remove`] does).
#[derive(Clone, Copy, Debug)]
pub enum PickerChange<'a> {
    /// The endpoint at this index is now this one.
    Replaced(usize, &'a PickerEndpoint),
    /// This endpoint joins, at the end.
    Added(&'a PickerEndpoint),
    /// The endpoint at this index leaves; the last takes its index.
    Removed(usize),
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
    /// Random among `n` endpoints of equal weight: no table.
    Uniform {
        n: usize,
        weight: u32,
    },
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
            LbPolicy::Random if endpoints.windows(2).all(|w| w[0].weight == w[1].weight) => {
                Inner::Uniform {
                    n: endpoints.len(),
                    weight: endpoints[0].weight,
                }
            }
            LbPolicy::Random => Inner::Random(Alias::new(endpoints)),
            LbPolicy::RingHash { min_ring_size, .. } => {
                Inner::Ring(Ring::new(endpoints, *min_ring_size as usize))
            }
            LbPolicy::Maglev { .. } => Inner::Maglev(Maglev::new(endpoints)),
        };
        Self { inner }
    }

    /// This picker with one change to its endpoints, made in time that
    /// does not grow with their number, or `None` when the change needs a
    /// [`Picker::build`]. The cheap path is taken by P2C, least request,
    /// round robin and random while every endpoint has the same weight;
    /// weighted variants and the hashing pickers rebuild their tables.
    /// Loads are kept; round robin goes on from where it was.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sinew::balance::{EndpointLoad, Picker, PickerChange, PickerEndpoint};
    /// use sinew::config::LbPolicy;
    ///
    /// let endpoint = |port| PickerEndpoint {
    ///     address: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
    ///     weight: 1,
    ///     load: Arc::new(EndpointLoad::default()),
    /// };
    /// let picker = Picker::build(&LbPolicy::RoundRobin, &[endpoint(1), endpoint(2)]);
    /// let third = endpoint(3);
    /// let next = picker.changed(&PickerChange::Added(&third)).unwrap();
    /// let mut seen: Vec<usize> = (0..3).map(|_| next.pick(None).unwrap()).collect();
    /// seen.sort();
    /// assert_eq!(seen, [0, 1, 2]);
    /// ```
    pub fn changed(&self, change: &PickerChange<'_>) -> Option<Self> {
        let inner = match (&self.inner, change) {
            (Inner::P2c(p), _) => Inner::P2c(p.changed(change)?),
            (Inner::RoundRobin(p), _) => Inner::RoundRobin(p.changed(change)?),
            (&Inner::Uniform { n, weight }, change) => {
                let n = match change {
                    PickerChange::Replaced(i, e) if *i < n && e.weight == weight => n,
                    PickerChange::Added(e) if e.weight == weight => n + 1,
                    PickerChange::Removed(i) if *i < n && n > 1 => n - 1,
                    _ => return None,
                };
                Inner::Uniform { n, weight }
            }
            _ => return None,
        };
        Some(Self { inner })
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
            Inner::Uniform { n, .. } => Some(fastrand::usize(..*n)),
            Inner::Ring(p) => Some(p.pick(hash.unwrap_or_else(|| fastrand::u64(..)))),
            Inner::Maglev(p) => Some(p.pick(hash.unwrap_or_else(|| fastrand::u64(..)))),
        }
    }
}

#[cfg(test)]
mod layer_tests;
#[cfg(test)]
mod set_tests;
#[cfg(test)]
mod tests;
