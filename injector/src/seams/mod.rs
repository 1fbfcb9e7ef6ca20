//! Kernel seams: narrow traits over the syscalls the faults need, each with a real
//! implementation and a recording fake, one seam per file.
//!
//! - [`signal`]: signals by pidfd ([`signal::Signaller`]).
//! - [`cgroup`]: a container's cgroups, their accounting and the freezer
//!   ([`cgroup::Freezer`]).
//! - [`netlink`]: a NETLINK_ROUTE socket inside a pod's network namespace (netlink-sys,
//!   netlink-packet-route): links and root qdiscs ([`netlink::Netlink`] /
//!   [`netlink::QdiscOps`], fake [`netlink::RecordingNetlink`]), and the netem qdisc's options.
//! - [`procfs`]: OOM scores and process identity (PID + start time)
//!   ([`procfs::ProcessTable`]).
//! - [`stressors`]: starting and stopping placed stressor processes
//!   ([`stressors::StressorSpawner`], fake [`stressors::RecordingSpawner`]).

pub mod cgroup;
pub mod netlink;
pub mod procfs;
pub mod signal;
pub mod stressors;
