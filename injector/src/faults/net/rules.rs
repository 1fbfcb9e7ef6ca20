//! Targets as u32 matches: one filter per (target, protocol, aligned port block), each a list
//! of keys ANDed. Offsets assume IP headers without options (IPv4 IHL 5, IPv6 without
//! extension headers), as `tc filter ... u32 match ip dport` does.

use std::net::IpAddr;

use crate::seams::netlink::tc::{Key, ETH_P_IP, ETH_P_IPV6};

use super::target::{Proto, Target};

/// Most filters one fault installs per interface and direction.
pub const MAX_FILTERS: usize = 2048;

/// Which end of the packet the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The destination (egress).
    Destination,
    /// The source (ingress).
    Source,
}

/// One u32 filter's match: its ETH_P_* protocol and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// ETH_P_IP or ETH_P_IPV6.
    pub protocol: u16,
    /// The keys, ANDed.
    pub keys: Vec<Key>,
}

/// `[low, high]` as aligned power-of-two blocks (value, mask).
fn port_blocks(low: u16, high: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut at, high) = (u32::from(low), u32::from(high));
    while at <= high {
        let mut size = 1u32;
        while at % (size * 2) == 0 && at + size * 2 - 1 <= high && size < 0x1_0000 {
            size *= 2;
        }
        out.push((at as u16, (0x1_0000 - size) as u16));
        at += size;
    }
    out
}

fn prefix_mask32(prefix: u32) -> u32 {
    u32::MAX.checked_shl(32 - prefix).unwrap_or(0)
}

fn address_keys(addr: IpAddr, prefix: u8, side: Side) -> Vec<Key> {
    match addr {
        IpAddr::V4(a) => {
            let off = if side == Side::Destination { 16 } else { 12 };
            vec![Key {
                mask: prefix_mask32(u32::from(prefix)),
                value: u32::from(a),
                off,
            }]
        }
        IpAddr::V6(a) => {
            let base = if side == Side::Destination { 24 } else { 8 };
            let words = u128::from(a).to_be_bytes();
            let mut keys = Vec::new();
            for i in 0..4u8 {
                let bits = u32::from(prefix).saturating_sub(u32::from(i) * 32).min(32);
                if bits == 0 {
                    break;
                }
                let start = usize::from(i) * 4;
                let mut word = [0u8; 4];
                word.copy_from_slice(&words[start..start + 4]);
                keys.push(Key {
                    mask: prefix_mask32(bits),
                    value: u32::from_be_bytes(word),
                    off: base + i32::from(i) * 4,
                });
            }
            keys
        }
    }
}

/// The u32 matches of `target` on `side`.
pub fn matches(target: &Target, side: Side) -> Vec<Match> {
    let v4 = target.addr.is_ipv4();
    let protocol = if v4 { ETH_P_IP } else { ETH_P_IPV6 };
    let base = address_keys(target.addr, target.prefix, side);
    let protos: Vec<Option<Proto>> = match (target.proto, target.ports) {
        (Some(p), _) => vec![Some(p)],
        (None, Some(_)) => vec![Some(Proto::Tcp), Some(Proto::Udp)],
        (None, None) => vec![None],
    };
    let blocks: Vec<Option<(u16, u16)>> = match target.ports {
        Some((low, high)) => port_blocks(low, high).into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut out = Vec::new();
    for proto in &protos {
        for block in &blocks {
            let mut keys = base.clone();
            if let Some(p) = proto {
                let number = u32::from(p.number());
                keys.push(if v4 {
                    Key {
                        mask: 0x00ff_0000,
                        value: number << 16,
                        off: 8,
                    }
                } else {
                    Key {
                        mask: 0x0000_ff00,
                        value: number << 8,
                        off: 4,
                    }
                });
            }
            if let Some((port, mask)) = block {
                let (port, mask) = (u32::from(*port), u32::from(*mask));
                let off = if v4 { 20 } else { 40 };
                keys.push(match side {
                    Side::Destination => Key {
                        mask,
                        value: port,
                        off,
                    },
                    Side::Source => Key {
                        mask: mask << 16,
                        value: port << 16,
                        off,
                    },
                });
            }
            if keys.is_empty() {
                // 0.0.0.0/0 or ::/0 without a port: every packet of the family.
                keys.push(Key {
                    mask: 0,
                    value: 0,
                    off: 0,
                });
            }
            out.push(Match { protocol, keys });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str, side: Side) -> Vec<Match> {
        matches(&Target::parse(text).unwrap(), side)
    }

    #[test]
    fn port_ranges_split_into_aligned_blocks() {
        assert_eq!(port_blocks(8080, 8080), [(8080, 0xffff)]);
        assert_eq!(port_blocks(8000, 8003), [(8000, 0xfffc)]);
        assert_eq!(port_blocks(7, 9), [(7, 0xffff), (8, 0xfffe)]);
        assert_eq!(port_blocks(1, 65535).len(), 16);
        assert_eq!(port_blocks(0, 65535), [(0, 0)]);
    }

    #[test]
    fn ipv4_destination_with_port_and_protocol() {
        let got = one("10.0.0.2:8080/tcp", Side::Destination);
        assert_eq!(
            got,
            [Match {
                protocol: ETH_P_IP,
                keys: vec![
                    Key {
                        mask: u32::MAX,
                        value: 0x0a00_0002,
                        off: 16
                    },
                    Key {
                        mask: 0x00ff_0000,
                        value: 6 << 16,
                        off: 8
                    },
                    Key {
                        mask: 0xffff,
                        value: 8080,
                        off: 20
                    },
                ],
            }]
        );
    }

    #[test]
    fn a_port_without_protocol_is_tcp_and_udp_and_source_side_swaps_offsets() {
        let got = one("10.0.3.0/24:53", Side::Source);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].keys[0],
            Key {
                mask: 0xffff_ff00,
                value: 0x0a00_0300,
                off: 12
            }
        );
        assert_eq!(got[1].keys[1].value, 17 << 16);
        assert_eq!(
            got[1].keys[2],
            Key {
                mask: 0xffff_0000,
                value: 53 << 16,
                off: 20
            }
        );
    }

    #[test]
    fn ipv6_prefixes_use_only_the_words_they_cover() {
        let got = one("[fd00:1::/40]:443/udp", Side::Destination);
        assert_eq!(got[0].protocol, ETH_P_IPV6);
        let keys = &got[0].keys;
        assert_eq!(
            keys[0],
            Key {
                mask: u32::MAX,
                value: 0xfd00_0001,
                off: 24
            }
        );
        assert_eq!(
            keys[1],
            Key {
                mask: 0xff00_0000,
                value: 0,
                off: 28
            }
        );
        assert_eq!(
            keys[2],
            Key {
                mask: 0xff00,
                value: 17 << 8,
                off: 4
            }
        );
        assert_eq!(
            keys[3],
            Key {
                mask: 0xffff,
                value: 443,
                off: 40
            }
        );
        let host = one("fd00::7", Side::Source);
        assert_eq!(host[0].keys.len(), 4);
        assert_eq!(
            host[0].keys[3],
            Key {
                mask: u32::MAX,
                value: 7,
                off: 20
            }
        );
    }

    #[test]
    fn everything_of_a_family_is_one_empty_key() {
        let got = one("0.0.0.0/0", Side::Destination);
        assert_eq!(
            got[0].keys,
            [Key {
                mask: 0,
                value: 0,
                off: 16
            }]
        );
    }
}
