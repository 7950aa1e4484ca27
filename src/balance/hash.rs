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
