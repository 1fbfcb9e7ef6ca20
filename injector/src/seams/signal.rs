//! Signals, sent by pidfd so a recycled PID is never hit.
//!
//! [`Signaller::open`] pins a process (the real implementation holds a pidfd from
//! `pidfd_open(2)`, Linux 5.3+); [`Signaller::send`] signals the pinned process
//! (`pidfd_send_signal(2)`). Once the process has exited, sending fails with
//! [`SignalError::Exited`] instead of reaching whatever process got the PID next.
//! [`RecordingSignaller`] is the fake: it records `(pid, signal)` pairs.

use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::io::Errno;
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags};

use crate::faults::kill::Signal;

/// Errors of the signal seam.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The process has exited (or never existed).
    #[error("process {pid} has exited")]
    Exited {
        /// The process.
        pid: u32,
    },
    /// Not allowed to signal the process.
    #[error("not permitted to signal process {pid}")]
    PermissionDenied {
        /// The process.
        pid: u32,
    },
    /// The PID is not a valid process id (0 or above `i32::MAX`).
    #[error("{pid} is not a valid process id")]
    InvalidPid {
        /// The value given.
        pid: u32,
    },
    /// The kernel lacks pidfd support (needs Linux 5.3 or later).
    #[error("pidfd is not supported by this kernel (Linux 5.3 or later is needed)")]
    Unsupported,
    /// The handle has no pidfd (it was made by a fake).
    #[error("process handle for {pid} has no pidfd")]
    NoPidfd {
        /// The process.
        pid: u32,
    },
    /// Any other failure.
    #[error("{op} for process {pid}: {source}")]
    Io {
        /// The syscall.
        op: &'static str,
        /// The process.
        pid: u32,
        /// The error.
        source: std::io::Error,
    },
}

/// A process pinned for signalling: its PID and, for the real implementation, its pidfd.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl ProcessHandle {
    /// A handle holding a pidfd for `pid`.
    pub fn from_pidfd(pid: u32, pidfd: OwnedFd) -> Self {
        ProcessHandle {
            pid,
            pidfd: Some(pidfd),
        }
    }

    /// A handle holding only a PID (for fakes).
    pub fn from_pid(pid: u32) -> Self {
        ProcessHandle { pid, pidfd: None }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pidfd, when the handle holds one.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }
}

/// Opens processes and sends them signals.
pub trait Signaller: Send + Sync {
    /// Pins process `pid` for later signalling.
    fn open(&self, pid: u32) -> Result<ProcessHandle, SignalError>;
    /// Sends `signal` to the pinned process.
    fn send(&self, target: &ProcessHandle, signal: Signal) -> Result<(), SignalError>;
}

/// The real signaller: `pidfd_open(2)` and `pidfd_send_signal(2)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PidfdSignaller;

fn map_errno(errno: Errno, op: &'static str, pid: u32) -> SignalError {
    match errno {
        Errno::SRCH => SignalError::Exited { pid },
        Errno::PERM => SignalError::PermissionDenied { pid },
        Errno::NOSYS => SignalError::Unsupported,
        other => SignalError::Io {
            op,
            pid,
            source: other.into(),
        },
    }
}

