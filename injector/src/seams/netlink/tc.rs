//! The TCA_OPTIONS payloads of the targeted network faults' qdisc tree: the root `prio`, a
//! band's `tbf`, and `u32` filters that classify into a band or drop through a `gact` action.
//!
//! u32's selector, its keys and the action framing are netlink-packet-route's
//! (`TcU32Selector`, `TcU32Key`, `TcAction`, `TcActionGeneric`): only emitted, never parsed.
//! prio's `tc_prio_qopt`, tbf's options and gact's parameters are written here: the crate
//! types no prio, tbf or gact option (0.34: fq_codel and ingress qdiscs; mirred, nat and
//! tunnel_key actions).

use netlink_packet_core::{DefaultNla, Emitable};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionGeneric, TcActionMirrorOption, TcActionOption,
    TcActionType, TcFilterU32Option, TcHandle, TcMirror, TcMirrorActionType, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};

/// `TCQ_PRIO_BANDS`: the most bands a prio qdisc has.
pub const PRIO_BANDS: u8 = 16;
/// ETH_P_IP.
pub const ETH_P_IP: u16 = 0x0800;
/// ETH_P_IPV6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// ETH_P_ALL.
pub const ETH_P_ALL: u16 = 0x0003;

const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TCA_GACT_PARMS: u16 = 2;
/// TC_LINKLAYER_ETHERNET: the kernel computes the rate table itself (no TCA_TBF_RTAB).
const LINKLAYER_ETHERNET: u8 = 1;

/// One u32 key: 32 bits of the packet at byte `off` (from the network header) under `mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// Bits compared.
    pub mask: u32,
    /// Their value.
    pub value: u32,
    /// Byte offset, a multiple of 4.
    pub off: i32,
}

/// What a matching packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Classified into this class (`flowid`).
    Class(u32),
    /// Dropped by a `gact drop` action.
    Drop,
    /// Redirected by a `mirred egress redirect` action to the device with this index.
    Redirect(u32),
}

/// `tc_prio_qopt { int bands; u8 priomap[16] }` with every priority in band 0 (class `:1`):
/// only the filters send packets to another band.
pub fn prio_options(bands: u8) -> Vec<u8> {
    // By hand: netlink-packet-route 0.34 has no prio option.
    let mut out = i32::from(bands).to_ne_bytes().to_vec();
    out.extend([0u8; 16]);
    out
}

/// tbf's nested options: `tc_tbf_qopt` (rate in bytes/s, link layer ethernet, `limit` bytes
/// of queue), the burst in bytes (TCA_TBF_BURST, so no tick conversion) and RATE64 when the
/// rate does not fit 32 bits.
pub fn tbf_options(rate_bytes_per_sec: u64, burst: u32, limit: u32) -> Vec<u8> {
    // By hand: netlink-packet-route 0.34 has no tbf option.
    let rate32 = u32::try_from(rate_bytes_per_sec).unwrap_or(u32::MAX);
    // struct tc_ratespec { u8 cell_log, linklayer; u16 overhead; s16 cell_align; u16 mpu;
    // u32 rate }
    let ratespec = |rate: u32, linklayer: u8| {
        let mut spec = vec![0u8, linklayer];
        spec.extend(0u16.to_ne_bytes());
        spec.extend(0i16.to_ne_bytes());
        spec.extend(0u16.to_ne_bytes());
        spec.extend(rate.to_ne_bytes());
        spec
    };
    let mut qopt = ratespec(rate32, LINKLAYER_ETHERNET);
    qopt.extend(ratespec(0, 0)); // no peak rate
    qopt.extend(limit.to_ne_bytes());
    qopt.extend(0u32.to_ne_bytes()); // buffer: TCA_TBF_BURST says it in bytes
    qopt.extend(0u32.to_ne_bytes()); // mtu: only with a peak rate
    let mut attributes = vec![DefaultNla::new(TCA_TBF_PARMS, qopt)];
    if rate32 == u32::MAX {
        let rate64 = rate_bytes_per_sec.to_ne_bytes().to_vec();
        attributes.push(DefaultNla::new(TCA_TBF_RATE64, rate64));
    }
    attributes.push(DefaultNla::new(TCA_TBF_BURST, burst.to_ne_bytes().to_vec()));
    emit(&attributes.as_slice())
}

