//! Kernel seams: narrow traits over the syscalls the faults need, each with a real
//! implementation and a recording fake, one seam per file.
//!
//! - [`signal`]: signals by pidfd ([`signal::Signaller`]).
//! - [`cgroup`]: a container's cgroups, their accounting and the freezer
//!   ([`cgroup::Freezer`]).
//! - [`procfs`]: OOM scores and process identity (PID + start time)
//!   ([`procfs::ProcessTable`]).

pub mod cgroup;
pub mod procfs;
pub mod signal;