fn to_rustix(signal: Signal) -> Result<rustix::process::Signal, SignalError> {
    let n = signal.number();
    if let Some(s) = rustix::process::Signal::from_named_raw(n) {
        return Ok(s);
    }
    // Realtime signals have no named constant in rustix.
    if (crate::faults::kill::SIGRTMIN..=crate::faults::kill::SIGRTMAX).contains(&n) {
        // SAFETY: `n` is a realtime signal number in 34..=64 (validated by `Signal`), a real,
        // non-zero Linux signal, and not one of the 32/33 signals libc reserves for itself.
        return Ok(unsafe { rustix::process::Signal::from_raw_unchecked(n) });
    }
    Err(SignalError::Io {
        op: "signal",
        pid: 0,
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

impl Signaller for PidfdSignaller {
    fn open(&self, pid: u32) -> Result<ProcessHandle, SignalError> {
        let raw = i32::try_from(pid).map_err(|_| SignalError::InvalidPid { pid })?;
        let rpid = Pid::from_raw(raw).ok_or(SignalError::InvalidPid { pid })?;
        let fd =
            pidfd_open(rpid, PidfdFlags::empty()).map_err(|e| map_errno(e, "pidfd_open", pid))?;
        Ok(ProcessHandle::from_pidfd(pid, fd))
    }

    fn send(&self, target: &ProcessHandle, signal: Signal) -> Result<(), SignalError> {
        let fd = target
            .pidfd()
            .ok_or(SignalError::NoPidfd { pid: target.pid })?;
        pidfd_send_signal(fd, to_rustix(signal)?)
            .map_err(|e| map_errno(e, "pidfd_send_signal", target.pid))
    }
}

/// A fake signaller recording every signal sent; [`RecordingSignaller::mark_exited`] makes a
/// PID behave as exited.
#[derive(Debug, Default)]
pub struct RecordingSignaller {
    sent: Mutex<Vec<(u32, Signal)>>,
    exited: Mutex<HashSet<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingSignaller {
    /// A fake with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `(pid, signal)` sent so far, in order.
    pub fn sent(&self) -> Vec<(u32, Signal)> {
        lock(&self.sent).clone()
    }

    /// From now on, `open` and `send` for `pid` fail with [`SignalError::Exited`].
    pub fn mark_exited(&self, pid: u32) {
        lock(&self.exited).insert(pid);
    }
}

impl Signaller for RecordingSignaller {
    fn open(&self, pid: u32) -> Result<ProcessHandle, SignalError> {
        if pid == 0 || i32::try_from(pid).is_err() {
            return Err(SignalError::InvalidPid { pid });
        }
        if lock(&self.exited).contains(&pid) {
            return Err(SignalError::Exited { pid });
        }
        Ok(ProcessHandle::from_pid(pid))
    }

    fn send(&self, target: &ProcessHandle, signal: Signal) -> Result<(), SignalError> {
        if lock(&self.exited).contains(&target.pid) {
            return Err(SignalError::Exited { pid: target.pid });
        }
        lock(&self.sent).push((target.pid, signal));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    /// Opens a pidfd for `pid`. These tests prove the pidfd path itself, so a machine without
    /// pidfd_open (Linux < 5.3, a seccomp filter) fails them loudly rather than passing them.
    fn open_pidfd(pid: u32) -> ProcessHandle {
        PidfdSignaller.open(pid).unwrap_or_else(|e| {
            panic!(
                "pidfd_open({pid}) failed: {e}; this test needs pidfd_open (Linux 5.3+, not \
                 blocked by seccomp) and cannot prove the pidfd signaller without it"
            )
        })
    }

    #[test]
    fn pidfd_signaller_terminates_a_real_child() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let handle = open_pidfd(child.id());
        assert_eq!(handle.pid(), child.id());
        assert!(handle.pidfd().is_some());
        PidfdSignaller.send(&handle, Signal::TERM).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        // Reaped: the pidfd still names that process, which is gone, never a recycled PID.
        let err = PidfdSignaller.send(&handle, Signal::KILL).unwrap_err();
        assert!(
            matches!(err, SignalError::Exited { pid } if pid == child.id()),
            "{err}"
        );
    }

    #[test]
    fn pidfd_signaller_realtime_signal() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let handle = open_pidfd(child.id());
        let rt = Signal::from_number(40).unwrap();
        PidfdSignaller.send(&handle, rt).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(40));
    }

    #[test]
    fn pidfd_signaller_refuses_bad_pids_and_fake_handles() {
        assert!(matches!(
            PidfdSignaller.open(0),
            Err(SignalError::InvalidPid { pid: 0 })
        ));
        assert!(matches!(
            PidfdSignaller.open(u32::MAX),
            Err(SignalError::InvalidPid { .. })
        ));
        assert!(matches!(
            PidfdSignaller.send(&ProcessHandle::from_pid(1), Signal::TERM),
            Err(SignalError::NoPidfd { pid: 1 })
        ));
        // PID above pid_max: no such process.
        match PidfdSignaller.open(i32::MAX as u32) {
            Err(SignalError::Exited { .. }) => {}
            other => panic!("pidfd_open(i32::MAX): expected ESRCH (exited), got {other:?}"),
        }
    }

    #[test]
    fn recording_signaller_records_in_order() {
        let fake = RecordingSignaller::new();
        let a = fake.open(10).unwrap();
        let b = fake.open(11).unwrap();
        assert!(a.pidfd().is_none());
        fake.send(&a, Signal::TERM).unwrap();
        fake.send(&b, Signal::KILL).unwrap();
        assert_eq!(fake.sent(), vec![(10, Signal::TERM), (11, Signal::KILL)]);
        fake.mark_exited(10);
        assert!(matches!(
            fake.open(10),
            Err(SignalError::Exited { pid: 10 })
        ));
        assert!(matches!(
            fake.send(&a, Signal::KILL),
            Err(SignalError::Exited { pid: 10 })
        ));
        assert!(matches!(
            fake.open(0),
            Err(SignalError::InvalidPid { pid: 0 })
        ));
        assert_eq!(fake.sent().len(), 2);
    }
}
