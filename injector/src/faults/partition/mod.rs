//! `partition`: drop what the pod exchanges with chosen peers, so connections to them time
//! out while everything else flows. Pod scoped; by netlink inside the pod's network
//! namespace: u32 filters with a `gact drop` action in the tree of [`crate::faults::net`]
//! (egress: on our root `prio`; ingress: on the interface's `ingress` qdisc).
//!
//! ```yaml
//! partition.nri-chaos.io/pod: "{to: [10.0.3.0/24, 10.0.4.7:5432/tcp], duration: 2m}"
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `to` | the peers (required; see [`crate::faults::net::target`]) |
//! | `direction` | `both` (default), `egress` (what the pod sends) or `ingress` |
//! | `interface` | interface inside the pod netns; default every non-loopback interface |

use std::fmt;

use crate::annotations::FaultKind;
use crate::faults::net::target::{describe, read_direction, read_targets};
use crate::faults::net::{Direction, NetRules, SlotSpec, Target};
use crate::faults::netem::interface;
use crate::fields::{FieldError, FieldSpec, FieldType, Fields};

/// Parameters of a `partition` fault.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionFault {
    /// The peers.
    pub to: Vec<Target>,
    /// Which way.
    pub direction: Direction,
    /// Interface in the pod netns; `None` = every non-loopback interface.
    pub interface: Option<String>,
}

impl PartitionFault {
    /// The fields `partition` accepts besides the timing fields.
    pub const FIELDS: &'static [FieldSpec] = &[
        FieldSpec::new("to", FieldType::Targets, "required", "the peers cut off"),
        FieldSpec::new(
            "direction",
            FieldType::Direction,
            "both",
            "egress (what the pod sends), ingress (what it receives) or both",
        ),
        FieldSpec::new(
            "interface",
            FieldType::Interface,
            "every non-loopback interface",
            "interface inside the pod's network namespace",
        ),
    ];
    /// An example value (`ctl explain`; a unit test parses it).
    pub const EXAMPLE: &'static str = "{to: [10.0.3.0/24, 10.0.4.7:5432/tcp], duration: 2m}";

    /// Reads the `partition` fields.
    pub(crate) fn from_fields(fields: &mut Fields) -> Result<Self, FieldError> {
        let Some(to) = read_targets(fields)? else {
            return Err(FieldError::Refused(
                "partition needs to: [targets] (the peers to cut off)".into(),
            ));
        };
        Ok(PartitionFault {
            to,
            direction: read_direction(fields, Direction::Both)?,
            interface: interface(fields)?,
        })
    }
}

impl fmt::Display for PartitionFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.to, self.direction))?;
        match &self.interface {
            Some(i) => write!(f, " interface={i}"),
            None => Ok(()),
        }
    }
}

impl NetRules for PartitionFault {
    const RULES_KIND: FaultKind = FaultKind::Partition;
    const RULES_RECOVERED: &'static str = "partition removed";

    fn slot_spec(&self) -> SlotSpec<'_> {
        SlotSpec {
            qdisc: ("pfifo", Vec::new()),
            drop: true,
            targets: &self.to,
            direction: self.direction,
        }
    }

    fn interface(&self) -> Option<&str> {
        self.interface.as_deref()
    }
}
