//! The service registry: instances registered over the admin API, each
//! under a lease that heartbeats renew and that expires after its TTL.
//! Registrations are kept in a file, written after every registration,
//! deregistration and expiry (not on renewals) by the store task, outside
//! any lock: after a restart every stored lease gets a full TTL again, so
//! instances that are still alive renew it and those that died meanwhile
//! expire one TTL later.

use serde::{Deserialize, Serialize};
use sinew::config::{EndpointConfig, Locality};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

/// Shortest and longest lease a registration may ask for.
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest lease.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The lease when a registration names none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
const MAX_METADATA: usize = 32;
const MAX_TEXT: usize = 256;

/// What an instance sends to register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The cluster the instance joins (and the service named after it,
    /// when the mesh file does not define one).
    pub name: String,
    /// Where it serves, `ip:port`.
    pub address: String,
    /// Its locality.
    #[serde(default)]
    pub locality: Locality,
    /// Free-form metadata, at most 32 entries of at most 256 bytes each.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The lease, in seconds, from 1 to 3600. Default: 30.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A registration that failed validation: the field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The field, e.g. `address`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

/// A name as the mesh file's: 1 to 253 of `[A-Za-z0-9._:-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

impl Registration {
    /// Checks every field, naming the first that is wrong.
    pub fn validate(&self) -> Result<Duration, Invalid> {
        if !valid_name(&self.name) {
            return Err(invalid(
                "name",
                "names are 1 to 253 characters of letters, digits, '.', '_', ':' and '-'",
            ));
        }
        if self.address.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "address",
                format!("`{}` is not an ip:port address", self.address),
            ));
        }
        for (field, text) in [
            ("locality.region", &self.locality.region),
            ("locality.zone", &self.locality.zone),
        ] {
            if text.len() > MAX_TEXT {
                return Err(invalid(field, format!("longer than {MAX_TEXT} bytes")));
            }
        }
        if self.metadata.len() > MAX_METADATA {
            return Err(invalid(
                "metadata",
                format!("more than {MAX_METADATA} entries"),
            ));
        }
        if self
            .metadata
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > MAX_TEXT || v.len() > MAX_TEXT)
        {
            return Err(invalid(
                "metadata",
                format!("keys of 1 to {MAX_TEXT} bytes and values of at most {MAX_TEXT} bytes"),
            ));
        }
        let ttl = self.ttl_seconds.map_or(DEFAULT_TTL, Duration::from_secs);
        if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
            return Err(invalid("ttl_seconds", "must be between 1 and 3600"));
        }
        Ok(ttl)
    }

    /// The endpoint this registration adds to its cluster.
    pub fn endpoint(&self) -> EndpointConfig {
        EndpointConfig {
            locality: self.locality.clone(),
            metadata: self.metadata.clone(),
            ..EndpointConfig::new(self.address.clone())
        }
    }
}

/// A registration checked, with its address parsed (and written the one
/// way [`SocketAddr`] writes it) and its TTL.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The registration, its address normalised.
    pub registration: Registration,
    /// Its address.
    pub addr: SocketAddr,
    /// Its TTL.
    pub ttl: Duration,
}

impl Registration {
    /// Validates and normalises: `[0:0:0:0:0:0:0:1]:80` and `[::1]:80`
    /// are one address, written `[::1]:80`.
    pub fn check(mut self) -> Result<Checked, Invalid> {
        let ttl = self.validate()?;
        let addr: SocketAddr = self
            .address
            .parse()
            .map_err(|_| invalid("address", "not an ip:port address"))?;
        self.address = addr.to_string();
        Ok(Checked {
            registration: self,
            addr,
            ttl,
        })
    }
}

/// A live lease.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The registration it holds (its address normalised).
    pub registration: Registration,
    /// Its address.
    pub addr: SocketAddr,
    /// Its TTL.
    pub ttl: Duration,
    /// When it expires unless renewed.
    pub expires: Instant,
}

/// The registry's leases, by lease id, with indexes that keep every
/// change at O(log n): by cluster and address, and by expiry.
#[derive(Debug, Default)]
pub struct Registry {
    leases: HashMap<String, Lease>,
    members: HashMap<String, BTreeMap<SocketAddr, String>>,
    expiries: BTreeSet<(Instant, String)>,
    /// Counts the changes the store must see (not renewals).
    changes: u64,
}

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    leases: BTreeMap<String, T>,
}

