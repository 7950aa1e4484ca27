//! A fast hash for maps keyed by socket addresses.
//!
//! Updates index up to 100,000 endpoints by address several times over;
//! std's SipHash made that a tenth of the work. The keys come from the
//! configuration (a file, a control plane), not from requests, so a hash
//! that resists flooding is not needed here.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;

/// Multiply-rotate hashing in the manner of rustc's FxHash.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl AddrHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(K);
    }
}

impl Hasher for AddrHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The high bits pick the bucket group: fold them in.
        self.0 ^ (self.0 >> 29)
    }
}

pub(crate) type AddrMap<V> = HashMap<SocketAddr, V, BuildHasherDefault<AddrHasher>>;
#[cfg(feature = "xds")]
pub(crate) type AddrSet = std::collections::HashSet<SocketAddr, BuildHasherDefault<AddrHasher>>;

/// An empty map with room for `n`.
pub(crate) fn addr_map<V>(n: usize) -> AddrMap<V> {
    AddrMap::with_capacity_and_hasher(n, BuildHasherDefault::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_spread_over_buckets() {
        let mut map = addr_map(100_000);
        for i in 0..100_000u32 {
            let address = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080));
            assert!(map.insert(address, i).is_none());
        }
        for i in (0..100_000u32).step_by(997) {
            let address = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 8080));
            assert_eq!(map.get(&address), Some(&i));
        }
        let v6: SocketAddr = "[::1]:80".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(map.get(&v6), None);
    }
}
