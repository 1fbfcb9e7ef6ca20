//! Owned bundles of seams that lend a [`Kernel`]: the node's ([`HostKernel`]: the OCI hook,
//! the VM suite) and every recording fake ([`FakeKernel`]: unit tests).

use crate::seams::cgroup::{KernelFreezer, RecordingFreezer};
use crate::seams::netlink::{KernelNetlink, RecordingNetlink};
use crate::seams::procfs::{FakeProcesses, Procfs};
use crate::seams::signal::{PidfdSignaller, RecordingSignaller};
use crate::seams::stressors::{RecordingSpawner, WorkerSpawner};

use super::Kernel;

/// The node's kernel; stressors re-execute `/proc/self/exe`.
#[derive(Debug)]
pub struct HostKernel {
    freezer: KernelFreezer,
    procs: Procfs,
    stressors: WorkerSpawner,
}

impl Default for HostKernel {
    fn default() -> Self {
        HostKernel {
            freezer: KernelFreezer::default(),
            procs: Procfs::host(),
            stressors: WorkerSpawner::new("/proc/self/exe"),
        }
    }
}

impl HostKernel {
    /// The seams as the faults take them.
    pub fn kernel(&self) -> Kernel<'_> {
        Kernel {
            signaller: &PidfdSignaller,
            freezer: &self.freezer,
            procs: &self.procs,
            netlink: &KernelNetlink,
            stressors: &self.stressors,
        }
    }
}

/// Every seam's recording fake.
#[derive(Debug, Default)]
pub struct FakeKernel {
    /// Signals.
    pub signaller: RecordingSignaller,
    /// The freezer.
    pub freezer: RecordingFreezer,
    /// The process table.
    pub procs: FakeProcesses,
    /// Netlink.
    pub netlink: RecordingNetlink,
    /// Stressors.
    pub stressors: RecordingSpawner,
}

impl FakeKernel {
    /// Fakes with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// The fakes as the faults take them.
    pub fn kernel(&self) -> Kernel<'_> {
        Kernel {
            signaller: &self.signaller,
            freezer: &self.freezer,
            procs: &self.procs,
            netlink: &self.netlink,
            stressors: &self.stressors,
        }
    }
}