/// Reads a registry store: its leases by id, each one decoded alone (a
/// lease that does not decode is reported, not fatal). A missing file is
/// an empty store; an unreadable one, or one that is not a store, an
/// error.
pub fn read_store(path: &Path) -> Result<StoredLeases, String> {
    let bytes = match sinew::config::read_limited(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoredLeases::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let stored: Stored<serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a registry store: {e}", path.display()))?;
    let mut leases = StoredLeases::default();
    for (id, value) in stored.leases {
        match serde_json::from_value::<Registration>(value) {
            Ok(registration) => leases.valid.push((id, registration)),
            Err(e) => leases.dropped.push(format!("lease {id}: {e}")),
        }
    }
    Ok(leases)
}

/// What a store held.
#[derive(Debug, Default)]
pub struct StoredLeases {
    /// The leases that decode, by id.
    pub valid: Vec<(String, Registration)>,
    /// Why the others were dropped.
    pub dropped: Vec<String>,
}

impl Registry {
    /// The lease a cluster holds for `addr`, if any.
    pub fn member(&self, name: &str, addr: &SocketAddr) -> Option<&String> {
        self.members.get(name).and_then(|m| m.get(addr))
    }

    /// Leases in all, and in `name`'s cluster.
    pub fn counts(&self, name: &str) -> (usize, usize) {
        (
            self.leases.len(),
            self.members.get(name).map_or(0, BTreeMap::len),
        )
    }

    /// The registrations in `name`'s cluster, by address.
    pub fn members(&self, name: &str) -> impl Iterator<Item = &Lease> {
        self.members
            .get(name)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|id| self.leases.get(id))
    }

    /// The clusters with registrations.
    pub fn clusters(&self) -> impl Iterator<Item = &String> {
        self.members.keys()
    }

    /// Adds a checked registration under `id`, replacing the lease the
    /// same name and address held.
    pub fn insert(&mut self, id: String, checked: Checked) {
        let Checked {
            registration,
            addr,
            ttl,
        } = checked;
        if let Some(old) = self.member(&registration.name, &addr).cloned() {
            self.remove(&old);
        }
        let expires = Instant::now() + ttl;
        self.members
            .entry(registration.name.clone())
            .or_default()
            .insert(addr, id.clone());
        self.expiries.insert((expires, id.clone()));
        self.leases.insert(
            id,
            Lease {
                registration,
                addr,
                ttl,
                expires,
            },
        );
        self.changes += 1;
    }

    /// A new lease id.
    pub fn new_id() -> String {
        format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
    }

    /// Renews a lease; `None` when it is unknown or has expired.
    pub fn renew(&mut self, id: &str) -> Option<Duration> {
        let lease = self.leases.get_mut(id)?;
        self.expiries.remove(&(lease.expires, id.to_owned()));
        lease.expires = Instant::now() + lease.ttl;
        self.expiries.insert((lease.expires, id.to_owned()));
        Some(lease.ttl)
    }

    /// Ends a lease; its cluster's name, `None` when it is unknown.
    pub fn deregister(&mut self, id: &str) -> Option<String> {
        let name = self.remove(id)?;
        self.changes += 1;
        Some(name)
    }

    fn remove(&mut self, id: &str) -> Option<String> {
        let lease = self.leases.remove(id)?;
        self.expiries.remove(&(lease.expires, id.to_owned()));
        let name = lease.registration.name;
        if let Some(members) = self.members.get_mut(&name) {
            members.remove(&lease.addr);
            if members.is_empty() {
                self.members.remove(&name);
            }
        }
        Some(name)
    }

    /// Removes the leases that have expired by `now`; the clusters they
    /// were in.
    pub fn expire(&mut self, now: Instant) -> BTreeSet<String> {
        let mut clusters = BTreeSet::new();
        while let Some((at, id)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            if let Some(lease) = self.leases.get(&id) {
                tracing::info!(lease = %id, name = %lease.registration.name, address = %lease.registration.address, "lease expired");
            }
            match self.remove(&id) {
                Some(name) => {
                    clusters.insert(name);
                }
                None => {
                    self.expiries.remove(&(at, id));
                }
            }
        }
        if !clusters.is_empty() {
            self.changes += 1;
        }
        clusters
    }

    /// When the next lease expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Lease `id`, if it is held.
    pub fn lease(&self, id: &str) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// The leases, by id.
    pub fn leases(&self) -> impl Iterator<Item = (&String, &Lease)> {
        self.leases.iter()
    }

    /// Counts the changes the store must see.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The store's contents.
    pub fn to_store(&self) -> Result<Vec<u8>, String> {
        let stored = Stored {
            leases: self
                .leases
                .iter()
                .map(|(id, l)| (id.clone(), &l.registration))
                .collect(),
        };
        serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(name: &str, address: &str) -> Registration {
        Registration {
            name: name.to_owned(),
            address: address.to_owned(),
            locality: Locality::default(),
            metadata: BTreeMap::new(),
            ttl_seconds: Some(10),
        }
    }

    #[test]
    fn registrations_are_checked_field_by_field() {
        let field = |change: fn(&mut Registration)| {
            let mut r = registration("reviews", "127.0.0.1:80");
            change(&mut r);
            r.validate().err().map(|e| e.field)
        };
        assert_eq!(field(|_| {}), None);
        assert_eq!(field(|r| r.name = "a b".into()), Some("name"));
        assert_eq!(field(|r| r.name = "x".repeat(254)), Some("name"));
        assert_eq!(field(|r| r.address = "reviews:80".into()), Some("address"));
        assert_eq!(
            field(|r| r.locality.zone = "z".repeat(257)),
            Some("locality.zone")
        );
        assert_eq!(
            field(|r| { r.metadata = (0..33).map(|i| (i.to_string(), String::new())).collect() }),
            Some("metadata")
        );
        assert_eq!(
            field(|r| {
                r.metadata.insert("k".into(), "v".repeat(257));
            }),
            Some("metadata")
        );
        assert_eq!(field(|r| r.ttl_seconds = Some(0)), Some("ttl_seconds"));
        assert_eq!(field(|r| r.ttl_seconds = Some(3601)), Some("ttl_seconds"));
    }

    fn register(registry: &mut Registry, r: Registration) -> String {
        let id = Registry::new_id();
        let checked = r.check().unwrap_or_else(|e| unreachable!("{e}"));
        registry.insert(id.clone(), checked);
        id
    }

    #[tokio::test(start_paused = true)]
    async fn leases_expire_unless_renewed_and_reregistering_replaces() {
        let mut registry = Registry::default();
        let a = register(&mut registry, registration("reviews", "127.0.0.1:80"));
        let b = register(&mut registry, registration("reviews", "127.0.0.1:81"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(registry.renew(&a), Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(6)).await;
        let expired = registry.expire(Instant::now());
        assert_eq!(expired.into_iter().collect::<Vec<_>>(), ["reviews"]);
        assert_eq!(registry.renew(&b), None);
        assert!(registry.renew(&a).is_some(), "a was renewed");
        // The same name and address again: one lease, the new one.
        let c = register(&mut registry, registration("reviews", "127.0.0.1:80"));
        assert_eq!(registry.leases().count(), 1);
        assert_eq!(registry.renew(&a), None);
        assert_eq!(registry.deregister(&c).as_deref(), Some("reviews"));
        assert_eq!(registry.deregister(&c), None);
        assert_eq!(registry.next_expiry(), None);
    }

    #[test]
    fn addresses_are_normalised() {
        let one = registration("reviews", "[0:0:0:0:0:0:0:1]:80")
            .check()
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(one.registration.address, "[::1]:80");
        let mut registry = Registry::default();
        let first = register(&mut registry, registration("reviews", "[::1]:80"));
        let second = register(
            &mut registry,
            registration("reviews", "[0:0:0:0:0:0:0:1]:80"),
        );
        assert_ne!(first, second);
        assert_eq!(registry.members("reviews").count(), 1);
        assert_eq!(registry.counts("reviews"), (1, 1));
    }

    #[test]
    fn a_store_keeps_leases_and_reports_the_ones_it_cannot_read() {
        let path = std::env::temp_dir().join(format!(
            "sinew-registry-{}-{}.json",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut registry = Registry::default();
        let id = register(&mut registry, registration("reviews", "127.0.0.1:80"));
        let bytes = registry.to_store().unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| unreachable!("{e}"));
        let read = read_store(&path).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(read.valid.len(), 1);
        assert_eq!(read.valid[0].0, id);
        std::fs::write(
            &path,
            r#"{"leases": {"a": {"name": "x", "address": 5}, "b": {"name": "y", "address": "127.0.0.1:1"}}}"#,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let read = read_store(&path).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(read.valid.len(), 1);
        assert_eq!(read.dropped.len(), 1);
        assert!(
            read.dropped[0].starts_with("lease a: "),
            "{:?}",
            read.dropped
        );
        std::fs::write(&path, "not json").unwrap_or_else(|e| unreachable!("{e}"));
        let error = read_store(&path).err().unwrap_or_default();
        assert!(error.contains("is not a registry store"), "{error}");
        let _ = std::fs::remove_file(&path);
        assert!(read_store(&path).is_ok_and(|r| r.valid.is_empty()));
    }
}
