//! The one qdisc tree of ours per interface that every targeted network fault of a pod
//! shares, and the slots the faults take in it.
//!
//! ```text
//! root  prio 4e43: (16 bands; every priority maps to band 1, class 4e43:1)
//!  ├─ 4e43:1   the foreign root qdisc, moved here while the tree stands (or the default)
//!  ├─ 4e43:s   slot s (2..=16) of one fault: netem / tbf (handle 4e5s:), pfifo for a partition
//!  └─ filters  u32, preference 2s (IPv4) / 2s+1 (IPv6), parent 4e43:: flowid 4e43:s, or a
//!              gact drop (partition)
//! ingress ffff:  u32 filters, same preferences, gact drop (a partition's ingress side);
//!                preference 64: every packet, mirred egress redirect to ifb4e43-<ifindex>
//! ifb4e43-<ifindex>: the same tree, matching sources (netem / bandwidth ingress shaping;
//!                    [`super::ifb`])
//! ```
//!
//! A fault takes the lowest free slot; its recovery removes its filters and its band's qdisc,
//! and the last one out deletes the tree and puts the foreign root qdisc back (every fault's
//! journal entry carries it, read from the root or from band 1). Undo is journaled before any
//! change.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::faults::undo::clear_logged;
use crate::faults::UndoLog;
use crate::journal::Recovery;
use crate::seams::netlink::tc::{self, Verdict, ETH_P_IPV6};
use crate::seams::netlink::{Link, Qdisc, QdiscOps, SavedQdisc, NRI_CHAOS_HANDLE};

use super::changes::{build, filters, remove_one, side_filters};
use super::rules::Side;
use super::target::{Direction, Target};
use super::NetError;

/// TC_H_ROOT.
pub(super) const ROOT: u32 = u32::MAX;
/// TC_H_INGRESS: the parent of the ingress qdisc.
pub(super) const INGRESS_PARENT: u32 = 0xffff_fff1;
/// The ingress qdisc's handle.
pub(super) const INGRESS_HANDLE: u32 = 0xffff_0000;
/// The band unclassified traffic takes.
pub(super) const DEFAULT_BAND: u32 = 1;
/// The first band a fault can take.
pub(super) const FIRST_SLOT: u8 = 2;
/// The preference of the redirect to the ifb device (after every slot's 2s / 2s + 1).
pub(super) const REDIRECT_PREF: u16 = 64;

/// Serialises tree changes of this process (two faults must not take the same slot).
static TREE: Mutex<()> = Mutex::new(());

/// The class of band `b` of our tree.
pub(super) fn class(band: u32) -> u32 {
    NRI_CHAOS_HANDLE | band
}

/// The handle of slot `s`'s qdisc (`4e5s:`).
pub fn slot_handle(slot: u8) -> u32 {
    (0x4e50 + u32::from(slot)) << 16
}

/// The preference of slot `s`'s filters of `protocol`: the kernel keeps one protocol per
/// preference, so IPv4 and IPv6 take two (`2s` and `2s + 1`).
pub fn pref(slot: u8, protocol: u16) -> u16 {
    u16::from(slot) * 2 + u16::from(protocol == ETH_P_IPV6)
}

/// What one fault puts in a slot.
#[derive(Debug, Clone)]
pub struct SlotSpec<'a> {
    /// The band's qdisc kind and options (a partition's band holds an idle pfifo).
    pub qdisc: (&'a str, Vec<u8>),
    /// Drop (partition) or classify into the band.
    pub drop: bool,
    /// The peers.
    pub targets: &'a [Target],
    /// Which way.
    pub direction: Direction,
}

/// An interface a targeted network fault acts on, and what undoing it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuledInterface {
    /// Interface index in the pod's namespace.
    pub index: i32,
    /// Interface name.
    pub name: String,
    /// The foreign root qdisc to put back when the tree goes.
    pub saved: Option<SavedQdisc>,
    /// The fault's slot (band, filter preference).
    pub slot: u8,
    /// Whether it has ingress filters (a partition's ingress side).
    pub ingress: bool,
    /// The ifb device its ingress shaping goes through (netem, bandwidth), by name.
    #[serde(default)]
    pub ifb: Option<String>,
    /// Its slot in the ifb device's tree.
    #[serde(default)]
    pub ifb_slot: u8,
}

/// Whether slot `s` of a tree is taken, from its qdiscs.
fn taken(qdiscs: &[Qdisc], s: u8) -> bool {
    qdiscs
        .iter()
        .any(|q| q.parent == class(u32::from(s)) && q.handle == slot_handle(s))
}

/// Whether a slot other than `slot` is taken.
pub(super) fn others(qdiscs: &[Qdisc], slot: u8) -> bool {
    (FIRST_SLOT..=tc::PRIO_BANDS).any(|s| s != slot && taken(qdiscs, s))
}

/// The lowest free slot of a tree, from its qdiscs.
pub(super) fn free_slot(qdiscs: &[Qdisc], interface: &str) -> Result<u8, NetError> {
    (FIRST_SLOT..=tc::PRIO_BANDS)
        .find(|s| !taken(qdiscs, *s))
        .ok_or_else(|| NetError::NoFreeSlot {
            interface: interface.to_string(),
            max: tc::PRIO_BANDS - FIRST_SLOT + 1,
        })
}

