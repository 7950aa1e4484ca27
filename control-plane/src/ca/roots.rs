//! The roots the CA holds and how rotation moves between them: the
//! newest active root signs; a root a newer one replaced stays trusted
//! until its last leaf has expired (or until an overlap given at
//! rotation has passed), then it leaves the trust bundle.

use super::root::Root;
use serde::Serialize;
use std::time::Duration;

/// One root and where it stands.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) root: Root,
    /// When it starts signing (unix s); before that it is only trusted,
    /// so that workloads hold it before any leaf of it reaches them.
    pub(crate) active_from: u64,
    /// The latest end of validity of a leaf it signed (unix s).
    pub(crate) issued_until: u64,
    /// What the state file says of `issued_until`: a bound above it, moved
    /// a leaf lifetime ahead when passed, so that the file is not
    /// rewritten for every leaf.
    pub(crate) persisted_until: u64,
    /// Set by a rotation with an explicit overlap: trusted until then,
    /// whatever its leaves say.
    pub(crate) trusted_until: Option<u64>,
}

/// How a root stands, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// It signs new leaves.
    Signing,
    /// It will sign from `active_from`; trusted already.
    Pending,
    /// Replaced; trusted until its leaves have expired.
    Retiring,
}

/// The roots, oldest first.
#[derive(Debug)]
pub(crate) struct Roots {
    entries: Vec<Entry>,
}

/// Why a rotation was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RotateRefusal {
    /// A rotated-in root has not started signing yet.
    Pending { active_from: u64 },
}

impl Roots {
    /// Roots as stored (oldest first, at least one).
    pub(crate) fn new(entries: Vec<Entry>) -> Self {
        Self { entries }
    }

    /// Every root, oldest first.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn signing_index(&self, now: u64) -> usize {
        self.entries
            .iter()
            .rposition(|e| e.active_from <= now)
            .unwrap_or(0)
    }

    /// The root that signs at `now`.
    pub(crate) fn signing_mut(&mut self, now: u64) -> Option<&mut Entry> {
        let index = self.signing_index(now);
        self.entries.get_mut(index)
    }

    /// When the root after the one signing at `now` takes over, if a
    /// rotation is pending.
    pub(crate) fn next_activation(&self, now: u64) -> Option<u64> {
        self.entries
            .get(self.signing_index(now) + 1)
            .map(|e| e.active_from)
    }

    /// Each root with its standing, or `None` when it is no longer
    /// trusted at `now`.
    pub(crate) fn standings(&self, now: u64) -> Vec<Option<Standing>> {
        let signing = self.signing_index(now);
        self.entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                if i == signing {
                    return Some(Standing::Signing);
                }
                if i > signing {
                    return Some(Standing::Pending);
                }
                // Replaced when the next root started signing.
                let replaced_at = self.entries.get(i + 1).map_or(0, |n| n.active_from);
                let end = entry.trusted_until.unwrap_or(entry.issued_until);
                (now < end.max(replaced_at)).then_some(Standing::Retiring)
            })
            .collect()
    }

    /// The roots trusted at `now`, oldest first.
    pub(crate) fn trusted(&self, now: u64) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .zip(self.standings(now))
            .filter_map(|(entry, standing)| standing.map(|_| entry))
    }

    /// Drops the roots no longer trusted; whether any was.
    pub(crate) fn prune(&mut self, now: u64) -> bool {
        let standings = self.standings(now);
        let before = self.entries.len();
        let mut keep = standings.into_iter();
        self.entries.retain(|_| keep.next().flatten().is_some());
        self.entries.len() != before
    }

    /// Brings in `root`, signing from `now + activate_in`; the root it
    /// replaces stays trusted for `overlap` after that when given, until
    /// its last leaf has expired otherwise.
    pub(crate) fn rotate(
        &mut self,
        root: Root,
        now: u64,
        activate_in: Duration,
        overlap: Option<Duration>,
    ) -> Result<(), RotateRefusal> {
        if let Some(pending) = self.entries.iter().find(|e| e.active_from > now) {
            return Err(RotateRefusal::Pending {
                active_from: pending.active_from,
            });
        }
        let active_from = now.saturating_add(activate_in.as_secs());
        if let Some(current) = self.signing_mut(now) {
            current.trusted_until = overlap.map(|o| active_from.saturating_add(o.as_secs()));
            // From now on the file says exactly when its last leaf ends.
            current.persisted_until = current.issued_until;
        }
        self.entries.push(Entry {
            root,
            active_from,
            issued_until: 0,
            persisted_until: 0,
            trusted_until: None,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::spiffe::TrustDomain;
    use std::time::SystemTime;

    fn root() -> Root {
        let td = TrustDomain::new("example.org").unwrap_or_else(|e| unreachable!("{e}"));
        Root::generate(&td, SystemTime::now()).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn entry(active_from: u64) -> Entry {
        Entry {
            root: root(),
            active_from,
            issued_until: 0,
            persisted_until: 0,
            trusted_until: None,
        }
    }

    #[test]
    fn a_replaced_root_is_trusted_until_its_last_leaf_expires() {
        let mut roots = Roots::new(vec![entry(0)]);
        if let Some(e) = roots.signing_mut(100) {
            e.issued_until = 500;
        }
        assert_eq!(roots.rotate(root(), 200, Duration::ZERO, None), Ok(()));
        assert_eq!(
            roots.standings(200),
            vec![Some(Standing::Retiring), Some(Standing::Signing)]
        );
        assert_eq!(roots.trusted(499).count(), 2);
        assert_eq!(roots.trusted(500).count(), 1);
        assert!(!roots.prune(499));
        assert!(roots.prune(500));
        assert_eq!(roots.entries().len(), 1);
    }

    #[test]
    fn an_explicit_overlap_and_a_pending_root() {
        let mut roots = Roots::new(vec![entry(0)]);
        if let Some(e) = roots.signing_mut(100) {
            e.issued_until = 10_000;
        }
        let activate = Duration::from_secs(50);
        let overlap = Some(Duration::from_secs(30));
        assert_eq!(roots.rotate(root(), 100, activate, overlap), Ok(()));
        // Before it activates the new root is trusted, and the old signs.
        assert_eq!(
            roots.standings(120),
            vec![Some(Standing::Signing), Some(Standing::Pending)]
        );
        // A second rotation waits for the first.
        assert_eq!(
            roots.rotate(root(), 120, Duration::ZERO, None),
            Err(RotateRefusal::Pending { active_from: 150 })
        );
        assert_eq!(
            roots.standings(150),
            vec![Some(Standing::Retiring), Some(Standing::Signing)]
        );
        // The overlap ends 30 s after activation, whatever the leaves say.
        assert_eq!(roots.standings(180), vec![None, Some(Standing::Signing)]);
    }
}
