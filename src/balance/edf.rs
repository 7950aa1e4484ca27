//! Weighted turns by earliest deadline first: endpoint `i`'s `k`-th turn
//! is due at `(k + ½) / weight_i`, so each endpoint's turns are spread
//! evenly and, in any prefix, every endpoint has had its share to within
//! one turn. Each turn costs O(log endpoints), whatever the weights; with
//! equal weights the turns go round the endpoints in order.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// The endless sequence of turns, as endpoint indices.
pub(super) enum Turns {
    /// Equal weights: the endpoints in order, round and round (what the
    /// heap would give, without its O(log N) per turn).
    Equal {
        n: u32,
        next: u32,
    },
    Weighted {
        due: BinaryHeap<Reverse<Due>>,
    },
}

impl Turns {
    /// Turns for endpoints of these weights (a weight of 0 counts as 1).
    pub(super) fn new(weights: &[u64]) -> Self {
        let equal = weights.windows(2).all(|w| w[0].max(1) == w[1].max(1));
        if equal {
            return Self::Equal {
                n: weights.len() as u32,
                next: 0,
            };
        }
        let due = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                Reverse(Due {
                    turn: 0,
                    weight: weight.max(1),
                    index: i as u32,
                })
            })
            .collect();
        Self::Weighted { due }
    }
}

impl Iterator for Turns {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match self {
            Self::Equal { n: 0, .. } => None,
            Self::Equal { n, next } => {
                let index = *next;
                *next = (*next + 1) % *n;
                Some(index)
            }
            Self::Weighted { due } => {
                let mut next = due.peek_mut()?;
                let index = next.0.index;
                // Updating through `PeekMut` sifts it down once, on drop.
                next.0.turn += 1;
                Some(index)
            }
        }
    }
}

/// An endpoint's next turn: its `turn`-th, due at `(turn + ½) / weight`.
#[derive(PartialEq, Eq)]
pub(super) struct Due {
    turn: u64,
    weight: u64,
    index: u32,
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        // (2a + 1) / 2w against (2b + 1) / 2v, exactly, in 128 bits.
        let left = u128::from(2 * self.turn + 1) * u128::from(other.weight);
        let right = u128::from(2 * other.turn + 1) * u128::from(self.weight);
        left.cmp(&right).then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::Turns;

    #[test]
    fn each_endpoint_gets_its_weight_in_turns_spread_evenly() {
        let turns: Vec<u32> = Turns::new(&[1, 3, 0]).take(10).collect();
        assert_eq!(turns, [1, 0, 1, 2, 1, 1, 0, 1, 2, 1]);
        let equal: Vec<u32> = Turns::new(&[5, 5, 5]).take(6).collect();
        assert_eq!(equal, [0, 1, 2, 0, 1, 2]);
        // The heap gives the same order for equal weights.
        let mut heap = Turns::new(&[5, 5, 5, 6]);
        if let Turns::Weighted { due } = &mut heap {
            due.retain(|d| d.0.index < 3);
        }
        let from_heap: Vec<u32> = heap.take(6).collect();
        assert_eq!(from_heap, equal);
        assert_eq!(Turns::new(&[]).next(), None);
    }
}
