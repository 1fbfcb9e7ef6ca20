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
use crate::seams::netlink::tc::{self, Verdict, ETH_P_IP, ETH_P_IPV6};
use crate::seams::netlink::{
    Filter, Link, NetlinkError, Qdisc, QdiscOps, SavedQdisc, NRI_CHAOS_HANDLE,
};

use super::rules::{matches, Side, MAX_FILTERS};
use super::target::{Direction, Target};
use super::NetError;

/// TC_H_ROOT.
const ROOT: u32 = u32::MAX;
/// TC_H_INGRESS: the parent of the ingress qdisc.
const INGRESS_PARENT: u32 = 0xffff_fff1;
/// The ingress qdisc's handle.
pub(super) const INGRESS_HANDLE: u32 = 0xffff_0000;
/// The band unclassified traffic takes.
const DEFAULT_BAND: u32 = 1;
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
/// device's tree when `shape_ingress`).
fn plan(
    ops: &mut dyn QdiscOps,
    all: &[Link],
    link: Link,
    ingress: bool,
    shape_ingress: bool,
) -> Result<RuledInterface, NetError> {
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
    Ok(RuledInterface {
        index: link.index,
        name: link.name,
        saved,
        slot,
        ingress,
        ifb,
        ifb_slot,
    })
}

/// The u32 filters of `spec`'s targets on one side, under `parent`, with `verdict`.
pub(super) fn side_filters(
    spec: &SlotSpec<'_>,
    slot: u8,
    side: Side,
    parent: u32,
    verdict: Verdict,
) -> Result<Vec<Filter>, NetError> {
    let all: Vec<_> = spec.targets.iter().flat_map(|t| matches(t, side)).collect();
    if all.len() > MAX_FILTERS {
        return Err(NetError::TooManyFilters {
            filters: all.len(),
            max: MAX_FILTERS,
        });
    }
    Ok(all
        .into_iter()
        .map(|m| Filter {
            parent,
            pref: pref(slot, m.protocol),
            protocol: m.protocol,
            kind: "u32".into(),
            options: tc::u32_options(&m.keys, verdict),
        })
        .collect())
}

/// The filters of `spec` on the interface itself: egress, and a partition's ingress side.
fn filters(spec: &SlotSpec<'_>, slot: u8) -> Result<Vec<Filter>, NetError> {
    let mut out = Vec::new();
    if spec.direction.egress() {
        let verdict = if spec.drop {
            Verdict::Drop
        } else {
            Verdict::Class(class(u32::from(slot)))
        };
        out.extend(side_filters(
            spec,
            slot,
            Side::Destination,
            NRI_CHAOS_HANDLE,
            verdict,
        )?);
    }
    if spec.direction.ingress() && spec.drop {
        out.extend(side_filters(
            spec,
            slot,
            Side::Source,
            INGRESS_HANDLE,
            Verdict::Drop,
        )?);
    }
    Ok(out)
}

/// Our prio root on `index`, unless it is there.
pub(super) fn ensure_root(
    ops: &mut dyn QdiscOps,
    index: i32,
    qdiscs: &[Qdisc],
) -> Result<bool, NetlinkError> {
    let ours = qdiscs
        .iter()
        .any(|q| q.parent == ROOT && q.handle == NRI_CHAOS_HANDLE);
    if !ours {
        let prio = tc::prio_options(tc::PRIO_BANDS);
        ops.replace_root_qdisc(index, "prio", NRI_CHAOS_HANDLE, &prio)?;
    }
    Ok(!ours)
}

/// The ingress qdisc on `index`, unless one is there.
pub(super) fn ensure_ingress(ops: &mut dyn QdiscOps, index: i32) -> Result<(), NetlinkError> {
    if ops
        .qdiscs(index)?
        .iter()
        .any(|q| q.parent == INGRESS_PARENT)
    {
        return Ok(());
    }
    let ingress = Qdisc {
        kind: "ingress".into(),
        handle: INGRESS_HANDLE,
        parent: INGRESS_PARENT,
        options: Vec::new(),
    };
    ops.put_qdisc(index, &ingress)
}

/// Slot `slot`'s qdisc of `spec` on `index`.
pub(super) fn put_slot(
    ops: &mut dyn QdiscOps,
    index: i32,
    slot: u8,
    spec: &SlotSpec<'_>,
) -> Result<(), NetlinkError> {
    let (kind, options) = &spec.qdisc;
    let qdisc = Qdisc {
        kind: (*kind).to_string(),
        handle: slot_handle(slot),
        parent: class(u32::from(slot)),
        options: options.clone(),
    };
    ops.put_qdisc(index, &qdisc)
}

