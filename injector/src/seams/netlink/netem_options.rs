//! The netem qdisc's TCA_OPTIONS payload, byte for byte as the kernel reads it
//! (`netem_change`): a 24-byte `tc_netem_qopt` in native byte order, then netem's own
//! attributes, aligned to 4 bytes.
//!
//! `tc_netem_qopt { u32 latency, limit, loss, gap, duplicate, jitter }`: latency and jitter in
//! psched ticks (64 ns, so `ns >> 6`, saturating), probabilities as `fraction * u32::MAX`.
//! The kernel then takes the 64-bit nanosecond attributes LATENCY64/JITTER64 when present,
//! so they are always sent and carry the exact values. Rates at or above 2^32 bytes/s go in
//! RATE64 with the 32-bit field saturated, as tc does.
//!
//! Hand-written because netlink-packet-route has no netem option (it types only fq_codel's and
//! ingress's); the attributes after the struct are framed by netlink-packet-core.

use netlink_packet_core::{DefaultNla, Emitable};

use crate::faults::netem::NetemFault;

/// `tc_netem_qopt`'s size.
pub const QOPT_LEN: usize = 24;
/// tc's default queue limit (packets).
pub const DEFAULT_LIMIT: u32 = 1000;

const TCA_NETEM_CORR: u16 = 1;
const TCA_NETEM_REORDER: u16 = 3;
const TCA_NETEM_CORRUPT: u16 = 4;
const TCA_NETEM_RATE: u16 = 6;
const TCA_NETEM_RATE64: u16 = 8;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_NETEM_JITTER64: u16 = 11;

/// A probability in netem's fixed point: `fraction * u32::MAX`, rounded.
pub fn probability(fraction: f64) -> u32 {
    (fraction.clamp(0.0, 1.0) * f64::from(u32::MAX)).round() as u32
}

fn ticks(ns: u64) -> u32 {
    u32::try_from(ns >> 6).unwrap_or(u32::MAX)
}

