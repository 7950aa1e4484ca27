//! Which policies can match a request: by the caller's exact SPIFFE ID,
//! else by the exact paths or path prefixes a policy requires. A
//! service's policies are mostly about who calls or what is called, so a
//! request evaluates only those naming its caller or its path (and those
//! keyed by neither) instead of all of them.

use super::{CompiledPolicies, Permission, PolicyGroup, Principal, RequestView, StringMatch};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Per group: the policies every request evaluates, and those a request
/// evaluates only when its caller's ID or its path, whole or a prefix of
/// it, hashes to their key. Each list is ascending: the first match of a
/// list is its earliest, and the earliest over all lists is the one named.
#[derive(Debug, Default)]
pub(crate) struct PolicyIndex {
    groups: Vec<GroupIndex>,
    /// Any group has policies keyed by an exact ID: the caller's ID is
    /// hashed once per request.
    keyed: bool,
}

#[derive(Debug, Default)]
struct GroupIndex {
    always: Vec<usize>,
    by_id: Keyed,
    by_path: Keyed,
    /// Whether the group has a policy in force, and an audited one:
    /// without, and with, the dry-run policies.
    summary: [(bool, bool); 2],
}

type Lists = HashMap<u64, Vec<usize>, BuildHasherDefault<Prehashed>>;

/// Policies by a string they require, exactly or as a prefix.
#[derive(Debug, Default)]
struct Keyed {
    exact: Lists,
    prefix: Lists,
    /// The lengths of the prefixes, ascending.
    prefix_lens: Vec<usize>,
}

impl Keyed {
    fn insert(&mut self, key: &Key<'_>, i: usize) {
        let (lists, s) = match key {
            Key::Exact(s) => (&mut self.exact, s),
            Key::Prefix(s) => {
                self.prefix_lens.push(s.len());
                (&mut self.prefix, s)
            }
        };
        let list = lists.entry(hash(s.as_bytes())).or_default();
        if list.last() != Some(&i) {
            list.push(i);
        }
    }

    fn finish(&mut self) {
        self.prefix_lens.sort_unstable();
        self.prefix_lens.dedup();
    }

    /// Visits the lists of the keys `value` has: itself (its hash given
    /// as `whole` when known) and its prefixes, hashed as they grow, at
    /// the lengths some key has.
    #[inline]
    fn visit(&self, value: &[u8], whole: Option<u64>, visit: &mut impl FnMut(&[usize])) {
        if !self.exact.is_empty()
            && let Some(list) = self.exact.get(&whole.unwrap_or_else(|| hash(value)))
        {
            visit(list);
        }
        let mut lens = self.prefix_lens.iter().copied().peekable();
        let mut h = FNV_OFFSET;
        for (n, byte) in value.iter().enumerate() {
            let Some(&next) = lens.peek() else { break };
            h = fnv_step(h, *byte);
            if next == n + 1 {
                lens.next();
                if let Some(list) = self.prefix.get(&h) {
                    visit(list);
                }
            }
        }
    }
}

impl PolicyIndex {
    pub(crate) fn new(policies: &CompiledPolicies) -> Self {
        let groups: Vec<GroupIndex> = policies
            .groups
            .iter()
            .map(|group| {
                let mut index = GroupIndex {
                    summary: [false, true].map(|dry_run| group.summary(dry_run)),
                    ..GroupIndex::default()
                };
                for (i, policy) in group.policies.iter().enumerate() {
                    if let Some(ids) = principal_keys(&policy.principal) {
                        ids.iter().for_each(|id| index.by_id.insert(id, i));
                    } else if let Some(paths) = path_keys(&policy.permission) {
                        paths.iter().for_each(|path| index.by_path.insert(path, i));
                    } else {
                        index.always.push(i);
                    }
                }
                index.by_id.finish();
                index.by_path.finish();
                index
            })
            .collect();
        let keyed = groups.iter().any(|g| !g.by_id.exact.is_empty());
        Self { groups, keyed }
    }

