//! One module per fault: its parameters, how they are read from the annotation value, and its
//! apply and recovery through the kernel seams, behind one trait, [`Fault`].
//!
//! The timing fields shared by every fault (`after`, `duration`, `every`, `count`, `jitter`,
//! `probability`) are read by [`crate::plan`]; the modules here read only their own fields.
//!
//! [`Fault::apply`] acts through the seams bundled in [`Kernel`] and returns what must be
//! undone ([`Fault::Undo`], which converts to the journal's [`Recovery`]); before each side
//! effect it records that recovery in an [`UndoLog`] (the plugin's durable journal, or
//! [`NoUndoLog`] in the hook), and if it fails halfway it undoes what it did, or leaves it
//! recorded when the undo fails too. [`Fault::recover`] undoes from that value alone;
//! [`recover`] does it from a journal entry's [`Recovery`] after a restart. Apply logs one
//! line when it has acted (`signal sent`, `frozen`, `netem installed`...; the plugin runs it in
//! a `firing` span naming the pod, container and firing). The plugin only schedules these
//! calls; the OCI hook calls the same functions. [`HostKernel`] lends the node's seams,
//! [`FakeKernel`] every recording fake.

pub mod bandwidth;
pub mod exec;
pub mod freeze;
mod kernels;
pub mod kill;
pub mod net;
pub mod netem;
pub mod oom;
pub mod partition;
pub mod start;
pub mod stress;
mod undo;

pub use kernels::{FakeKernel, HostKernel};
pub use undo::{
    recover, Kernel, NoUndoLog, RecordingUndoLog, Slot, UndoError, UndoLog, UndoLogError,
};

use crate::annotations::FaultKind;
use crate::journal::Recovery;
use crate::seams::cgroup::ContainerCgroup;

/// A running container, as the `stress` and `oom` faults act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its cgroups (stressors are placed there; its processes are listed there).
    pub cgroup: ContainerCgroup,
    /// Its init process: stressors exit when it does.
    pub pid: u32,
    /// Its memory limit, for sizes in % and for an OOM kill.
    pub memory_limit: Option<u64>,
    /// How long a firing holds (stressors end by themselves then).
    pub hold: std::time::Duration,
}

/// What a fault's apply returns: converts to the journal's [`Recovery`] (None: nothing to
/// undo, e.g. a signal).
pub trait Undo: Send {
    /// The recovery to journal.
    fn recovery(&self) -> Option<Recovery>;
}

/// A fault kind's apply and recovery.
pub trait Fault {
    /// Its kind.
    const KIND: FaultKind;
    /// The log line of a recovered firing.
    const RECOVERED: &'static str;
    /// Whether apply waits on the kernel (the scheduler runs it on a blocking thread).
    const BLOCKS: bool = true;
    /// Whether apply records in its undo log before any side effect: the scheduler then
    /// writes the firing's count with that first record, one durable write for both.
    const JOURNALS_FIRST: bool = false;

    /// What it acts on (a process, a cgroup, a network namespace...).
    type Target;
    /// What must be undone.
    type Undo: Undo;
    /// Its errors.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies one firing to `target`, recording in `log` what must be undone before doing
    /// it. On an error, what was done has been undone and cleared from `log`, or stays
    /// recorded there (the undo failed too; the error says so) for a later retry.
    fn apply(
        &self,
        kernel: &Kernel<'_>,
        target: &Self::Target,
        log: &mut dyn UndoLog,
    ) -> Result<Self::Undo, Self::Error>;

    /// Undoes a firing from `undo` alone; safe to repeat.
    fn recover(kernel: &Kernel<'_>, undo: Self::Undo) -> Result<(), Self::Error>;

    /// The error says the target is gone (the container exited, the pod's namespace went
    /// away): nothing was done and nothing is wrong.
    fn target_gone(_err: &Self::Error) -> bool {
        false
    }

    /// The error is passing (nothing was done, the target is as before, and the same apply may
    /// well succeed a moment later): the scheduler retries the firing a few times before it
    /// reports it failed.
    fn transient(_err: &Self::Error) -> bool {
        false
    }
}
