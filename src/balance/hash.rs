use xxhash_rust::xxh64::xxh64;

/// The hash the consistent-hashing pickers use for a request key (a header
/// value, or a key the application supplies): xxHash64 with seed 0, as
/// Envoy uses, so that every client maps a key to the same endpoint.
#[inline]
pub fn hash_key(key: &[u8]) -> u64 {
    xxh64(key, 0)
}

/// Hash of an endpoint address with a salt (a replica number, or which of
/// Maglev's two hashes), stable across processes.
pub(super) fn hash_endpoint(address: &std::net::SocketAddr, salt: u64) -> u64 {
    let text = address.to_string();
    xxh64(text.as_bytes(), salt)
}

/// A request's key for the consistent-hashing policies (ring hash,
/// Maglev): put it in the request's extensions, and requests with the same
/// key go to the same endpoint while the set does not change (and mostly
/// when it does). A header named by the policy, when the request has it,
/// is hashed instead.
///
/// ```
/// use sinew::balance::HashKey;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(HashKey::of(b"user-42"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashKey(pub u64);

impl HashKey {
    /// The key for these bytes, hashed with [`hash_key`].
    ///
    /// ```
    /// use sinew::balance::{HashKey, hash_key};
    /// assert_eq!(HashKey::of(b"user-42"), HashKey(hash_key(b"user-42")));
    /// ```
    pub fn of(key: &[u8]) -> Self {
        Self(hash_key(key))
    }
}
