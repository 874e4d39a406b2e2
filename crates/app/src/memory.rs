//! The process's peak resident memory, for the summaries that report it.

/// Peak resident set size in MiB (`VmHWM` of `/proc/self/status`); `None` off Linux.
pub fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
