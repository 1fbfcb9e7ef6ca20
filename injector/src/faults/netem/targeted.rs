//! netem with `to`: the netem qdisc in a band of the shared tree of [`crate::faults::net`],
//! reached only by the targets' packets.

use std::path::PathBuf;

use crate::annotations::FaultKind;
use crate::faults::net::{self, NetError, NetRulesUndo, SlotSpec};
use crate::faults::{Fault, Kernel, UndoLog};
use crate::seams::netlink::netem_options::netem_options;

use super::NetemFault;

/// A [`NetemFault`] with `to`, applied through the shared tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetedNetem(pub NetemFault);

impl Fault for TargetedNetem {
    const KIND: FaultKind = FaultKind::Netem;
    const RECOVERED: &'static str = "netem removed";
    /// The pod's network namespace file.
    type Target = PathBuf;
    type Undo = NetRulesUndo;
    type Error = NetError;

    fn apply(
        &self,
        kernel: &Kernel<'_>,
        netns: &PathBuf,
        log: &mut dyn UndoLog,
    ) -> Result<NetRulesUndo, NetError> {
        let fault = &self.0;
        let targets = fault.to.as_deref().unwrap_or_default();
        let spec = SlotSpec {
            qdisc: ("netem", netem_options(fault)),
            drop: false,
            targets,
            direction: fault.direction,
        };
        net::apply(kernel, netns, fault.interface.as_deref(), &spec, log)
    }

    fn recover(kernel: &Kernel<'_>, undo: NetRulesUndo) -> Result<(), NetError> {
        net::recover(kernel, &undo)
    }

    fn target_gone(err: &NetError) -> bool {
        err.target_gone()
    }
}
