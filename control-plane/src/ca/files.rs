//! The CA's state directory:
//!
//! - `ca.json`: the roots (certificate and key PEM, when each signs, how
//!   long each stays trusted), mode 0600;
//! - `bootstrap-tokens.json`: the bootstrap tokens (hashes, never the
//!   secrets), mode 0600.
//!
//! Each is written whole to a new 0600 file and renamed over the old one,
//! so a reader (or a crash) sees the old file or the new, never a mix, and
//! a key is never readable by others, not even briefly.

use super::root::Root;
use super::roots::Entry;
use super::spiffe::TrustDomain;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The roots' file in the state directory.
pub const STATE_FILE: &str = "ca.json";
/// The bootstrap tokens' file in the state directory.
pub const TOKENS_FILE: &str = "bootstrap-tokens.json";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    trust_domain: String,
    roots: Vec<StoredRoot>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRoot {
    certificate: String,
    key: String,
    active_from: u64,
    issued_until: u64,
    trusted_until: Option<u64>,
}

/// Makes the directory (0700) if it is not there.
pub(crate) fn make_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("{}: cannot create: {e}", dir.display()))
}

/// Reads `path` whole; `None` when there is no such file.
pub(crate) fn read(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match sinew::config::read_limited(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
    }
}

/// The roots in `dir`'s state file, `None` when there is none yet.
pub(crate) fn read_roots(
    dir: &Path,
    trust_domain: &TrustDomain,
) -> Result<Option<Vec<Entry>>, String> {
    let path = dir.join(STATE_FILE);
    let Some(bytes) = read(&path)? else {
        return Ok(None);
    };
    let at = |e: String| format!("{}: {e}", path.display());
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| at(e.to_string()))?;
    if file.trust_domain != trust_domain.as_str() {
        return Err(at(format!(
            "holds the CA of trust domain `{}`, not `{trust_domain}`: give that trust domain, or another state directory",
            file.trust_domain
        )));
    }
    if file.roots.is_empty() {
        return Err(at("roots: none".to_owned()));
    }
    let mut entries = Vec::new();
    for (i, stored) in file.roots.into_iter().enumerate() {
        // Validity is not checked here: an expired root is reported when
        // it would sign, and a rotation replaces it.
        let root = Root::from_pem(&stored.certificate, &stored.key, trust_domain, None)
            .map_err(|e| at(format!("roots[{i}]: {e}")))?;
        entries.push(Entry {
            root,
            active_from: stored.active_from,
            issued_until: stored.issued_until,
            persisted_until: stored.issued_until,
            trusted_until: stored.trusted_until,
        });
    }
    Ok(Some(entries))
}

/// The state file's contents for `entries`.
pub(crate) fn roots_file(entries: &[Entry], trust_domain: &TrustDomain) -> Result<Vec<u8>, String> {
    let file = StateFile {
        trust_domain: trust_domain.as_str().to_owned(),
        roots: entries
            .iter()
            .map(|e| StoredRoot {
                certificate: e.root.cert_pem.clone(),
                key: e.root.key_pem.clone(),
                active_from: e.active_from,
                issued_until: e.persisted_until.max(e.issued_until),
                trusted_until: e.trusted_until,
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())
}

/// Writes `bytes` to `path`, 0600 from the start, atomically.
pub(crate) async fn write(path: PathBuf, bytes: Vec<u8>) -> Result<(), String> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || sinew::config::write_private(&path, &bytes))
        .await
        .map_err(|e| format!("{shown}: {e}"))?
        .map_err(|e| format!("{shown}: cannot write: {e}"))
}

/// [`write`], blocking (at start).
pub(crate) fn write_now(path: &Path, bytes: &[u8]) -> Result<(), String> {
    sinew::config::write_private(path, bytes)
        .map_err(|e| format!("{}: cannot write: {e}", path.display()))
}
