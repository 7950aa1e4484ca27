//! Which policies can match a caller, by the caller's exact SPIFFE ID: a
//! service's policies are mostly about who calls, so a request evaluates
//! only those naming its caller (and those that name no one in
//! particular) instead of all of them.

use super::{CompiledPolicies, Principal, StringMatch};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

/// Per group: the policies every request evaluates, and those a request
/// evaluates only when its caller's ID hashes to their key. Indices are
/// ascending, so a merge keeps the policies' order (the first match is
/// the one named).
#[derive(Debug, Default)]
pub(crate) struct PrincipalIndex {
    groups: Vec<GroupIndex>,
    /// Any group has keyed policies: the caller's ID is hashed.
    keyed: bool,
}

#[derive(Debug, Default)]
struct GroupIndex {
    always: Vec<usize>,
    by_id: HashMap<u64, Vec<usize>, BuildHasherDefault<Prehashed>>,
    /// Whether the group has a policy in force, and an audited one:
    /// without, and with, the dry-run policies.
    summary: [(bool, bool); 2],
}

impl PrincipalIndex {
    pub(crate) fn new(policies: &CompiledPolicies) -> Self {
        let mut keyed = false;
        let groups = policies
            .groups
            .iter()
            .map(|group| {
                let mut index = GroupIndex {
                    summary: [false, true].map(|dry_run| group.summary(dry_run)),
                    ..GroupIndex::default()
                };
                for (i, policy) in group.policies.iter().enumerate() {
                    match exact_ids(&policy.principal) {
                        Some(ids) => {
                            keyed = true;
                            for id in ids {
                                let list = index.by_id.entry(hash(id)).or_default();
                                if list.last() != Some(&i) {
                                    list.push(i);
                                }
                            }
                        }
                        None => index.always.push(i),
                    }
                }
                index
            })
            .collect();
        Self { groups, keyed }
    }

    /// The key of the caller's ID, when any policy is keyed.
    #[inline]
    pub(crate) fn key(&self, peer: Option<&str>) -> Option<u64> {
        if self.keyed { peer.map(hash) } else { None }
    }

    /// Whether group `g` has a policy in force, and an audited one.
    #[inline]
    pub(crate) fn summary(&self, g: usize, dry_run: bool) -> Option<(bool, bool)> {
        self.groups
            .get(g)
            .map(|index| index.summary[usize::from(dry_run)])
    }

    /// The policies of group `g` a request from the caller keyed `key`
    /// can match, ascending. An unindexed group: all of `len`.
    #[inline]
    pub(crate) fn candidates(&self, g: usize, len: usize, key: Option<u64>) -> Candidates<'_> {
        let Some(index) = self.groups.get(g) else {
            return Candidates::All(0..len);
        };
        let keyed = key
            .and_then(|k| index.by_id.get(&k))
            .map_or(&[][..], Vec::as_slice);
        Candidates::Merge(&index.always, keyed)
    }
}

/// Some(ids): the principal matches only callers whose SPIFFE ID is one
/// of `ids` (case-sensitive). None: it may match others.
fn exact_ids(principal: &Principal) -> Option<Vec<&str>> {
    match principal {
        Principal::Authenticated(Some(StringMatch::Exact(id, false))) => Some(vec![id.as_str()]),
        Principal::Or(any) => {
            let mut ids = Vec::new();
            for p in any {
                ids.extend(exact_ids(p)?);
            }
            Some(ids)
        }
        Principal::And(all) => all.iter().find_map(exact_ids),
        _ => None,
    }
}

/// FNV-1a: short keys, no allocation, and a collision only costs the
/// evaluation of a policy that then does not match.
fn hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The keys are hashes already.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Policy indices, ascending.
#[derive(Debug)]
pub(crate) enum Candidates<'a> {
    All(Range<usize>),
    Merge(&'a [usize], &'a [usize]),
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            Self::All(range) => range.next(),
            Self::Merge(a, b) => {
                let next = match (a.first(), b.first()) {
                    (Some(x), Some(y)) if x <= y => {
                        if x == y {
                            *b = &b[1..];
                        }
                        let x = *x;
                        *a = &a[1..];
                        x
                    }
                    (_, Some(y)) => {
                        let y = *y;
                        *b = &b[1..];
                        y
                    }
                    (Some(x), None) => {
                        let x = *x;
                        *a = &a[1..];
                        x
                    }
                    (None, None) => return None,
                };
                Some(next)
            }
        }
    }
}
