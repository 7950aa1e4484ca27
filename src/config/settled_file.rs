use std::path::{Path, PathBuf};

/// Follows a configuration file's contents for a watcher that reads it
/// every interval. A change counts once the same new contents have been
/// read twice in a row: a file caught while it is rewritten in place
/// (empty, or half written) is never taken for the new configuration.
///
/// ```
/// use sinew::config::SettledFile;
///
/// let path = std::env::temp_dir().join(format!("settled-doc-{}.yaml", std::process::id()));
/// std::fs::write(&path, "services: {}\n").unwrap();
/// let mut file = SettledFile::new(&path, Vec::new());
/// assert_eq!(file.check(), None); // new contents, read once
/// assert_eq!(file.check().as_deref(), Some(&b"services: {}\n"[..])); // read again: settled
/// assert_eq!(file.check(), None); // unchanged since
/// # std::fs::remove_file(&path).unwrap();
/// ```
#[derive(Debug)]
pub struct SettledFile {
    path: PathBuf,
    seen: Vec<u8>,
    pending: Option<Vec<u8>>,
}

impl SettledFile {
    /// Follows `path`, whose contents in force are `seen`.
    pub fn new(path: impl AsRef<Path>, seen: Vec<u8>) -> Self {
        Self {
            path: path.as_ref().to_owned(),
            seen,
            pending: None,
        }
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file once; returns its contents when a change has
    /// settled. A file that cannot be read is a change not yet settled.
    pub fn check(&mut self) -> Option<Vec<u8>> {
        let Ok(contents) = super::read_limited(&self.path) else {
            self.pending = None;
            return None;
        };
        if contents == self.seen {
            self.pending = None;
            return None;
        }
        if self.pending.as_ref() == Some(&contents) {
            self.pending = None;
            self.seen = contents.clone();
            return Some(contents);
        }
        self.pending = Some(contents);
        None
    }
}
