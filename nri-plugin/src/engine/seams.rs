//! The kernel seams the engine acts through, bundled: real ones on a node, recording fakes in
//! unit tests.

use std::path::PathBuf;
use std::sync::Arc;

use injector::seams::cgroup::{CgroupFs, Freezer, KernelFreezer};
use injector::seams::procfs::{ProcessTable, Procfs};
use injector::seams::signal::{PidfdSignaller, Signaller};

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
    /// The executable started as `<exe> stress-worker ...` for stressors.
    pub worker_exe: PathBuf,
}

impl std::fmt::Debug for Seams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seams")
            .field("cgroups", &self.cgroups.root())
            .field("proc_root", &self.proc_root)
            .field("worker_exe", &self.worker_exe)
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
            worker_exe: PathBuf::from("/proc/self/exe"),
        }
    }
}
