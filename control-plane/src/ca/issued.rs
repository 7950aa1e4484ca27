//! The certificates the CA issued, as the dashboard shows them: the last
//! one per SPIFFE ID, with its expiry. Bounded: past [`MAX_ISSUED`] IDs,
//! expired ones go first, then the one expiring soonest. Kept in memory
//! only (a restart forgets them; the workloads' next renewals refill it).

use serde::Serialize;
use std::collections::BTreeMap;

/// At most this many SPIFFE IDs are remembered.
pub(crate) const MAX_ISSUED: usize = 4096;

/// A certificate the CA issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuedView {
    /// Its SPIFFE ID.
    pub spiffe_id: String,
    /// When it was issued, in seconds since the Unix epoch.
    pub issued_at_unix: u64,
    /// When it expires, in seconds since the Unix epoch.
    pub not_after_unix: u64,
}

/// The last certificate issued per SPIFFE ID.
#[derive(Debug, Default)]
pub(crate) struct Issued(BTreeMap<String, IssuedView>);

impl Issued {
    pub(crate) fn record(&mut self, spiffe_id: &str, now: u64, not_after: u64) {
        if !self.0.contains_key(spiffe_id) && self.0.len() >= MAX_ISSUED {
            self.0.retain(|_, v| v.not_after_unix > now);
            if self.0.len() >= MAX_ISSUED {
                let soonest = self
                    .0
                    .values()
                    .min_by_key(|v| v.not_after_unix)
                    .map(|v| v.spiffe_id.clone());
                if let Some(id) = soonest {
                    self.0.remove(&id);
                }
            }
        }
        self.0.insert(
            spiffe_id.to_owned(),
            IssuedView {
                spiffe_id: spiffe_id.to_owned(),
                issued_at_unix: now,
                not_after_unix: not_after,
            },
        );
    }

    pub(crate) fn list(&self) -> Vec<IssuedView> {
        self.0.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_expired_first() {
        let mut issued = Issued::default();
        for i in 0..MAX_ISSUED {
            issued.record(&format!("spiffe://td/ns/a/sa/s{i}"), 0, 100 + i as u64);
        }
        issued.record("spiffe://td/ns/a/sa/new", 0, 10_000);
        assert_eq!(issued.list().len(), MAX_ISSUED);
        assert!(!issued.list().iter().any(|v| v.spiffe_id.ends_with("/s0")));
    }
}