/// What a targeted network fault must undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRulesUndo {
    /// The pod's network namespace.
    pub netns: PathBuf,
    /// The interfaces.
    pub interfaces: Vec<RuledInterface>,
}

impl crate::faults::Undo for NetRulesUndo {
    fn recovery(&self) -> Option<Recovery> {
        Some(Recovery::RemoveNetRules {
            netns: self.netns.clone(),
            interfaces: self.interfaces.clone(),
        })
    }
}

/// Reads the interface's tree: the foreign qdisc to save and a free slot (and one in its ifb
/// device's tree when `shape_ingress`); returns them with the qdiscs read.
fn plan(
    ops: &mut dyn QdiscOps,
    all: &[Link],
    link: Link,
    ingress: bool,
    shape_ingress: bool,
) -> Result<(RuledInterface, Vec<Qdisc>), NetError> {
    let qdiscs = ops.qdiscs(link.index)?;
    let root = qdiscs.iter().find(|q| q.parent == ROOT);
    let saved_of = |q: &Qdisc| SavedQdisc {
        kind: q.kind.clone(),
        handle: q.handle,
        options: q.options.clone(),
    };
    let saved = match root {
        Some(r) if r.handle == NRI_CHAOS_HANDLE && r.kind != "prio" => {
            return Err(NetError::Untargeted {
                interface: link.name,
                kind: r.kind.clone(),
            })
        }
        Some(r) if r.handle == NRI_CHAOS_HANDLE => qdiscs
            .iter()
            .find(|q| q.parent == class(DEFAULT_BAND) && q.handle != 0)
            .map(saved_of),
        Some(r) if r.handle != 0 => Some(saved_of(r)),
        _ => None,
    };
    let slot = free_slot(&qdiscs, &link.name)?;
    let (ifb, ifb_slot) = if shape_ingress {
        let name = super::ifb::ifb_name(link.index);
        let slot = match all.iter().find(|l| l.name == name) {
            Some(l) => free_slot(&ops.qdiscs(l.index)?, &name)?,
            None => FIRST_SLOT,
        };
        (Some(name), slot)
    } else {
        (None, 0)
    };
    let shaped = RuledInterface {
        index: link.index,
        name: link.name,
        saved,
        slot,
        ingress,
        ifb,
        ifb_slot,
    };
    Ok((shaped, qdiscs))
}

/// Installs `spec` on `links` (among `all`, the namespace's), journaling the undo first; on a
/// failure, what was done is removed (or stays journaled when that fails too).
pub fn install(
    ops: &mut dyn QdiscOps,
    netns: &Path,
    all: &[Link],
    links: Vec<Link>,
    spec: &SlotSpec<'_>,
    log: &mut dyn UndoLog,
) -> Result<NetRulesUndo, NetError> {
    let _tree = TREE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (ingress, shape_ingress) = (
        spec.direction.ingress() && spec.drop,
        spec.direction.ingress() && !spec.drop,
    );
    let mut interfaces = Vec::new();
    let mut trees = Vec::new();
    for link in links {
        let (shaped, qdiscs) = plan(ops, all, link, ingress, shape_ingress)?;
        interfaces.push(shaped);
        trees.push(qdiscs);
    }
    // Refuses too many filters before any change.
    filters(spec, FIRST_SLOT)?;
    side_filters(spec, FIRST_SLOT, Side::Source, 0, Verdict::Drop)?;
    let undo = NetRulesUndo {
        netns: netns.to_path_buf(),
        interfaces,
    };
    let slot = log.record(undo_recovery(&undo))?;
    for (shaped, qdiscs) in undo.interfaces.iter().zip(&trees) {
        if let Err(error) = build(ops, shaped, qdiscs, spec) {
            return Err(match remove_locked(ops, &undo) {
                Ok(()) => {
                    clear_logged(log, slot);
                    error
                }
                Err(undo) => NetError::NotUndone {
                    error: Box::new(error),
                    undo: Box::new(undo),
                },
            });
        }
    }
    Ok(undo)
}

fn undo_recovery(undo: &NetRulesUndo) -> Recovery {
    Recovery::RemoveNetRules {
        netns: undo.netns.clone(),
        interfaces: undo.interfaces.clone(),
    }
}

fn remove_locked(ops: &mut dyn QdiscOps, undo: &NetRulesUndo) -> Result<(), NetError> {
    let mut failures = Vec::new();
    for shaped in &undo.interfaces {
        if let Err(err) = remove_one(ops, shaped) {
            failures.push(format!("interface {}: {err}", shaped.name));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(NetError::Remove {
            netns: undo.netns.clone(),
            failures,
        })
    }
}

/// Removes what `undo` installed; every interface is tried, every failure reported.
pub fn remove(ops: &mut dyn QdiscOps, undo: &NetRulesUndo) -> Result<(), NetError> {
    let _tree = TREE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    remove_locked(ops, undo)
}