    /// The hash of the caller's ID, when a policy is keyed by an exact ID.
    #[inline]
    pub(crate) fn key(&self, peer: Option<&str>) -> Option<u64> {
        if self.keyed {
            peer.map(|id| hash(id.as_bytes()))
        } else {
            None
        }
    }

    /// Whether group `g` has a policy in force, and an audited one.
    #[inline]
    pub(crate) fn summary(&self, g: usize, dry_run: bool) -> Option<(bool, bool)> {
        self.groups
            .get(g)
            .map(|index| index.summary[usize::from(dry_run)])
    }

    /// The earliest policy of `group` (the group `g`) that matches
    /// `request` from the caller whose ID hashes to `key`, dry-run ones
    /// counting when `dry_run`.
    #[inline]
    pub(crate) fn first_match(
        &self,
        g: usize,
        group: &PolicyGroup,
        request: &RequestView<'_>,
        key: Option<u64>,
        dry_run: bool,
    ) -> Option<usize> {
        let Some(index) = self.groups.get(g) else {
            return group.first_match(request, dry_run);
        };
        let mut best: Option<usize> = None;
        let mut visit = |list: &[usize]| {
            for &i in list {
                if best.is_some_and(|b| i >= b) {
                    return;
                }
                if let Some(policy) = group.policies.get(i)
                    && (dry_run || !policy.dry_run)
                    && policy.matches(request)
                {
                    best = Some(i);
                    return;
                }
            }
        };
        visit(&index.always);
        // Keyed by ID, a policy matches only callers with a certificate.
        if let Some(peer) = request.peer {
            index.by_id.visit(peer.as_bytes(), key, &mut visit);
        }
        index
            .by_path
            .visit(request.path.as_bytes(), None, &mut visit);
        best
    }
}

impl PolicyGroup {
    /// The earliest policy that matches `request`, all evaluated.
    pub(crate) fn first_match(&self, request: &RequestView<'_>, dry_run: bool) -> Option<usize> {
        self.policies
            .iter()
            .position(|p| (dry_run || !p.dry_run) && p.matches(request))
    }
}

/// A string a policy requires, exactly or as a prefix (case-sensitive).
enum Key<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

/// Some(keys): the principal matches only callers whose SPIFFE ID is, or
/// starts with, one of `keys`. None: it may match others.
fn principal_keys(principal: &Principal) -> Option<Vec<Key<'_>>> {
    match principal {
        Principal::Authenticated(Some(matcher)) => string_key(matcher).map(|k| vec![k]),
        Principal::Or(any) => {
            let mut keys = Vec::new();
            for p in any {
                keys.extend(principal_keys(p)?);
            }
            Some(keys)
        }
        Principal::And(all) => all.iter().find_map(principal_keys),
        _ => None,
    }
}

/// Some(keys): the permission matches only paths equal to, or starting
/// with, one of `keys`. None: it may match others.
fn path_keys(permission: &Permission) -> Option<Vec<Key<'_>>> {
    match permission {
        Permission::Path(matcher) => string_key(matcher).map(|k| vec![k]),
        Permission::Or(any) => {
            let mut keys = Vec::new();
            for p in any {
                keys.extend(path_keys(p)?);
            }
            Some(keys)
        }
        Permission::And(all) => all.iter().find_map(path_keys),
        _ => None,
    }
}

fn string_key(matcher: &StringMatch) -> Option<Key<'_>> {
    match matcher {
        StringMatch::Exact(s, false) => Some(Key::Exact(s)),
        // An empty prefix is every string: no key.
        StringMatch::Prefix(s, false) if !s.is_empty() => Some(Key::Prefix(s)),
        _ => None,
    }
}

/// FNV-1a: short keys, no allocation, a hash that grows byte by byte
/// (for the path's prefixes), and a collision only costs the evaluation
/// of a policy that then does not match.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| fnv_step(h, *b))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[inline]
fn fnv_step(h: u64, byte: u8) -> u64 {
    (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
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
