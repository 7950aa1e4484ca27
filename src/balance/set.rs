//! A set of endpoints that changes while requests pick from it.
//!
//! Requests read one immutable [`Version`] (the picker and the endpoints it
//! indexes) from an `ArcSwap`; a [`Balance`](super::Balance) service keeps
//! the version it used last and checks one version number per request
//! ([`EndpointSet::refresh`]). Changes are made one writer at a
//! time under a mutex that also guards the address index, and publish the
//! next version (edit.rs). The endpoints sit in a [`CowList`] (ADR 0005), so a
//! one-endpoint change copies one chunk of 256, and the picker takes the
//! change itself where it can ([`Picker::changed`]); otherwise, or past
//! 32 changes at once, the picker is rebuilt. Either way an
//! endpoint that stays keeps its [`EndpointLoad`].

use super::edit::Op;
use super::{EndpointLoad, HashKey, Picker, PickerEndpoint, hash_key};
use crate::addr_hash::{AddrMap, addr_map};
use crate::config::LbPolicy;
use crate::cow_list::CowList;
use crate::error::ConfigError;
use arc_swap::ArcSwap;
use http::uri::Authority;
use http::{HeaderName, Request};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;
use tower::discover::Change;

/// A set of endpoints to balance requests over, shared by every
/// [`Balance`](super::Balance) service made from it and cheap to clone (an
/// `Arc`). It can change at any time, while requests pick from it: by
/// [`insert`](Self::insert), [`remove`](Self::remove),
/// [`replace`](Self::replace) and [`apply`](Self::apply), or fed by a
/// [`Discover`](tower::discover::Discover) stream ([`feed`](Self::feed)) or
/// a watch channel ([`follow`](Self::follow)).
///
/// A change costs about its own size when the policy's picker can take it
/// as it is (P2C, least request, round robin and random while every
/// endpoint has the same weight); otherwise (weights differ, ring hash,
/// Maglev, or more than 32 changes at once) the picker is rebuilt,
/// O(endpoints). An endpoint that stays keeps its [`EndpointLoad`]: its
/// latency estimate and requests in flight.
///
/// ```
/// use sinew::balance::EndpointSet;
/// use sinew::config::LbPolicy;
///
/// # fn main() -> Result<(), sinew::error::ConfigError> {
/// let set = EndpointSet::new(LbPolicy::RoundRobin)?;
/// set.insert("127.0.0.1:8080".parse().unwrap(), 1);
/// set.insert("127.0.0.1:8081".parse().unwrap(), 3);
/// assert_eq!(set.len(), 2);
/// set.remove("127.0.0.1:8080".parse().unwrap());
/// assert_eq!(set.endpoints(), ["127.0.0.1:8081".parse().unwrap()]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EndpointSet {
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) policy: LbPolicy,
    /// Where a request's key comes from, for the hashing policies.
    hash: HashSource,
    /// Whether requests are timed: only Peak-EWMA reads latency, and two
    /// clock readings are a large part of the layer's cost.
    timed: bool,
    pub(super) current: ArcSwap<Version>,
    /// The number of the version last stored in `current`, for services
    /// that keep a version between requests (see [`EndpointSet::refresh`]).
    pub(super) published: AtomicU64,
    /// The index of each endpoint in the current version, by address.
    /// Held by the one writer at a time.
    writer: Mutex<AddrMap<usize>>,
    pub(super) versions: watch::Sender<u64>,
    /// Never sent on: its receivers learn that the set is gone when it
    /// drops, which ends the feeds.
    gone: watch::Sender<()>,
}

#[derive(Clone, Debug)]
enum HashSource {
    /// The policy does not hash.
    None,
    /// A [`HashKey`] extension.
    Key,
    /// This header, or else a [`HashKey`] extension.
    Header(HeaderName),
}

/// One published state of the set: the picker and the endpoints whose
/// indices it picks.
pub(super) struct Version {
    pub(super) picker: Picker,
    pub(super) endpoints: CowList<Entry>,
    /// One more than the version it was made from.
    pub(super) number: u64,
}

