//! What one targeted network fault changes on one interface of the tree of [`super::tree`]:
//! its build, as one batch of netlink changes from the tree read when it was planned, and its
//! removal, with the fewest requests (the last fault out deletes the root qdisc, which takes
//! every band's qdisc and filter with it).

use crate::seams::netlink::tc::{self, Verdict, ETH_P_IP, ETH_P_IPV6};
use crate::seams::netlink::{Change, Filter, NetlinkError, Qdisc, QdiscOps, NRI_CHAOS_HANDLE};

use super::rules::{matches, Side, MAX_FILTERS};
use super::tree::{
    class, others, pref, slot_handle, RuledInterface, SlotSpec, DEFAULT_BAND, INGRESS_HANDLE,
    INGRESS_PARENT, ROOT,
};
use super::NetError;

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
pub(super) fn filters(spec: &SlotSpec<'_>, slot: u8) -> Result<Vec<Filter>, NetError> {
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

/// Whether `qdiscs` has our prio root.
fn has_our_root(qdiscs: &[Qdisc]) -> bool {
    qdiscs
        .iter()
        .any(|q| q.parent == ROOT && q.handle == NRI_CHAOS_HANDLE)
}

/// Whether `qdiscs` has an ingress qdisc.
fn has_ingress(qdiscs: &[Qdisc]) -> bool {
    qdiscs.iter().any(|q| q.parent == INGRESS_PARENT)
}

/// Our prio root, unless `qdiscs` has it.
fn root_change(qdiscs: &[Qdisc]) -> Option<Change> {
    (!has_our_root(qdiscs)).then(|| {
        Change::Qdisc(Qdisc {
            kind: "prio".into(),
            handle: NRI_CHAOS_HANDLE,
            parent: ROOT,
            options: tc::prio_options(tc::PRIO_BANDS),
        })
    })
}

/// The ingress qdisc, unless `qdiscs` has one.
fn ingress_change(qdiscs: &[Qdisc]) -> Option<Change> {
    (!has_ingress(qdiscs)).then(|| {
        Change::Qdisc(Qdisc {
            kind: "ingress".into(),
            handle: INGRESS_HANDLE,
            parent: INGRESS_PARENT,
            options: Vec::new(),
        })
    })
}

/// Slot `slot`'s qdisc of `spec`.
fn slot_change(slot: u8, spec: &SlotSpec<'_>) -> Change {
    let (kind, options) = &spec.qdisc;
    Change::Qdisc(Qdisc {
        kind: (*kind).to_string(),
        handle: slot_handle(slot),
        parent: class(u32::from(slot)),
        options: options.clone(),
    })
}

/// Our prio root on `index` (unless `qdiscs`, its qdiscs, has it), the slot's qdisc and
/// `filters`, in one batch.
pub(super) fn put_tree(
    ops: &mut dyn QdiscOps,
    index: i32,
    qdiscs: &[Qdisc],
    slot: u8,
    spec: &SlotSpec<'_>,
    filters: Vec<Filter>,
) -> Result<(), NetlinkError> {
    let mut changes: Vec<Change> = root_change(qdiscs).into_iter().collect();
    changes.push(slot_change(slot, spec));
    changes.extend(filters.into_iter().map(Change::Filter));
    ops.batch(index, &changes)
}

/// The ingress qdisc on `index`, unless one is there.
pub(super) fn ensure_ingress(ops: &mut dyn QdiscOps, index: i32) -> Result<(), NetlinkError> {
    let qdiscs = ops.qdiscs(index)?;
    ops.batch(
        index,
        &ingress_change(&qdiscs).into_iter().collect::<Vec<_>>(),
    )
}

/// Builds (or joins) the tree on one interface from `qdiscs`, its qdiscs as planned, in one
/// batch: the root, the foreign qdisc moved to band 1, the slot's qdisc, the ingress qdisc
/// and the filters. Then its ifb device's tree.
pub(super) fn build(
    ops: &mut dyn QdiscOps,
    shaped: &RuledInterface,
    qdiscs: &[Qdisc],
    spec: &SlotSpec<'_>,
) -> Result<(), NetError> {
    let mut changes = Vec::new();
    if let Some(root) = root_change(qdiscs) {
        changes.push(root);
        if let Some(saved) = &shaped.saved {
            changes.push(Change::Qdisc(Qdisc {
                kind: saved.kind.clone(),
                handle: saved.handle,
                parent: class(DEFAULT_BAND),
                options: saved.options_to_restore(),
            }));
        }
    }
    changes.push(slot_change(shaped.slot, spec));
    if shaped.ingress {
        changes.extend(ingress_change(qdiscs));
    }
    let filters = filters(spec, shaped.slot)?;
    changes.extend(filters.into_iter().map(Change::Filter));
    ops.batch(shaped.index, &changes)?;
    if let Some(name) = &shaped.ifb {
        super::ifb::build(ops, shaped, name, spec)?;
    }
    Ok(())
}

/// Deletes slot `slot`'s filters (IPv4 and IPv6 preferences) under `parent` on `index`.
pub(super) fn delete_slot_filters(
    ops: &mut dyn QdiscOps,
    index: i32,
    parent: u32,
    slot: u8,
) -> Result<(), NetlinkError> {
    for protocol in [ETH_P_IP, ETH_P_IPV6] {
        ops.delete_filters(index, parent, pref(slot, protocol), protocol)?;
    }
    Ok(())
}

/// Removes one fault's slot on one interface; the last slot out takes the tree with it.
pub(super) fn remove_one(
    ops: &mut dyn QdiscOps,
    shaped: &RuledInterface,
) -> Result<(), NetlinkError> {
    let index = shaped.index;
    if let Some(name) = &shaped.ifb {
        super::ifb::remove(ops, shaped, name)?;
    }
    let qdiscs = ops.qdiscs(index)?;
    let ours = qdiscs
        .iter()
        .any(|q| q.parent == ROOT && q.handle == NRI_CHAOS_HANDLE && q.kind == "prio");
    let ingress = has_ingress(&qdiscs);
    if shaped.ingress && ingress {
        delete_slot_filters(ops, index, INGRESS_HANDLE, shaped.slot)?;
    }
    if !ours {
        // A build whose root was refused may still have added the ingress qdisc (the kernel
        // goes on past a refused change of a batch): left without filters, it goes.
        if shaped.ingress && ingress && ops.filter_count(index, INGRESS_HANDLE)? == 0 {
            ops.delete_qdisc(index, INGRESS_PARENT, INGRESS_HANDLE)?;
        }
        return Ok(());
    }
    if others(&qdiscs, shaped.slot) {
        delete_slot_filters(ops, index, NRI_CHAOS_HANDLE, shaped.slot)?;
        let band = class(u32::from(shaped.slot));
        return ops.delete_qdisc(index, band, slot_handle(shaped.slot));
    }
    // The last one out: deleting the root takes the band qdiscs and filters with it. An
    // ingress qdisc left without filters is ours (documented: a foreign one without filters
    // goes too).
    if ingress && ops.filter_count(index, INGRESS_HANDLE)? == 0 {
        ops.delete_qdisc(index, INGRESS_PARENT, INGRESS_HANDLE)?;
    }
    ops.delete_root_qdisc(index)?;
    if let Some(saved) = &shaped.saved {
        ops.restore_root_qdisc(index, saved)?;
    }
    Ok(())
}
