//! Files that hold configuration: read without trusting their size,
//! written so that a crash or a second writer never leaves one half
//! written, and nobody else can read it.

use std::io::{Read, Write};
use std::path::Path;

/// The largest file Sinew reads as configuration (a mesh file, a registry
/// store, the fail-static cache): 64 MiB, as large as the largest xDS
/// message. `/dev/zero` given as a mesh file is an error, not a process
/// that fills its memory.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads the whole file at `path`, or fails when it holds more than
/// [`MAX_FILE_BYTES`].
///
/// ```
/// let error = sinew::config::read_limited("/no/such/file").unwrap_err();
/// assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
/// ```
pub fn read_limited(path: impl AsRef<Path>) -> std::io::Result<Vec<u8>> {
    read_at_most(path.as_ref(), MAX_FILE_BYTES)
}

pub(crate) fn read_at_most(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut contents = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(contents)
}

/// Replaces `path` with `bytes`: written to a temporary file of a unique
/// name beside it (mode 0600), flushed to disk, renamed over `path`, and
/// the directory flushed too, so that the rename itself survives a crash.
/// The registry store and the discovery client's fail-static cache are
/// written so.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    ));
    let written = write_new(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written?;
    sync_directory(path)
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let directory = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_after_the_limit() {
        let error = read_at_most(Path::new("/dev/zero"), 1 << 20).err();
        assert_eq!(
            error.map(|e| e.to_string()).as_deref(),
            Some("larger than 1048576 bytes")
        );
        let dir = std::env::temp_dir().join(format!("sinew-read-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("small");
        let _ = std::fs::write(&path, b"12345");
        assert_eq!(read_at_most(&path, 5).ok(), Some(b"12345".to_vec()));
        assert!(read_at_most(&path, 4).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_is_private_and_replaced_whole() {
        let dir = std::env::temp_dir().join(format!(
            "sinew-files-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.join("store.json");
        std::fs::write(&path, "old").unwrap_or_else(|e| unreachable!("{e}"));
        write_private(&path, b"new").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(std::fs::read(&path).ok(), Some(b"new".to_vec()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or_default();
            assert_eq!(mode, 0o600);
        }
        // No temporary file is left behind.
        let left = std::fs::read_dir(&dir).map(Iterator::count).unwrap_or(0);
        assert_eq!(left, 1);
        // A directory that cannot be written: an error, not a panic.
        assert!(write_private(&dir.join("missing").join("x.json"), b"x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