fn emit<T: Emitable + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![0; value.buffer_len()];
    value.emit(&mut out);
    out
}

/// The `gact drop` action, first (and only) of its filter.
fn gact_drop() -> TcAction {
    let mut parms = TcActionGeneric::default();
    parms.action = TcActionType::Shot;
    // gact's TCA_GACT_PARMS is a bare `tc_gen`: the crate's generic parameters, emitted.
    let options = TcActionOption::Other(DefaultNla::new(TCA_GACT_PARMS, emit(&parms)));
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("gact".into()),
        TcActionAttribute::Options(vec![options]),
    ];
    action
}

/// The `mirred egress redirect dev <ifindex>` action (the packet is stolen, as tc sets it).
fn mirred_redirect(ifindex: u32) -> TcAction {
    let mut parms = TcMirror::default();
    parms.generic.action = TcActionType::Stolen;
    parms.eaction = TcMirrorActionType::EgressRedir;
    parms.ifindex = ifindex;
    let mut action = TcAction::default();
    action.attributes = vec![
        TcActionAttribute::Kind("mirred".into()),
        TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
            parms,
        ))]),
    ];
    action
}

/// A terminal u32 filter's options: the verdict, then the selector of `keys` (ANDed), in the
/// order `tc filter add ... u32 match ... flowid|action` sends them.
pub fn u32_options(keys: &[Key], verdict: Verdict) -> Vec<u8> {
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.nkeys = u8::try_from(keys.len()).unwrap_or(u8::MAX);
    selector.keys = keys
        .iter()
        .take(usize::from(selector.nkeys))
        .map(|k| {
            let mut key = TcU32Key::default();
            (key.mask, key.val, key.off) = (k.mask, k.value & k.mask, k.off);
            key
        })
        .collect();
    let first = match verdict {
        Verdict::Class(class) => TcFilterU32Option::ClassId(TcHandle::from(class)),
        Verdict::Drop => TcFilterU32Option::Action(vec![gact_drop()]),
        Verdict::Redirect(ifindex) => TcFilterU32Option::Action(vec![mirred_redirect(ifindex)]),
    };
    let options = [first, TcFilterU32Option::Selector(selector)];
    let mut out = vec![0; options.as_slice().buffer_len()];
    options.as_slice().emit(&mut out);
    out
}

/// A filter's `tcm_info`: its preference in the high half, the protocol in network order in
/// the low half (`TC_H_MAKE(prio << 16, htons(proto))`).
pub fn filter_info(pref: u16, protocol: u16) -> u32 {
    (u32::from(pref) << 16) | u32::from(u16::from_ne_bytes(protocol.to_be_bytes()))
}

