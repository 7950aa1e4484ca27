//! The service registry: instances registered over the admin API, each
//! under a lease that heartbeats renew and that expires after its TTL.
//! Registrations are kept in a file, written on every registration,
//! deregistration and expiry (not on renewals): after a restart every
//! stored lease gets a full TTL again, so instances that are still alive
//! renew it and those that died meanwhile expire one TTL later.

use serde::{Deserialize, Serialize};
use sinew::config::{EndpointConfig, Locality};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
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

/// A live lease.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The registration it holds.
    pub registration: Registration,
    /// Its TTL.
    pub ttl: Duration,
    /// When it expires unless renewed.
    pub expires: Instant,
}

/// The registry's leases, by lease id.
#[derive(Debug, Default)]
pub struct Registry {
    leases: HashMap<String, Lease>,
    store: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    leases: BTreeMap<String, Registration>,
}

impl Registry {
    /// A registry kept in `store` (read now if it exists), or only in
    /// memory.
    pub fn open(store: Option<PathBuf>) -> Result<Self, String> {
        let mut registry = Self {
            leases: HashMap::new(),
            store,
        };
        let Some(path) = &registry.store else {
            return Ok(registry);
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(registry),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let stored: Stored = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a registry store: {e}", path.display()))?;
        let now = Instant::now();
        for (id, registration) in stored.leases {
            // A stored registration that no longer validates is dropped.
            if let Ok(ttl) = registration.validate() {
                let expires = now + ttl;
                registry.leases.insert(
                    id,
                    Lease {
                        registration,
                        ttl,
                        expires,
                    },
                );
            }
        }
        Ok(registry)
    }

    /// Registers an instance; returns its lease id and TTL. Registering
    /// the same name and address again replaces the earlier lease.
    pub fn register(&mut self, registration: Registration) -> Result<(String, Duration), Invalid> {
        let ttl = registration.validate()?;
        self.leases.retain(|_, l| {
            l.registration.name != registration.name
                || l.registration.address != registration.address
        });
        let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let expires = Instant::now() + ttl;
        self.leases.insert(
            id.clone(),
            Lease {
                registration,
                ttl,
                expires,
            },
        );
        self.save();
        Ok((id, ttl))
    }

    /// Renews a lease; `None` when it is unknown or has expired.
    pub fn renew(&mut self, id: &str) -> Option<Duration> {
        let lease = self.leases.get_mut(id)?;
        lease.expires = Instant::now() + lease.ttl;
        Some(lease.ttl)
    }

    /// Ends a lease; false when it is unknown.
    pub fn deregister(&mut self, id: &str) -> bool {
        let removed = self.leases.remove(id).is_some();
        if removed {
            self.save();
        }
        removed
    }

    /// Removes the leases that have expired by `now`; true if any did.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.leases.len();
        self.leases.retain(|id, l| {
            let alive = l.expires > now;
            if !alive {
                tracing::info!(lease = %id, name = %l.registration.name, address = %l.registration.address, "lease expired");
            }
            alive
        });
        let expired = self.leases.len() != before;
        if expired {
            self.save();
        }
        expired
    }

    /// When the next lease expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.expires).min()
    }

    /// The leases, by id.
    pub fn leases(&self) -> impl Iterator<Item = (&String, &Lease)> {
        self.leases.iter()
    }

    fn save(&self) {
        let Some(path) = &self.store else {
            return;
        };
        let stored = Stored {
            leases: self
                .leases
                .iter()
                .map(|(id, l)| (id.clone(), l.registration.clone()))
                .collect(),
        };
        let result = serde_json::to_vec_pretty(&stored)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let temporary = path.with_extension("tmp");
                std::fs::write(&temporary, bytes)?;
                std::fs::rename(&temporary, path)
            });
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "cannot write the registry store");
        }
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

    #[tokio::test(start_paused = true)]
    async fn leases_expire_unless_renewed_and_reregistering_replaces() {
        let mut registry = Registry::default();
        let (a, ttl) = registry
            .register(registration("reviews", "127.0.0.1:80"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(ttl, Duration::from_secs(10));
        let (b, _) = registry
            .register(registration("reviews", "127.0.0.1:81"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(registry.renew(&a), Some(ttl));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(registry.expire(Instant::now()), "b ran out");
        assert_eq!(registry.renew(&b), None);
        assert!(registry.renew(&a).is_some(), "a was renewed");
        // The same name and address again: one lease, the new one.
        let (c, _) = registry
            .register(registration("reviews", "127.0.0.1:80"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(registry.leases().count(), 1);
        assert_eq!(registry.renew(&a), None);
        assert!(registry.deregister(&c));
        assert!(!registry.deregister(&c));
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_keeps_registrations_across_a_restart_with_a_fresh_ttl() {
        let path = std::env::temp_dir().join(format!(
            "sinew-registry-{}-{}.json",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut registry =
            Registry::open(Some(path.clone())).unwrap_or_else(|e| unreachable!("{e}"));
        let (id, _) = registry
            .register(registration("reviews", "127.0.0.1:80"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        tokio::time::advance(Duration::from_secs(9)).await;
        drop(registry);
        let mut reopened =
            Registry::open(Some(path.clone())).unwrap_or_else(|e| unreachable!("{e}"));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(
            !reopened.expire(Instant::now()),
            "a full TTL from the restart"
        );
        assert!(reopened.renew(&id).is_some());
        std::fs::write(&path, "not json").unwrap_or_else(|e| unreachable!("{e}"));
        let error = Registry::open(Some(path.clone())).err().unwrap_or_default();
        assert!(error.contains("is not a registry store"), "{error}");
        let _ = std::fs::remove_file(&path);
    }
}
