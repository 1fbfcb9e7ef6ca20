//! Ingress shaping (netem, bandwidth with `direction: ingress|both`): an ifb device of ours
//! per interface (`ifb4e43-<ifindex>`), every received packet redirected to it by a u32 filter
//! with `mirred egress redirect` on the interface's ingress qdisc, and the tree of
//! [`super::tree`] on the device, matching sources. The last fault out deletes the redirect
//! and the device.

use crate::seams::netlink::tc::{self, Key, Verdict, ETH_P_ALL, ETH_P_IP, ETH_P_IPV6};
use crate::seams::netlink::{Filter, NetlinkError, QdiscOps, IFB_PREFIX, NRI_CHAOS_HANDLE};

use super::rules::Side;
use super::tree::{
    class, ensure_ingress, ensure_root, others, pref, put_slot, side_filters, slot_handle,
    RuledInterface, SlotSpec, INGRESS_HANDLE, REDIRECT_PREF,
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
    ensure_root(ops, ifb, &qdiscs)?;
    put_slot(ops, ifb, shaped.ifb_slot, spec)?;
    let verdict = Verdict::Class(class(u32::from(shaped.ifb_slot)));
    for filter in side_filters(
        spec,
        shaped.ifb_slot,
        Side::Source,
        NRI_CHAOS_HANDLE,
        verdict,
    )? {
        ops.add_filter(ifb, &filter)?;
    }
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
    for protocol in [ETH_P_IP, ETH_P_IPV6] {
        ops.delete_filters(ifb.index, NRI_CHAOS_HANDLE, pref(slot, protocol), protocol)?;
    }
    ops.delete_qdisc(ifb.index, class(u32::from(slot)), slot_handle(slot))?;
    let qdiscs = ops.qdiscs(ifb.index)?;
    let others = others(&qdiscs, slot);
    if others {
        return Ok(());
    }
    ops.delete_filters(shaped.index, INGRESS_HANDLE, REDIRECT_PREF, ETH_P_ALL)?;
    ops.delete_link(ifb.index)
}
