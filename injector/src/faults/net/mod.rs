//! What the targeted network faults share (`netem` with `to`, `partition`, `bandwidth`): the
//! `to` and `direction` fields ([`target`]), targets as u32 matches ([`rules`]), and the one
//! qdisc tree of ours per interface they compose in ([`tree`]), with its apply and recovery
//! over the netlink seam.

mod changes;
mod ifb;
pub mod rules;
pub mod target;
pub mod tree;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::annotations::FaultKind;
use crate::faults::{Fault, Kernel, UndoLog, UndoLogError};
use crate::seams::netlink::{select_links, NetlinkError, NoLink};

pub use target::{Direction, Proto, Target};
pub use tree::{NetRulesUndo, RuledInterface, SlotSpec};

/// Errors of the targeted network faults.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// `interface` selects nothing.
    #[error(transparent)]
    NoLink(#[from] NoLink),
    /// An untargeted netem of ours is the interface's root qdisc.
    #[error("interface {interface}: an untargeted {kind} of nri-chaos is its root qdisc; a targeted fault cannot join it (remove it first)")]
    Untargeted {
        /// The interface.
        interface: String,
        /// Its kind.
        kind: String,
    },
    /// Every band of the tree is taken.
    #[error("interface {interface}: {max} targeted network faults already hold it (the most one interface takes)")]
    NoFreeSlot {
        /// The interface.
        interface: String,
        /// How many there can be.
        max: u8,
    },
    /// The targets need too many filters.
    #[error("the targets need {filters} u32 filters per direction, more than {max} (fewer targets or narrower port ranges)")]
    TooManyFilters {
        /// How many.
        filters: usize,
        /// The most.
        max: usize,
    },
    /// The recovery could not be journaled, so nothing was done.
    #[error("not applied: {0}")]
    Log(#[from] UndoLogError),
    /// A step failed, and undoing the steps before it failed too.
    #[error("{error}; undoing what was done failed too (kept in the journal): {undo}")]
    NotUndone {
        /// Why the step failed.
        error: Box<NetError>,
        /// Why the undo failed.
        undo: Box<NetError>,
    },
    /// Removing the rules failed on some interfaces (every interface was tried).
    #[error("removing the network rules in {}: {}", .netns.display(), .failures.join("; "))]
    Remove {
        /// The namespace.
        netns: PathBuf,
        /// `interface <name>: <error>` per failure.
        failures: Vec<String>,
    },
}

impl NetError {
    /// The namespace is gone: nothing was done and nothing is wrong.
    pub fn target_gone(&self) -> bool {
        matches!(self, NetError::Netlink(NetlinkError::Namespace { .. }))
    }
}

/// Applies `spec` in `netns` on `interface` (or every non-loopback one), logging one line.
pub fn apply(
    kernel: &Kernel<'_>,
    netns: &Path,
    interface: Option<&str>,
    spec: &SlotSpec<'_>,
    log: &mut dyn UndoLog,
) -> Result<NetRulesUndo, NetError> {
    let started = std::time::Instant::now();
    let mut ops = kernel.netlink.open(netns)?;
    let all = ops.links()?;
    let links = select_links(all.clone(), interface)?;
    let undo = tree::install(ops.as_mut(), netns, &all, links, spec, log)?;
    let names: Vec<String> = undo
        .interfaces
        .iter()
        .map(|s| format!("{}#{}", s.name, s.slot))
        .collect();
    tracing::info!(
        interfaces = %names.join(","),
        rules = %target::describe(spec.targets, spec.direction),
        apply_us = started.elapsed().as_micros() as u64,
        "network rules installed"
    );
    Ok(undo)
}

/// Removes what `undo` installed; a namespace that no longer exists is done.
pub fn recover(kernel: &Kernel<'_>, undo: &NetRulesUndo) -> Result<(), NetError> {
    let mut ops = match kernel.netlink.open(&undo.netns) {
        Ok(ops) => ops,
        Err(err) if err.is_namespace_gone() => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    tree::remove(ops.as_mut(), undo)
}

/// A targeted network fault: what it puts in its slot. [`Fault`] comes with it (apply and
/// recovery through the shared tree, on the pod's network namespace file).
pub trait NetRules {
    /// Its kind.
    const RULES_KIND: FaultKind;
    /// The log line of a recovered firing.
    const RULES_RECOVERED: &'static str;
    /// Its slot: the band's qdisc, drop or classify, the targets and the direction.
    fn slot_spec(&self) -> SlotSpec<'_>;
    /// The interface it names, if any.
    fn interface(&self) -> Option<&str>;
}

impl<T: NetRules> Fault for T {
    const KIND: FaultKind = T::RULES_KIND;
    const RECOVERED: &'static str = T::RULES_RECOVERED;
    const JOURNALS_FIRST: bool = true;
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
        apply(kernel, netns, self.interface(), &self.slot_spec(), log)
    }

    fn recover(kernel: &Kernel<'_>, undo: NetRulesUndo) -> Result<(), NetError> {
        recover(kernel, &undo)
    }

    fn target_gone(err: &NetError) -> bool {
        err.target_gone()
    }
}
