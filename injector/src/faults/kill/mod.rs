//! `kill`: send a signal to the container's init process.
//!
//! ```yaml
//! kill.nri-chaos.io/container.app: "{after: 30s, signal: SIGTERM}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `signal` | name or number: `SIGKILL`, `KILL`, `sigterm`, `9`, `SIGRTMIN+2`; default `SIGKILL` |
//!
//! Accepted signals are the Linux signals 1 to 31 and the realtime signals 34 (`SIGRTMIN`) to
//! 64 (`SIGRTMAX`). A kill is instantaneous, so `duration` is refused; `after`, `every`,
//! `count`, `jitter` and `probability` apply. When the signal ends the process, CRI reports exit
//! code 128 + the signal number (137 for `SIGKILL`), and the kubelet restarts the container; the
//! restarted container is not killed again once `count` (default 1) is spent.

use crate::annotations::FaultKind;
use std::fmt;

use super::{Fault, Kernel, Undo, UndoLog};
use crate::fields::{FieldError, FieldSpec, FieldType, Fields};
use crate::journal::Recovery;
use crate::seams::signal::{ProcessHandle, SignalError, Signaller};

/// Errors of the kill fault.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// The text is not a signal we accept.
    #[error(
        "{} is not a signal (expected a name such as SIGTERM, TERM, SIGRTMIN+1, or a number 1-31 or 34-64)",
        crate::annotations::quote(.0)
    )]
    InvalidSignal(String),
    /// Sending the signal failed.
    #[error(transparent)]
    Signal(#[from] SignalError),
}

/// Names of signals 1..=31 (Linux numbering taken from libc for this architecture).
const NAMED: [(i32, &str); 31] = [
    (libc::SIGHUP, "HUP"),
    (libc::SIGINT, "INT"),
    (libc::SIGQUIT, "QUIT"),
    (libc::SIGILL, "ILL"),
    (libc::SIGTRAP, "TRAP"),
    (libc::SIGABRT, "ABRT"),
    (libc::SIGBUS, "BUS"),
    (libc::SIGFPE, "FPE"),
    (libc::SIGKILL, "KILL"),
    (libc::SIGUSR1, "USR1"),
    (libc::SIGSEGV, "SEGV"),
    (libc::SIGUSR2, "USR2"),
    (libc::SIGPIPE, "PIPE"),
    (libc::SIGALRM, "ALRM"),
    (libc::SIGTERM, "TERM"),
    (libc::SIGSTKFLT, "STKFLT"),
    (libc::SIGCHLD, "CHLD"),
    (libc::SIGCONT, "CONT"),
    (libc::SIGSTOP, "STOP"),
    (libc::SIGTSTP, "TSTP"),
    (libc::SIGTTIN, "TTIN"),
    (libc::SIGTTOU, "TTOU"),
    (libc::SIGURG, "URG"),
    (libc::SIGXCPU, "XCPU"),
    (libc::SIGXFSZ, "XFSZ"),
    (libc::SIGVTALRM, "VTALRM"),
    (libc::SIGPROF, "PROF"),
    (libc::SIGWINCH, "WINCH"),
    (libc::SIGIO, "IO"),
    (libc::SIGPWR, "PWR"),
    (libc::SIGSYS, "SYS"),
];

/// Accepted alternative names.
const ALIASES: [(i32, &str); 3] = [
    (libc::SIGABRT, "IOT"),
    (libc::SIGIO, "POLL"),
    (libc::SIGCHLD, "CLD"),
];

/// First realtime signal usable by applications (glibc reserves 32 and 33).
pub const SIGRTMIN: i32 = 34;
/// Last realtime signal.
pub const SIGRTMAX: i32 = 64;

/// A validated Linux signal number: 1..=31 or 34..=64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

impl Signal {
    /// `SIGKILL`, the default.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// `SIGTERM`.
    pub const TERM: Signal = Signal(libc::SIGTERM);

    /// The signal with this number, if it is one we accept.
    pub fn from_number(n: i32) -> Option<Signal> {
        let named = NAMED.iter().any(|(num, _)| *num == n);
        (named || (SIGRTMIN..=SIGRTMAX).contains(&n)).then_some(Signal(n))
    }

