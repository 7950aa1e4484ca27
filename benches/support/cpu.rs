//! The CPU time this process has used, for per-request CPU at saturation.

use std::time::Duration;

/// User plus system CPU time of this process, from /proc/self/stat
/// (Linux; `None` elsewhere).
pub(crate) fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) end with ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // The kernel's USER_HZ, 100 on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}
