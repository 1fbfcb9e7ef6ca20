//! Small helpers of the benchmark binaries.

/// The `q` quantile (0..=1, nearest rank) of `samples`; NaN when empty.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Resident memory of a process in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident memory of a process in KiB (`VmHWM` of /proc/<pid>/status).
pub fn hwm_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// When a process exits, seen through a pidfd taken before the request that should end it: a
/// thread polls the pidfd and reports the instant it became readable.
#[derive(Debug)]
pub struct ExitWatch {
    thread: std::thread::JoinHandle<Option<std::time::Instant>>,
}

impl ExitWatch {
    /// Takes a pidfd on `pid` now (so a recycled PID cannot be confused with it) and waits up
    /// to `limit` for the exit in a thread.
    pub fn start(pid: u32, limit: std::time::Duration) -> anyhow::Result<ExitWatch> {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            anyhow::bail!("pidfd_open({pid}): {}", std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let mut poll = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: `poll` points to one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut poll, 1, ms) };
            (n > 0).then(std::time::Instant::now)
        });
        Ok(ExitWatch { thread })
    }

    /// The instant the process exited, `None` if it did not within the limit.
    pub fn wait(self) -> Option<std::time::Instant> {
        self.thread.join().ok().flatten()
    }
}