    /// Parses a name (`SIGTERM`, `TERM`, `sigterm`, `SIGRTMIN+2`, `RTMAX-1`) or a number (`15`).
    pub fn parse(text: &str) -> Result<Signal, KillError> {
        let bad = || KillError::InvalidSignal(text.to_string());
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<i32>()
                .ok()
                .and_then(Signal::from_number)
                .ok_or_else(bad);
        }
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((n, _)) = NAMED.iter().chain(ALIASES.iter()).find(|(_, s)| *s == name) {
            return Ok(Signal(*n));
        }
        let offset = |rest: &str| -> Option<i32> {
            if rest.is_empty() {
                return Some(0);
            }
            let digits = rest.get(1..)?;
            if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            digits.parse().ok()
        };
        let n = if let Some(rest) = name.strip_prefix("RTMIN") {
            if !(rest.is_empty() || rest.starts_with('+')) {
                return Err(bad());
            }
            SIGRTMIN + offset(rest).ok_or_else(bad)?
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            if !(rest.is_empty() || rest.starts_with('-')) {
                return Err(bad());
            }
            SIGRTMAX - offset(rest).ok_or_else(bad)?
        } else {
            return Err(bad());
        };
        if (SIGRTMIN..=SIGRTMAX).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(bad())
        }
    }

    /// The signal number.
    pub const fn number(self) -> i32 {
        self.0
    }

    /// The canonical name: `SIGTERM`, `SIGRTMIN`, `SIGRTMIN+3`, `SIGRTMAX`.
    pub fn name(self) -> String {
        if let Some((_, s)) = NAMED.iter().find(|(n, _)| *n == self.0) {
            return format!("SIG{s}");
        }
        match self.0 {
            SIGRTMIN => "SIGRTMIN".to_string(),
            SIGRTMAX => "SIGRTMAX".to_string(),
            n => format!("SIGRTMIN+{}", n - SIGRTMIN),
        }
    }

    /// The exit code CRI reports for a process ended by this signal: 128 + number.
    pub const fn exit_code(self) -> i32 {
        128 + self.0
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Parameters of a `kill` fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillFault {
    /// The signal to send (default `SIGKILL`).
    pub signal: Signal,
}

impl Default for KillFault {
    fn default() -> Self {
        KillFault {
            signal: Signal::KILL,
        }
    }
}

impl KillFault {
    /// The fields `kill` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[FieldSpec::new(
        "signal",
        FieldType::Signal,
        "SIGKILL",
        "the signal sent to the container's init process (through a pidfd)",
    )];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{after: 10s, signal: SIGTERM}";

    /// Reads the `kill` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let signal = match fields.text("signal")? {
            None => Signal::KILL,
            Some(text) => Signal::parse(&text).map_err(|_| FieldError::Invalid {
                field: fields.name("signal"),
                text,
                reason: "is not a signal (expected a name such as SIGTERM, TERM, SIGRTMIN+1, or a number 1-31 or 34-64)".to_string(),
            })?,
        };
        Ok(KillFault { signal })
    }

    /// Sends the signal to `target` through `signaller`.
    pub fn execute(
        &self,
        signaller: &dyn Signaller,
        target: &ProcessHandle,
    ) -> Result<(), KillError> {
        signaller.send(target, self.signal)?;
        Ok(())
    }
}

/// A signal is not undone: nothing to journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signalled;

impl Undo for Signalled {
    fn recovery(&self) -> Option<Recovery> {
        None
    }
}

impl Fault for KillFault {
    const KIND: FaultKind = FaultKind::Kill;
    const RECOVERED: &'static str = "signal sent";
    const BLOCKS: bool = false;
    /// The container's init process, pinned by a pidfd at arm time.
    type Target = ProcessHandle;
    type Undo = Signalled;
    type Error = KillError;

    fn apply(
        &self,
        kernel: &Kernel<'_>,
        target: &ProcessHandle,
        _log: &mut dyn UndoLog,
    ) -> Result<Signalled, KillError> {
        self.execute(kernel.signaller, target)?;
        tracing::info!(signal = %self.signal, pid = target.pid(), "signal sent");
        Ok(Signalled)
    }

    fn recover(_kernel: &Kernel<'_>, _undo: Signalled) -> Result<(), KillError> {
        Ok(())
    }

    fn target_gone(err: &KillError) -> bool {
        matches!(err, KillError::Signal(SignalError::Exited { .. }))
    }
}

impl fmt::Display for KillFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signal={}", self.signal)
    }
}

#[cfg(test)]
mod tests;
