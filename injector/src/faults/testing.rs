//! Every kernel seam's fake in one bundle, for the faults' unit tests.

use crate::seams::cgroup::RecordingFreezer;
use crate::seams::netlink::RecordingNetlink;
use crate::seams::procfs::FakeProcesses;
use crate::seams::signal::RecordingSignaller;
use crate::seams::stressors::RecordingSpawner;

use super::Kernel;

/// The fakes.
#[derive(Debug, Default)]
pub(crate) struct Fakes {
    pub signaller: RecordingSignaller,
    pub freezer: RecordingFreezer,
    pub procs: FakeProcesses,
    pub netlink: RecordingNetlink,
    pub stressors: RecordingSpawner,
}

impl Fakes {
    pub fn new() -> Self {
        Self::default()
    }

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