/// Builds (or joins) the tree on one interface, and its ifb device's.
fn build(
    ops: &mut dyn QdiscOps,
    shaped: &RuledInterface,
    spec: &SlotSpec<'_>,
) -> Result<(), NetError> {
    let index = shaped.index;
    let qdiscs = ops.qdiscs(index)?;
    if ensure_root(ops, index, &qdiscs)? {
        if let Some(saved) = &shaped.saved {
            ops.put_qdisc(
                index,
                &Qdisc {
                    kind: saved.kind.clone(),
                    handle: saved.handle,
                    parent: class(DEFAULT_BAND),
                    options: saved.options_to_restore(),
                },
            )?;
        }
    }
    put_slot(ops, index, shaped.slot, spec)?;
    if shaped.ingress {
        ensure_ingress(ops, index)?;
    }
    for filter in filters(spec, shaped.slot)? {
        ops.add_filter(index, &filter)?;
    }
    if let Some(name) = &shaped.ifb {
        super::ifb::build(ops, shaped, name, spec)?;
    }
    Ok(())
}

/// Installs `spec` on `links`, journaling the undo first; on a failure, what was done is
/// removed (or stays journaled when that fails too).
pub fn install(
    ops: &mut dyn QdiscOps,
    netns: &Path,
    links: Vec<Link>,
    spec: &SlotSpec<'_>,
    log: &mut dyn UndoLog,
) -> Result<NetRulesUndo, NetError> {
    let _tree = TREE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let all = ops.links()?;
    let (ingress, shape_ingress) = (
        spec.direction.ingress() && spec.drop,
        spec.direction.ingress() && !spec.drop,
    );
    let mut interfaces = Vec::new();
    for link in links {
        interfaces.push(plan(ops, &all, link, ingress, shape_ingress)?);
    }
    // Refuses too many filters before any change.
    filters(spec, FIRST_SLOT)?;
    side_filters(spec, FIRST_SLOT, Side::Source, 0, Verdict::Drop)?;
    let undo = NetRulesUndo {
        netns: netns.to_path_buf(),
        interfaces,
    };
    let slot = log.record(undo_recovery(&undo))?;
    for shaped in &undo.interfaces {
        if let Err(error) = build(ops, shaped, spec) {
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

/// Removes one fault's slot on one interface; the last slot out takes the tree with it.
fn remove_one(ops: &mut dyn QdiscOps, shaped: &RuledInterface) -> Result<(), NetlinkError> {
    let index = shaped.index;
    if let Some(name) = &shaped.ifb {
        super::ifb::remove(ops, shaped, name)?;
    }
    let qdiscs = ops.qdiscs(index)?;
    let ours = qdiscs
        .iter()
        .any(|q| q.parent == ROOT && q.handle == NRI_CHAOS_HANDLE && q.kind == "prio");
    if shaped.ingress && qdiscs.iter().any(|q| q.parent == INGRESS_PARENT) {
        for protocol in [ETH_P_IP, ETH_P_IPV6] {
            ops.delete_filters(index, INGRESS_HANDLE, pref(shaped.slot, protocol), protocol)?;
        }
    }
    if !ours {
        return Ok(());
    }
    for protocol in [ETH_P_IP, ETH_P_IPV6] {
        ops.delete_filters(
            index,
            NRI_CHAOS_HANDLE,
            pref(shaped.slot, protocol),
            protocol,
        )?;
    }
    let band = class(u32::from(shaped.slot));
    ops.delete_qdisc(index, band, slot_handle(shaped.slot))?;
    let others = others(&qdiscs, shaped.slot);
    if others {
        return Ok(());
    }
    // The last one out: an ingress qdisc left without filters is ours (documented: a foreign
    // one without filters goes too).
    let ingress = qdiscs.iter().any(|q| q.parent == INGRESS_PARENT);
    if ingress && ops.filter_count(index, INGRESS_HANDLE)? == 0 {
        ops.delete_qdisc(index, INGRESS_PARENT, INGRESS_HANDLE)?;
    }
    ops.delete_root_qdisc(index)?;
    if let Some(saved) = &shaped.saved {
        ops.restore_root_qdisc(index, saved)?;
    }
    Ok(())
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
