//! The kernel seams the engine acts through, bundled: real ones on a node, recording fakes in
//! unit tests.

use std::path::PathBuf;
use std::sync::Arc;

use injector::faults::Kernel;
use injector::seams::cgroup::{CgroupFs, Freezer, KernelFreezer};
use injector::seams::netlink::{KernelNetlink, Netlink};
use injector::seams::procfs::{ProcessTable, Procfs};
use injector::seams::signal::{PidfdSignaller, Signaller};
use injector::seams::stressors::{StressorSpawner, WorkerSpawner};

/// Everything the effects touch the kernel through.
#[derive(Clone)]
pub struct Seams {
    /// Signals by pidfd.
    pub signaller: Arc<dyn Signaller>,
    /// Freezes and thaws cgroups.
    pub freezer: Arc<dyn Freezer>,
    /// Reads and writes per-process state (/proc).
    pub procs: Arc<dyn ProcessTable>,
    /// Where cgroups are mounted.
    pub cgroups: CgroupFs,
    /// Where /proc is mounted (to resolve a container's cgroups from its init PID).
    pub proc_root: PathBuf,
    /// Netlink inside a pod's network namespace (netem).
    pub netlink: Arc<dyn Netlink>,
    /// Starts stressors (`<exe> stress-worker ...`).
    pub stressors: Arc<dyn StressorSpawner>,
}

impl std::fmt::Debug for Seams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams")
            .field("cgroups", &self.cgroups.root())
            .field("proc_root", &self.proc_root)
            .finish_non_exhaustive()
    }
}

impl Seams {
    /// The host's kernel. Stressors re-execute this very binary through /proc/self/exe, which
    /// stays valid even when the file on disk was replaced by an upgrade.
    pub fn host() -> Seams {
        Seams {
            signaller: Arc::new(PidfdSignaller),
            freezer: Arc::new(KernelFreezer::default()),
            procs: Arc::new(Procfs::host()),
            cgroups: CgroupFs::host(),
            proc_root: PathBuf::from("/proc"),
            netlink: Arc::new(KernelNetlink),
            stressors: Arc::new(WorkerSpawner::new("/proc/self/exe")),
        }
    }

    /// The seams as the faults take them.
    pub fn kernel(&self) -> Kernel<'_> {
        Kernel {
            signaller: self.signaller.as_ref(),
            freezer: self.freezer.as_ref(),
            procs: self.procs.as_ref(),
            netlink: self.netlink.as_ref(),
            stressors: self.stressors.as_ref(),
        }
    }
}
