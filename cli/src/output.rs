//! Writing to stdout and stderr without `println!`, which panics when the
//! reader has gone away (`sinew config reviews ... | head`).

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout. A closed stdout is not an error: the reader
/// took what it wanted, so the command's own result stands. Any other
/// failure (a full disk, say) is.
pub(crate) fn print(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(format!("cannot write to stdout: {e}")),
        _ => Ok(()),
    }
}

/// Writes `text` to stderr, if it can: there is nowhere else to say that
/// it could not.
pub(crate) fn eprint(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
