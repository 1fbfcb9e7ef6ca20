//! The CPU scheduling of the NRI thread (`nri-chaos run --handler-rt-priority`).
//!
//! A handler plans for about 30 us, but on a small node containerd, the shims and runc run
//! while containers are created, and the fair scheduler (EEVDF) hands the handler's CPU to one
//! of them in the middle of the handler: measured on a busy 2-core node, 3-14% of the events
//! were switched out, for 50 us to 2 ms, and they made every p99. A lower nice value or a
//! shorter EEVDF slice did not change that count; `SCHED_FIFO` at the lowest real-time
//! priority (1) took it to none. Switching a thread in and out of the real-time class around
//! each handler cost more than it saved (two `sched_setattr` per event doubled the p50, and
//! the switch back let a waiting thread in before the reply). So the NRI connection has a
//! thread of its own (`nri-chaos-nri`, a single-threaded runtime: the transport, ttrpc and
//! every handler, which plan and return) that takes the setting once, with
//! `SCHED_FLAG_RESET_ON_FORK` (threads and processes it starts are plain fair tasks); fault
//! tasks, the control socket and the metrics server run on the fair runtime workers, so no
//! load on them takes CPU time from the node's processes. The kernel's real-time throttling
//! keeps 5% of every CPU for fair tasks whatever a real-time thread does.

use thiserror::Error;

/// The default real-time priority: the lowest, below every kernel and system RT thread.
pub const DEFAULT_RT_PRIORITY: u8 = 1;

/// How the NRI thread (the transport and every handler) is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerSched {
    /// The fair class, as every thread starts.
    Fair,
    /// `SCHED_FIFO` at this priority (1..=99).
    Fifo(u8),
}

/// Errors of the handler scheduling setting.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SchedError {
    /// The priority is outside what SCHED_FIFO takes.
    #[error("--handler-rt-priority {0}: 0 (off) or a SCHED_FIFO priority 1..=99")]
    Priority(u8),
    /// The kernel refused `sched_setattr`.
    #[error("sched_setattr(SCHED_FIFO, priority {priority}) for the NRI thread: {reason}{hint}")]
    Refused {
        /// The priority asked for.
        priority: u8,
        /// The kernel's answer.
        reason: String,
        /// What to do about it.
        hint: &'static str,
    },
}

impl HandlerSched {
    /// `--handler-rt-priority`: 0 is the fair class.
    pub fn from_priority(priority: u8) -> Result<HandlerSched, SchedError> {
        match priority {
            0 => Ok(HandlerSched::Fair),
            1..=99 => Ok(HandlerSched::Fifo(priority)),
            _ => Err(SchedError::Priority(priority)),
        }
    }

    /// Applies the setting to the calling thread.
    pub fn apply_here(&self) -> Result<(), SchedError> {
        let (policy, priority) = match *self {
            HandlerSched::Fair => (libc::SCHED_OTHER, 0),
            HandlerSched::Fifo(priority) => (libc::SCHED_FIFO, priority),
        };
        // Hand-written: sched_setattr (for its reset-on-fork flag) has no wrapper in libc or
        // rustix, only the raw system call number and struct.
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: policy as u32,
            sched_flags: libc::SCHED_FLAG_RESET_ON_FORK as u64,
            sched_nice: 0,
            sched_priority: u32::from(priority),
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: `attr` is a valid, initialised sched_attr whose `size` field is its own size;
        // the kernel only reads it during the call. pid 0 is the calling thread.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                &attr as *const libc::sched_attr,
                0,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        let hint = match err.raw_os_error() {
            Some(libc::EPERM) => {
                " (SCHED_FIFO needs CAP_SYS_NICE, and a cgroup with real-time time when the kernel \
                 has RT group scheduling; or pass --handler-rt-priority 0)"
            }
            _ => "",
        };
        Err(SchedError::Refused {
            priority,
            reason: err.to_string(),
            hint,
        })
    }
}

/// Field 41 of `/proc/<pid or task>/stat`: the scheduling policy (0 fair, 1 FIFO); `None`
/// when the text is not a stat line. For tests of the scheduling, here and in the supervisor.
#[cfg(test)]
pub(crate) fn policy_in_stat(stat: &str) -> Option<u32> {
    const POLICY_FIELD: usize = 41;
    // Fields after the command (which may hold spaces and parentheses) start at field 3.
    let after_comm = stat.rsplit_once(')')?.1;
    after_comm
        .split_whitespace()
        .nth(POLICY_FIELD - 3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of(stat: &str) -> u32 {
        policy_in_stat(stat).expect("a /proc stat line")
    }

    #[test]
    fn priorities_are_checked() {
        assert_eq!(HandlerSched::from_priority(0), Ok(HandlerSched::Fair));
        assert_eq!(HandlerSched::from_priority(1), Ok(HandlerSched::Fifo(1)));
        assert_eq!(
            HandlerSched::from_priority(100),
            Err(SchedError::Priority(100))
        );
    }

    /// Needs root (CAP_SYS_NICE): fails loudly without it.
    #[test]
    fn a_thread_takes_fifo_and_what_it_starts_does_not() {
        let (here, thread, child) = std::thread::spawn(|| {
            HandlerSched::Fifo(1)
                .apply_here()
                .expect("SCHED_FIFO 1 (the unit tests run as root)");
            let here = policy_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
            let thread = std::thread::spawn(|| {
                policy_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap())
            })
            .join()
            .unwrap();
            let out = std::process::Command::new("cat")
                .arg("/proc/self/stat")
                .output()
                .unwrap();
            (
                here,
                thread,
                policy_of(&String::from_utf8_lossy(&out.stdout)),
            )
        })
        .join()
        .unwrap();
        assert_eq!(here, libc::SCHED_FIFO as u32, "the handler thread");
        assert_eq!(thread, libc::SCHED_OTHER as u32, "a thread it starts");
        assert_eq!(child, libc::SCHED_OTHER as u32, "a process it starts");
    }

    /// Needs root: the thread drops CAP_SYS_NICE from its own effective set first.
    #[test]
    fn without_cap_sys_nice_it_is_a_clear_error() {
        let err = std::thread::spawn(|| {
            use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
            let mut sets = capabilities(None).expect("capget");
            assert!(
                sets.effective.contains(CapabilitySet::SYS_NICE),
                "the unit tests run as root, with CAP_SYS_NICE"
            );
            sets.effective.remove(CapabilitySet::SYS_NICE);
            set_capabilities(None, sets).expect("capset for this thread");
            HandlerSched::Fifo(1)
                .apply_here()
                .expect_err("SCHED_FIFO without CAP_SYS_NICE")
        })
        .join()
        .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("priority 1") && text.contains("needs CAP_SYS_NICE"),
            "{text}"
        );
    }
}
