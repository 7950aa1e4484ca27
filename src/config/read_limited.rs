//! Reading a configuration file without trusting its size.

use std::io::Read;
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
}
