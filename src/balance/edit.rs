//! Changing an [`EndpointSet`]: the changes applied to a copy of the
//! current version (the picker changed in place where it can, rebuilt
//! otherwise), published, then announced.

use super::set::{Entry, Version};
use super::{EndpointSet, Picker, PickerChange, PickerEndpoint};
use crate::addr_hash::AddrMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tower::discover::Change;

/// Past this many changes in one batch, the picker is rebuilt once rather
/// than changed one endpoint at a time.
const LARGE_CHANGE: usize = 32;

/// One change, by address.
pub(super) enum Op {
    Upsert(SocketAddr, u32),
    Remove(SocketAddr),
}

impl From<Change<SocketAddr, u32>> for Op {
    fn from(change: Change<SocketAddr, u32>) -> Self {
        match change {
            Change::Insert(address, weight) => Op::Upsert(address, weight),
            Change::Remove(address) => Op::Remove(address),
        }
    }
}

impl EndpointSet {
    pub(super) fn edit(&self, ops: impl IntoIterator<Item = Op>) -> Edited {
        let mut index = self.lock();
        let edited = self.edit_locked(&mut index, ops);
        drop(index);
        self.announce(edited);
        edited
    }

    /// Counts a published change, once the writer's lock is released: a
    /// receiver may call back into the set (`contains`, say) while it
    /// holds the channel's lock, and would wait on a writer that waits on
    /// the channel. The count runs behind the versions it counts, never
    /// ahead: a receiver that sees `n` sees at least `n` changes.
    pub(super) fn announce(&self, edited: Edited) {
        if edited.changes > 0 {
            self.shared.versions.send_modify(|v| *v += 1);
        }
    }

    /// Applies `ops` to the current version and publishes the next one
    /// (when something changed); the caller then [`announce`](Self::announce)s it.
    pub(super) fn edit_locked(
        &self,
        index: &mut AddrMap<usize>,
        ops: impl IntoIterator<Item = Op>,
    ) -> Edited {
        let base = self.shared.current.load_full();
        let mut endpoints = base.endpoints.clone();
        let mut picker: Option<Picker> = None;
        let ops = ops.into_iter();
        // A batch known to be large skips the changes one at a time.
        let mut rebuild = ops.size_hint().0 > LARGE_CHANGE;
        let mut edited = Edited::default();
        for op in ops {
            let (change_at, entry) = match op {
                Op::Upsert(address, weight) => {
                    let weight = weight.max(1);
                    match index.get(&address) {
                        Some(&i) => {
                            let Some(old) = endpoints.get(i).filter(|e| e.weight != weight) else {
                                continue;
                            };
                            let entry = Entry {
                                weight,
                                ..old.clone()
                            };
                            endpoints.set(i, entry.clone());
                            (Some(i), Some(entry))
                        }
                        None => {
                            let Some(entry) = Entry::new(address, weight) else {
                                continue;
                            };
                            index.insert(address, endpoints.len());
                            endpoints.push(entry.clone());
                            edited.added += 1;
                            (None, Some(entry))
                        }
                    }
                }
                Op::Remove(address) => {
                    let Some(i) = index.remove(&address) else {
                        continue;
                    };
                    endpoints.swap_remove(i);
                    if let Some(moved) = endpoints.get(i) {
                        index.insert(moved.address, i);
                    }
                    edited.removed += 1;
                    (Some(i), None)
                }
            };
            edited.changes += 1;
            if rebuild {
                continue;
            }
            if edited.changes > LARGE_CHANGE {
                rebuild = true;
                continue;
            }
            let endpoint = entry.as_ref().map(Entry::picker_endpoint);
            let change = match (change_at, &endpoint) {
                (Some(i), Some(e)) => PickerChange::Replaced(i, e),
                (None, Some(e)) => PickerChange::Added(e),
                (Some(i), None) => PickerChange::Removed(i),
                (None, None) => continue,
            };
            picker = picker.as_ref().unwrap_or(&base.picker).changed(&change);
            rebuild = picker.is_none();
        }
        if edited.changes == 0 {
            return edited;
        }
        edited.rebuilt = rebuild;
        let picker = match picker {
            Some(picker) if !rebuild => picker,
            _ => {
                let all: Vec<PickerEndpoint> =
                    endpoints.iter().map(Entry::picker_endpoint).collect();
                Picker::build(&self.shared.policy, &all)
            }
        };
        let number = base.number + 1;
        self.shared.current.store(Arc::new(Version {
            picker,
            endpoints,
            number,
        }));
        self.shared.published.store(number, Ordering::SeqCst);
        edited
    }

    /// Applies `changes`, telling how, for tests.
    #[cfg(test)]
    pub(super) fn edit_for_test(&self, changes: Vec<Change<SocketAddr, u32>>) -> Edited {
        self.edit(changes.into_iter().map(Op::from))
    }
}

/// What one edit did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Edited {
    pub(super) added: usize,
    pub(super) removed: usize,
    pub(super) changes: usize,
    /// The picker was rebuilt rather than changed.
    pub(super) rebuilt: bool,
}