fn u32s(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// The TCA_OPTIONS payload for `fault`.
pub fn netem_options(fault: &NetemFault) -> Vec<u8> {
    // By hand: netlink-packet-route 0.34 has no netem option (TcOption: fq_codel, ingress).
    let latency_ns = fault.delay.map(|d| d.as_nanos() as u64).unwrap_or(0);
    let jitter_ns = fault.jitter.map(|d| d.as_nanos() as u64).unwrap_or(0);
    let loss = fault.loss.map(probability).unwrap_or(0);
    let duplicate = fault.duplicate.map(probability).unwrap_or(0);
    // A reorder needs a non-zero gap; tc uses 1 when none is given.
    let gap = u32::from(fault.reorder.is_some_and(|p| p > 0.0));
    let limit = fault.limit.unwrap_or(DEFAULT_LIMIT);

    let qopt = u32s(&[
        ticks(latency_ns),
        limit,
        loss,
        gap,
        duplicate,
        ticks(jitter_ns),
    ]);
    debug_assert_eq!(qopt.len(), QOPT_LEN);
    let mut attributes = Vec::new();
    let mut attr = |kind: u16, payload: Vec<u8>| attributes.push(DefaultNla::new(kind, payload));

    let corr = fault.correlation.map(probability).unwrap_or(0);
    if corr != 0 {
        attr(TCA_NETEM_CORR, u32s(&[corr, corr, corr]));
    }
    if let Some(reorder) = fault.reorder {
        attr(TCA_NETEM_REORDER, u32s(&[probability(reorder), corr]));
    }
    if let Some(corrupt) = fault.corrupt {
        attr(TCA_NETEM_CORRUPT, u32s(&[probability(corrupt), corr]));
    }
    if let Some(rate) = fault.rate_bytes_per_sec {
        let rate32 = u32::try_from(rate).unwrap_or(u32::MAX);
        // tc_netem_rate: rate, packet overhead, cell size, cell overhead.
        attr(TCA_NETEM_RATE, u32s(&[rate32, 0, 0, 0]));
        if rate > u64::from(u32::MAX) - 1 {
            attr(TCA_NETEM_RATE64, rate.to_ne_bytes().to_vec());
        }
    }
    if latency_ns != 0 {
        attr(
            TCA_NETEM_LATENCY64,
            (latency_ns as i64).to_ne_bytes().to_vec(),
        );
    }
    if jitter_ns != 0 {
        attr(
            TCA_NETEM_JITTER64,
            (jitter_ns as i64).to_ne_bytes().to_vec(),
        );
    }

    let mut out = qopt;
    out.resize(QOPT_LEN + attributes.as_slice().buffer_len(), 0);
    attributes.as_slice().emit(&mut out[QOPT_LEN..]);
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn le(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((4 + payload.len()) as u16).to_le_bytes().to_vec();
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    // Golden bytes are written out from the struct layout for little-endian x86_64/aarch64.
    #[cfg(target_endian = "little")]
    #[test]
    fn delay_jitter_loss_rate_as_the_kernel_expects() {
        let fault = NetemFault {
            delay: Some(Duration::from_millis(100)),
            jitter: Some(Duration::from_millis(10)),
            loss: Some(0.20),
            rate_bytes_per_sec: Some(125_000), // 1mbit
            ..Default::default()
        };
        let mut want = le(&[
            1_562_500,   // 100 ms = 100_000_000 ns >> 6
            1000,        // tc's default limit
            858_993_459, // 0.2 * 0xffffffff, rounded
            0,           // gap
            0,           // duplicate
            156_250,     // 10 ms >> 6
        ]);
        want.extend(attr(6, &[le(&[125_000]), vec![0; 12]].concat()));
        want.extend(attr(10, &100_000_000i64.to_le_bytes()));
        want.extend(attr(11, &10_000_000i64.to_le_bytes()));
        assert_eq!(netem_options(&fault), want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn correlation_reorder_corrupt_duplicate_and_limit() {
        let fault = NetemFault {
            delay: Some(Duration::from_millis(10)),
            correlation: Some(0.25),
            duplicate: Some(0.01),
            corrupt: Some(0.001),
            reorder: Some(0.5),
            limit: Some(5000),
            ..Default::default()
        };
        let quarter = 1_073_741_824; // 0.25 * 0xffffffff rounded
        let mut want = le(&[156_250, 5000, 0, 1, 42_949_673, 0]);
        want.extend(attr(1, &le(&[quarter, quarter, quarter])));
        want.extend(attr(3, &le(&[2_147_483_648, quarter])));
        want.extend(attr(4, &le(&[4_294_967, quarter])));
        want.extend(attr(10, &10_000_000i64.to_le_bytes()));
        assert_eq!(netem_options(&fault), want);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn rates_of_4gib_per_second_and_more_use_rate64() {
        let fault = NetemFault {
            rate_bytes_per_sec: Some(5_000_000_000),
            ..Default::default()
        };
        let mut want = le(&[0, 1000, 0, 0, 0, 0]);
        want.extend(attr(6, &[le(&[u32::MAX]), vec![0; 12]].concat()));
        want.extend(attr(8, &5_000_000_000u64.to_le_bytes()));
        assert_eq!(netem_options(&fault), want);
    }

    #[test]
    fn huge_delays_saturate_the_tick_field_but_keep_64_bit_precision() {
        let fault = NetemFault {
            delay: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        let bytes = netem_options(&fault);
        assert_eq!(&bytes[..4], &u32::MAX.to_ne_bytes());
        let latency64 = &bytes[QOPT_LEN + 4..QOPT_LEN + 12];
        assert_eq!(latency64, &3_600_000_000_000i64.to_ne_bytes());
    }

    #[test]
    fn probabilities_are_fixed_point_fractions_of_u32_max() {
        assert_eq!(probability(0.0), 0);
        assert_eq!(probability(1.0), u32::MAX);
        assert_eq!(probability(0.5), 2_147_483_648);
        assert_eq!(probability(2.0), u32::MAX);
    }
}
