//! A list whose versions share their unchanged parts.
//!
//! Endpoint sets are published as immutable versions: requests read one
//! version while the next is made. A plain `Vec` would make each version
//! copy every element, which at 100,000 endpoints costs more (reference
//! counts, strings) than the one-endpoint change it carries. Here elements
//! sit in fixed chunks behind `Arc`s: a new version clones the chunk
//! pointers and copies only the chunk it changes. Reading element `i` is two
//! indexed loads. Removal swaps the last element into the hole, so order is
//! not kept (nothing that uses the list depends on it).

use std::sync::Arc;

const SHIFT: usize = 8;
const CHUNK: usize = 1 << SHIFT;
const MASK: usize = CHUNK - 1;

/// A list sharing unchanged chunks between versions. Invariant: every
/// chunk holds `CHUNK` elements except the last, which is not empty.
#[derive(Debug)]
pub(crate) struct CowList<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Clone for CowList<T> {
    fn clone(&self) -> Self {
        Self {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<T> Default for CowList<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> CowList<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> SHIFT)?.get(i & MASK)
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &T> + Clone + '_ {
        Iter {
            chunks: self.chunks.iter().flat_map(|c| c.iter()),
            left: self.len,
        }
    }
}

impl<T: Clone> CowList<T> {
    /// Replaces element `i`, returning the old one; `None` (and no change)
    /// when `i` is out of range.
    pub(crate) fn set(&mut self, i: usize, value: T) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let chunk = Arc::make_mut(self.chunks.get_mut(i >> SHIFT)?);
        chunk
            .get_mut(i & MASK)
            .map(|slot| std::mem::replace(slot, value))
    }

    pub(crate) fn push(&mut self, value: T) {
        if self.len & MASK == 0 {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        if let Some(last) = self.chunks.last_mut() {
            Arc::make_mut(last).push(value);
            self.len += 1;
        }
    }

    pub(crate) fn pop(&mut self) -> Option<T> {
        let last = self.chunks.last_mut()?;
        let value = Arc::make_mut(last).pop();
        if last.is_empty() {
            self.chunks.pop();
        }
        self.len -= usize::from(value.is_some());
        value
    }

    /// Removes element `i` by moving the last element into its place.
    pub(crate) fn swap_remove(&mut self, i: usize) -> Option<T> {
        if i >= self.len {
            return None;
        }
        let last = self.pop()?;
        if i == self.len {
            Some(last)
        } else {
            self.set(i, last)
        }
    }
}

impl<T: Clone> FromIterator<T> for CowList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut list = Self::default();
        for item in items {
            list.push(item);
        }
        list
    }
}

/// Walks the chunks; knows its length, so that `ExactSizeIterator` holds.
#[derive(Clone)]
struct Iter<I> {
    chunks: I,
    left: usize,
}

impl<'a, T: 'a, I: Iterator<Item = &'a T>> Iterator for Iter<I> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        let item = self.chunks.next()?;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<'a, T: 'a, I: Iterator<Item = &'a T>> ExactSizeIterator for Iter<I> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_share_unchanged_chunks_and_differ_where_changed() {
        let first: CowList<usize> = (0..1000).collect();
        let mut second = first.clone();
        assert_eq!(second.set(300, 7), Some(300));
        second.push(1000);
        assert_eq!(second.swap_remove(5), Some(5));
        assert_eq!(first.len(), 1000);
        assert_eq!(first.get(300), Some(&300));
        assert_eq!(first.get(5), Some(&5));
        assert_eq!(second.len(), 1000);
        assert_eq!(second.get(300), Some(&7));
        assert_eq!(second.get(5), Some(&1000), "the last took the hole");
        assert_eq!(second.get(1000), None);
        // Only the changed chunks were copied.
        assert!(Arc::ptr_eq(&first.chunks[2], &second.chunks[2]));
        assert!(!Arc::ptr_eq(&first.chunks[1], &second.chunks[1]));
    }

    #[test]
    fn matches_a_vec_under_random_edits() {
        let mut list = CowList::default();
        let mut model = Vec::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for step in 0..5000 {
            let old = list.clone();
            let old_model = model.clone();
            match rng.u8(..3) {
                0 => {
                    list.push(step);
                    model.push(step);
                }
                1 if !model.is_empty() => {
                    let i = rng.usize(..model.len());
                    assert_eq!(list.swap_remove(i), Some(model.swap_remove(i)));
                }
                _ if !model.is_empty() => {
                    let i = rng.usize(..model.len());
                    assert_eq!(
                        list.set(i, step),
                        Some(std::mem::replace(&mut model[i], step))
                    );
                }
                _ => assert_eq!(list.pop(), None),
            }
            assert_eq!(list.iter().copied().collect::<Vec<_>>(), model);
            assert_eq!(list.iter().len(), model.len());
            assert_eq!(old.iter().copied().collect::<Vec<_>>(), old_model);
        }
        assert_eq!(list.swap_remove(list.len()), None);
        assert_eq!(list.set(list.len(), 0), None);
        assert_eq!(list.is_empty(), model.is_empty());
    }
}
