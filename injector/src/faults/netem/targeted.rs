//! netem with `to`: the netem qdisc in a band of the shared tree of [`crate::faults::net`],
//! reached only by the targets' packets.

use crate::annotations::FaultKind;
use crate::faults::net::{NetRules, SlotSpec};
use crate::seams::netlink::netem_options::netem_options;

use super::NetemFault;

/// A [`NetemFault`] with `to`, applied through the shared tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetedNetem(pub NetemFault);

impl NetRules for TargetedNetem {
    const RULES_KIND: FaultKind = FaultKind::Netem;
    const RULES_RECOVERED: &'static str = "netem removed";

    fn slot_spec(&self) -> SlotSpec<'_> {
        let fault = &self.0;
        SlotSpec {
            qdisc: ("netem", netem_options(fault)),
            drop: false,
            targets: fault.to.as_deref().unwrap_or_default(),
            direction: fault.direction,
        }
    }

    fn interface(&self) -> Option<&str> {
        self.0.interface.as_deref()
    }
}
