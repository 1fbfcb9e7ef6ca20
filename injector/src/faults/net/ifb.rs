//! Ingress shaping (netem, bandwidth with `direction: ingress|both`): an ifb device of ours
//! per interface (`ifb4e43-<ifindex>`), every received packet redirected to it by a u32 filter
//! with `mirred egress redirect` on the interface's ingress qdisc, and the tree of
//! [`super::tree`] on the device, matching sources. The last fault out deletes the redirect
//! and the device.

use crate::seams::netlink::tc::{self, Key, Verdict, ETH_P_ALL};
use crate::seams::netlink::{Filter, NetlinkError, QdiscOps, IFB_PREFIX, NRI_CHAOS_HANDLE};

use super::changes::{delete_slot_filters, ensure_ingress, put_tree, side_filters};
use super::rules::Side;
use super::tree::{
    class, others, slot_handle, RuledInterface, SlotSpec, INGRESS_HANDLE, REDIRECT_PREF,
};
use super::NetError;

/// The ifb device of interface `ifindex`.
pub(super) fn ifb_name(ifindex: i32) -> String {
    format!("{IFB_PREFIX}{ifindex}")
}

/// Ingress shaping: the ifb device (created with the redirect to it when missing), its tree
/// and the fault's slot and source filters there.
pub(super) fn build(
    ops: &mut dyn QdiscOps,
    shaped: &RuledInterface,
    name: &str,
    spec: &SlotSpec<'_>,
) -> Result<(), NetError> {
    let existing = ops.links()?.into_iter().find(|l| l.name == name);
    let ifb = match existing {
        Some(l) => l.index,
        None => {
            let ifb = ops.add_link(name, "ifb")?;
            ensure_ingress(ops, shaped.index)?;
            let every = [Key {
                mask: 0,
                value: 0,
                off: 0,
            }];
            let target = u32::try_from(ifb).unwrap_or_default();
            let redirect = Filter {
                parent: INGRESS_HANDLE,
                pref: REDIRECT_PREF,
                protocol: ETH_P_ALL,
                kind: "u32".into(),
                options: tc::u32_options(&every, Verdict::Redirect(target)),
            };
            ops.add_filter(shaped.index, &redirect)?;
            ifb
        }
    };
    let qdiscs = ops.qdiscs(ifb)?;
    let slot = shaped.ifb_slot;
    let verdict = Verdict::Class(class(u32::from(slot)));
    let filters = side_filters(spec, slot, Side::Source, NRI_CHAOS_HANDLE, verdict)?;
    put_tree(ops, ifb, &qdiscs, slot, spec, filters)?;
    Ok(())
}

/// Removes one fault's slot in the tree of an ifb device; the last one out deletes the
/// redirect to it and the device.
pub(super) fn remove(
    ops: &mut dyn QdiscOps,
    shaped: &RuledInterface,
    name: &str,
) -> Result<(), NetlinkError> {
    let Some(ifb) = ops.links()?.into_iter().find(|l| l.name == name) else {
        return Ok(());
    };
    let slot = shaped.ifb_slot;
    delete_slot_filters(ops, ifb.index, NRI_CHAOS_HANDLE, slot)?;
    ops.delete_qdisc(ifb.index, class(u32::from(slot)), slot_handle(slot))?;
    let qdiscs = ops.qdiscs(ifb.index)?;
    let others = others(&qdiscs, slot);
    if others {
        return Ok(());
    }
    ops.delete_filters(shaped.index, INGRESS_HANDLE, REDIRECT_PREF, ETH_P_ALL)?;
    ops.delete_link(ifb.index)
}