/// The kind of an NLA (for tests that walk a payload).
#[cfg(test)]
pub(crate) fn kinds(payload: &[u8]) -> Vec<u16> {
    netlink_packet_core::NlasIterator::new(payload)
        .filter_map(Result::ok)
        .map(|n| n.kind())
        .collect()
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    #[test]
    fn prio_qopt_is_bands_then_a_zero_priomap() {
        let mut want = vec![16, 0, 0, 0];
        want.extend([0; 16]);
        assert_eq!(prio_options(16), want);
    }

    #[test]
    fn tbf_is_parms_then_burst() {
        let got = tbf_options(125_000, 10_000, 20_000);
        let want: Vec<u8> = [
            &[40, 0, 1, 0][..], // TCA_TBF_PARMS, 36 bytes
            &[0, 1, 0, 0, 0, 0, 0, 0],
            &125_000u32.to_le_bytes(),
            &[0; 12], // peak rate
            &20_000u32.to_le_bytes(),
            &[0; 8], // buffer, mtu
            &[8, 0, 6, 0],
            &10_000u32.to_le_bytes(),
        ]
        .concat();
        assert_eq!(got, want);
        let fast = tbf_options(5 << 30, 1 << 20, 1 << 21);
        assert_eq!(kinds(&fast), [1, 4, 6], "RATE64 past 4 GiB/s");
    }

    #[test]
    fn u32_classifying_ipv4_dst_to_a_band() {
        let keys = [Key {
            mask: 0xffff_ffff,
            value: 0x0a00_0002,
            off: 16,
        }];
        let got = u32_options(&keys, Verdict::Class(0x4e43_0002));
        let want: Vec<u8> = [
            &[8, 0, 1, 0][..], // TCA_U32_CLASSID
            &0x4e43_0002u32.to_le_bytes(),
            &[36, 0, 5, 0], // TCA_U32_SEL: 16-byte tc_u32_sel + one 16-byte key
            &[1, 0, 1, 0],  // flags TERMINAL, offshift, nkeys 1, pad
            &[0; 12],       // offmask, off, offoff, hoff, hmask
            &[0xff, 0xff, 0xff, 0xff], // mask (big endian)
            &[10, 0, 0, 2], // value (big endian)
            &16i32.to_le_bytes(),
            &[0; 4], // offmask
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn u32_dropping_with_gact() {
        let keys = [Key {
            mask: 0xffff_ff00,
            value: 0x0a00_0300,
            off: 16,
        }];
        let got = u32_options(&keys, Verdict::Drop);
        let want: Vec<u8> = [
            &[48, 0, 7, 0][..], // TCA_U32_ACT
            &[44, 0, 1, 0],     // action 1
            &[9, 0, 1, 0],      // TCA_ACT_KIND
            b"gact\0\0\0\0",
            &[28, 0, 2, 0x80],   // TCA_ACT_OPTIONS, nested
            &[24, 0, 2, 0],      // TCA_GACT_PARMS: tc_gen
            &[0; 8],             // index, capab
            &2i32.to_le_bytes(), // TC_ACT_SHOT
            &[0; 8],             // refcnt, bindcnt
            &[36, 0, 5, 0],
            &[1, 0, 1, 0],
            &[0; 12],
            &[0xff, 0xff, 0xff, 0x00],
            &[10, 0, 3, 0],
            &16i32.to_le_bytes(),
            &[0; 4],
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn u32_redirecting_everything_with_mirred() {
        let every = [Key {
            mask: 0,
            value: 0,
            off: 0,
        }];
        let got = u32_options(&every, Verdict::Redirect(7));
        let want: Vec<u8> = [
            &[56, 0, 7, 0][..], // TCA_U32_ACT
            &[52, 0, 1, 0],     // action 1
            &[11, 0, 1, 0],     // TCA_ACT_KIND
            b"mirred\0\0",
            &[36, 0, 2, 0x80],   // TCA_ACT_OPTIONS, nested
            &[32, 0, 2, 0],      // TCA_MIRRED_PARMS: 28-byte tc_mirred (tc_gen, eaction, ifindex)
            &[0; 8],             // index, capab
            &4i32.to_le_bytes(), // TC_ACT_STOLEN
            &[0; 8],             // refcnt, bindcnt
            &1i32.to_le_bytes(), // TCA_EGRESS_REDIR
            &7u32.to_le_bytes(),
            &[36, 0, 5, 0],
            &[1, 0, 1, 0],
            &[0; 12],
            &[0; 16], // mask 0, value 0, off 0, offmask 0: every packet
        ]
        .concat();
        assert_eq!(got, want);
    }

    #[test]
    fn filter_info_is_pref_and_protocol_in_network_order() {
        assert_eq!(filter_info(2, ETH_P_IP), 0x0002_0008);
        assert_eq!(filter_info(16, ETH_P_IPV6), 0x0010_dd86);
    }
}