/// One endpoint, with what a request needs of it made ahead of time.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) address: SocketAddr,
    pub(super) weight: u32,
    /// The address as a URI authority: cloning it is a reference count,
    /// where formatting the address would allocate per request.
    pub(super) authority: Authority,
    pub(super) load: Arc<EndpointLoad>,
}

impl Entry {
    pub(super) fn new(address: SocketAddr, weight: u32) -> Option<Self> {
        let authority = shared_authority(address)?;
        Some(Self {
            address,
            weight,
            authority,
            load: Arc::default(),
        })
    }

    pub(super) fn picker_endpoint(&self) -> PickerEndpoint {
        PickerEndpoint {
            address: self.address,
            weight: self.weight,
            load: self.load.clone(),
        }
    }
}

impl EndpointSet {
    /// An empty set balanced by `policy`. Fails, naming the field, when
    /// the policy's hash header is not a valid header name or its ring
    /// size is out of range (1 to 65,536).
    ///
    /// ```
    /// use sinew::balance::EndpointSet;
    /// use sinew::config::LbPolicy;
    ///
    /// let bad = EndpointSet::new(LbPolicy::Maglev { header: Some("bad header".into()) });
    /// assert_eq!(bad.err().map(|e| e.field().to_owned()).as_deref(), Some("lb.header"));
    /// ```
    pub fn new(policy: LbPolicy) -> Result<Self, ConfigError> {
        let hash = match &policy {
            LbPolicy::RingHash { header, .. } | LbPolicy::Maglev { header } => match header {
                Some(name) => {
                    HashSource::Header(HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        ConfigError::new(
                            "lb.header",
                            format!("`{name}` is not a valid header name"),
                        )
                    })?)
                }
                None => HashSource::Key,
            },
            _ => HashSource::None,
        };
        if let LbPolicy::RingHash { min_ring_size, .. } = &policy
            && !(1..=crate::config::MAX_RING_SIZE).contains(min_ring_size)
        {
            return Err(ConfigError::new(
                "lb.min_ring_size",
                format!("must be between 1 and {}", crate::config::MAX_RING_SIZE),
            ));
        }
        Ok(Self::with(policy, hash))
    }

    fn with(policy: LbPolicy, hash: HashSource) -> Self {
        let empty = Version {
            picker: Picker::build(&policy, &[]),
            endpoints: CowList::default(),
            number: 0,
        };
        Self {
            shared: Arc::new(Shared {
                timed: policy == LbPolicy::P2cEwma,
                policy,
                hash,
                current: ArcSwap::from_pointee(empty),
                published: AtomicU64::new(0),
                writer: Mutex::new(addr_map(0)),
                versions: watch::Sender::new(0),
                gone: watch::Sender::new(()),
            }),
        }
    }

    /// The policy the set balances by.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// assert_eq!(*set.policy(), sinew::config::LbPolicy::P2cEwma);
    /// ```
    pub fn policy(&self) -> &LbPolicy {
        &self.shared.policy
    }

    /// Adds the endpoint at `address` with `weight` (0 counts as 1), or
    /// changes the weight of the one there; `true` when it is new. An
    /// endpoint already there keeps its load.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let address = "127.0.0.1:8080".parse().unwrap();
    /// assert!(set.insert(address, 1));
    /// assert!(!set.insert(address, 5), "a new weight, the same endpoint");
    /// ```
    pub fn insert(&self, address: SocketAddr, weight: u32) -> bool {
        self.edit([Op::Upsert(address, weight)]).added > 0
    }

    /// Removes the endpoint at `address`; `true` when it was there. New
    /// requests no longer pick it; those already sent to it go on.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let address = "127.0.0.1:8080".parse().unwrap();
    /// set.insert(address, 1);
    /// assert!(set.remove(address));
    /// assert!(set.is_empty());
    /// ```
    pub fn remove(&self, address: SocketAddr) -> bool {
        self.edit([Op::Remove(address)]).removed > 0
    }

    /// Makes the set exactly `endpoints` (address and weight; for an
    /// address given twice, the last weight), in one change: endpoints
    /// that stay keep their load.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let a = "127.0.0.1:8080".parse().unwrap();
    /// let b = "127.0.0.1:8081".parse().unwrap();
    /// set.insert(a, 1);
    /// set.replace([(b, 1)]);
    /// assert_eq!(set.endpoints(), [b]);
    /// ```
    pub fn replace(&self, endpoints: impl IntoIterator<Item = (SocketAddr, u32)>) {
        let mut wanted = addr_map(0);
        wanted.extend(endpoints);
        let mut index = self.lock();
        let leaving: Vec<Op> = index
            .keys()
            .filter(|address| !wanted.contains_key(*address))
            .map(|&address| Op::Remove(address))
            .collect();
        let ops = leaving
            .into_iter()
            .chain(wanted.into_iter().map(|(a, w)| Op::Upsert(a, w)));
        let edited = self.edit_locked(&mut index, ops);
        drop(index);
        self.announce(edited);
    }

    /// Applies `changes` (tower's discovery changes: `Insert` adds an
    /// endpoint or changes its weight, `Remove` removes it) as one change
    /// to the set.
    ///
    /// ```
    /// use tower::discover::Change;
    /// # let set = sinew::balance::EndpointSet::default();
    /// let a = "127.0.0.1:8080".parse().unwrap();
    /// let b = "127.0.0.1:8081".parse().unwrap();
    /// set.apply([Change::Insert(a, 1), Change::Insert(b, 2), Change::Remove(a)]);
    /// assert_eq!(set.endpoints(), [b]);
    /// ```
    pub fn apply(&self, changes: impl IntoIterator<Item = Change<SocketAddr, u32>>) {
        self.edit(changes.into_iter().map(Op::from));
    }

    /// How many endpoints the set holds.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// set.insert("127.0.0.1:8080".parse().unwrap(), 1);
    /// assert_eq!(set.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.shared.current.load().endpoints.len()
    }

    /// Whether the set holds no endpoint (requests then fail with
    /// [`NoEndpoint`](super::NoEndpoint)).
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// assert!(set.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the set holds the endpoint at `address`.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let address = "127.0.0.1:8080".parse().unwrap();
    /// assert!(!set.contains(address));
    /// set.insert(address, 1);
    /// assert!(set.contains(address));
    /// ```
    pub fn contains(&self, address: SocketAddr) -> bool {
        self.lock().contains_key(&address)
    }

    /// The endpoints' addresses, in no particular order.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let address = "127.0.0.1:8080".parse().unwrap();
    /// set.insert(address, 1);
    /// assert_eq!(set.endpoints(), [address]);
    /// ```
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        let current = self.shared.current.load();
        current.endpoints.iter().map(|e| e.address).collect()
    }

    /// The weight of the endpoint at `address`.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let address = "127.0.0.1:8080".parse().unwrap();
    /// set.insert(address, 3);
    /// assert_eq!(set.weight(address), Some(3));
    /// ```
    pub fn weight(&self, address: SocketAddr) -> Option<u32> {
        self.entry(address).map(|e| e.weight)
    }

    /// The load of the endpoint at `address`: its requests in flight and
    /// latency estimate, shared with the requests sent to it.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let address = "127.0.0.1:8080".parse().unwrap();
    /// set.insert(address, 1);
    /// assert_eq!(set.load(address).map(|l| l.inflight()), Some(0));
    /// ```
    pub fn load(&self, address: SocketAddr) -> Option<Arc<EndpointLoad>> {
        self.entry(address).map(|e| e.load)
    }

    /// The number of changes made to the set so far: each call that
    /// changed something, and each batch a feed applied, counts one.
    ///
    /// ```
    /// # let set = sinew::balance::EndpointSet::default();
    /// let address = "127.0.0.1:8080".parse().unwrap();
    /// set.insert(address, 1);
    /// set.insert(address, 1); // no change
    /// assert_eq!(set.version(), 1);
    /// ```
    pub fn version(&self) -> u64 {
        *self.shared.versions.borrow()
    }

    /// A receiver of the set's [`version`](Self::version), to wait for a
    /// change to be applied (by a feed, say).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let set = sinew::balance::EndpointSet::default();
    /// let mut versions = set.subscribe();
    /// set.insert("127.0.0.1:8080".parse().unwrap(), 1);
    /// versions.changed().await.unwrap();
    /// assert_eq!(*versions.borrow(), 1);
    /// # }
    /// ```
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.versions.subscribe()
    }

    fn entry(&self, address: SocketAddr) -> Option<Entry> {
        // Under the writer's lock, the index matches the current version.
        let index = self.lock();
        let i = *index.get(&address)?;
        self.shared.current.load().endpoints.get(i).cloned()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, AddrMap<usize>> {
        // Nothing that changes the index can panic before the version it
        // describes is published: a panic elsewhere while the lock was
        // held leaves it whole.
        self.shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn gone(&self) -> watch::Receiver<()> {
        self.shared.gone.subscribe()
    }

    pub(super) fn downgrade(&self) -> std::sync::Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    pub(super) fn upgrade(weak: &std::sync::Weak<Shared>) -> Option<Self> {
        weak.upgrade().map(|shared| Self { shared })
    }

    /// The current version.
    pub(super) fn current(&self) -> Arc<Version> {
        self.shared.current.load_full()
    }

    /// Replaces `kept` with the current version if a newer one was
    /// published: one atomic load when nothing changed, where an
    /// `arc_swap` load costs several (arc-swap's own `Cache` does the same,
    /// but needs a handle of its own to the `ArcSwap`, one more reference
    /// count per clone of a service). Acquire: a version number seen
    /// means that version's store is seen.
    #[inline]
    pub(super) fn refresh(&self, kept: &mut Arc<Version>) {
        if self.shared.published.load(Ordering::Acquire) != kept.number {
            *kept = self.current();
        }
    }

    /// Whether a version newer than `kept` was published. Read after a
    /// pick has counted its request in flight: a removal published before
    /// this read sends the request elsewhere, and one published after it
    /// finds the request counted, so that waiting for an endpoint's
    /// requests in flight to end after its removal covers every request
    /// it will get (sequentially consistent on both sides of that race).
    #[inline]
    pub(super) fn is_stale(&self, kept: &Version) -> bool {
        self.shared.published.load(Ordering::SeqCst) != kept.number
    }

    /// The endpoint of `version` for `request`: its key (for the hashing
    /// policies) from the policy's header or a [`HashKey`] extension.
    #[inline]
    pub(super) fn pick<B>(&self, version: &Version, request: &Request<B>) -> Option<Picked> {
        let hash = match &self.shared.hash {
            HashSource::None => None,
            HashSource::Key => request.extensions().get::<HashKey>().map(|k| k.0),
            HashSource::Header(name) => request
                .headers()
                .get(name)
                .map(|v| hash_key(v.as_bytes()))
                .or_else(|| request.extensions().get::<HashKey>().map(|k| k.0)),
        };
        let entry = version.endpoints.get(version.picker.pick(hash)?)?;
        Some(Picked {
            address: entry.address,
            authority: entry.authority.clone(),
            in_flight: match self.shared.timed {
                true => entry.load.start(),
                false => entry.load.start_untimed(),
            },
        })
    }
}

/// `address` as a URI authority that requests clone without allocating.
/// A socket address's text form is always a valid authority (brackets and
/// zone included); `None` is never expected.
pub(crate) fn shared_authority(address: SocketAddr) -> Option<Authority> {
    let authority = Authority::try_from(address.to_string()).ok()?;
    // The first clone turns the text's buffer into a shared one, so that
    // later clones only count references.
    drop(authority.clone());
    Some(authority)
}

/// The endpoint picked for one request, counted in flight.
pub(super) struct Picked {
    pub(super) address: SocketAddr,
    pub(super) authority: Authority,
    pub(super) in_flight: super::InFlight,
}

/// An empty set balanced by P2C Peak-EWMA, the default policy.
///
/// ```
/// let set = sinew::balance::EndpointSet::default();
/// assert_eq!(*set.policy(), sinew::config::LbPolicy::P2cEwma);
/// ```
impl Default for EndpointSet {
    fn default() -> Self {
        Self::with(LbPolicy::P2cEwma, HashSource::None)
    }
}

impl std::fmt::Debug for EndpointSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSet")
            .field("policy", &self.shared.policy)
            .field("endpoints", &self.len())
            .field("version", &self.version())
            .finish()
    }
}
