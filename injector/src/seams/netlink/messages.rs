//! The rtnetlink messages the seam speaks, in netlink-packet-core's framing: link and qdisc
//! dumps, RTM_NEWQDISC and RTM_DELQDISC. Headers are netlink-packet-route's `LinkHeader` and
//! `TcHeader`; attributes are netlink-packet-core NLAs.
//!
//! Not the crate's `RouteNetlinkMessage`, `LinkAttribute` or `TcAttribute`: their parsers take
//! in every rtnetlink family, link kind, tc filter and action, and grew the hook from 1.0 to
//! 1.7 MB (the issue allows 20%). The seam reads three attributes and writes three.

use netlink_packet_core::{
    parse_string, DecodeError, DefaultNla, Emitable, NetlinkDeserializable, NetlinkHeader,
    NetlinkSerializable, NlasIterator, NLA_HEADER_SIZE,
};
use netlink_packet_route::link::{LinkExtentMask, LinkFlags, LinkHeader};
use netlink_packet_route::tc::TcHeader;

// Message types (linux/rtnetlink.h); netlink-packet-route keeps its own private.
/// An interface (a dump's entries).
const RTM_NEWLINK: u16 = 16;
/// Removes an interface.
const RTM_DELLINK: u16 = 17;
/// Asks for the interfaces.
const RTM_GETLINK: u16 = 18;
/// A qdisc (a dump's entries, or a request to install one).
const RTM_NEWQDISC: u16 = 36;
/// Removes a qdisc.
const RTM_DELQDISC: u16 = 37;
/// Asks for the qdiscs.
const RTM_GETQDISC: u16 = 38;
/// Adds a filter.
const RTM_NEWTFILTER: u16 = 44;
/// Removes filters.
const RTM_DELTFILTER: u16 = 45;
/// Asks for filters (a dump's entries are RTM_NEWTFILTER).
const RTM_GETTFILTER: u16 = 46;

/// A request to the kernel.
#[derive(Debug)]
pub(super) enum Request {
    /// RTM_GETLINK, a dump without the counters (only index, flags and name are read).
    GetLinks,
    /// RTM_NEWLINK creating a virtual device of `kind` (`ifb`) named `name`, up.
    NewLink {
        /// The name.
        name: String,
        /// IFLA_INFO_KIND.
        kind: String,
    },
    /// RTM_DELLINK of an interface index.
    DelLink(u32),
    /// RTM_GETQDISC, a dump.
    GetQdiscs,
    /// RTM_NEWQDISC: `kind` with its TCA_OPTIONS payload (none when empty).
    NewQdisc {
        /// Interface, handle and parent.
        header: TcHeader,
        /// `netem`, `pfifo` ...
        kind: String,
        /// The TCA_OPTIONS payload, as it goes on the wire.
        options: Vec<u8>,
    },
    /// RTM_DELQDISC.
    DelQdisc(TcHeader),
    /// RTM_NEWTFILTER: `kind` (`u32`) with its TCA_OPTIONS payload.
    NewFilter {
        /// Interface, parent qdisc, and `tcm_info` (preference and protocol).
        header: TcHeader,
        /// The classifier.
        kind: String,
        /// Its TCA_OPTIONS payload.
        options: Vec<u8>,
    },
    /// RTM_DELTFILTER: every filter of a parent with one preference and protocol.
    DelFilter(TcHeader),
    /// RTM_GETTFILTER, a dump of one interface's filters under one parent.
    GetFilters(TcHeader),
}

// Attribute types (linux/if_link.h, linux/rtnetlink.h).
/// The interface's name, NUL-terminated.
const IFLA_IFNAME: u16 = 3;
/// A virtual device's kind and data (nested).
const IFLA_LINKINFO: u16 = 18;
/// In IFLA_LINKINFO: the kind, NUL-terminated.
const IFLA_INFO_KIND: u16 = 1;
/// Which optional parts of a link dump to leave out or add (`RTEXT_FILTER_*`).
const IFLA_EXT_MASK: u16 = 29;
/// The qdisc's kind, NUL-terminated.
const TCA_KIND: u16 = 1;
/// The qdisc's own configuration.
const TCA_OPTIONS: u16 = 2;

impl Request {
    fn parts(&self) -> (Box<dyn Emitable + '_>, Vec<DefaultNla>) {
        match self {
            Request::GetLinks => {
                let skip_stats = u32::from(LinkExtentMask::SkipStats).to_ne_bytes();
                let mask = DefaultNla::new(IFLA_EXT_MASK, skip_stats.to_vec());
                (Box::new(LinkHeader::default()), vec![mask])
            }
            Request::GetQdiscs => (Box::new(TcHeader::default()), Vec::new()),
            Request::NewLink { name, kind } => {
                let header = LinkHeader {
                    flags: LinkFlags::Up,
                    change_mask: LinkFlags::Up,
                    ..LinkHeader::default()
                };
                let nul = |s: &str| [s.as_bytes(), &[0]].concat();
                let info = [DefaultNla::new(IFLA_INFO_KIND, nul(kind))];
                let mut linkinfo = vec![0; info.as_slice().buffer_len()];
                info.as_slice().emit(&mut linkinfo);
                let attributes = vec![
                    DefaultNla::new(IFLA_IFNAME, nul(name)),
                    DefaultNla::new(IFLA_LINKINFO, linkinfo),
                ];
                (Box::new(header), attributes)
            }
            Request::DelLink(index) => {
                let header = LinkHeader {
                    index: *index,
                    ..LinkHeader::default()
                };
                (Box::new(header), Vec::new())
            }
            Request::NewQdisc {
                header,
                kind,
                options,
            }
            | Request::NewFilter {
                header,
                kind,
                options,
            } => {
                let mut name = kind.as_bytes().to_vec();
                name.push(0);
                let mut attributes = vec![DefaultNla::new(TCA_KIND, name)];
                if !options.is_empty() {
                    attributes.push(DefaultNla::new(TCA_OPTIONS, options.clone()));
                }
                (Box::new(header.clone()), attributes)
            }
            Request::DelQdisc(header)
            | Request::DelFilter(header)
            | Request::GetFilters(header) => (Box::new(header.clone()), Vec::new()),
        }
    }
}

impl NetlinkSerializable for Request {
    fn message_type(&self) -> u16 {
        match self {
            Request::GetLinks => RTM_GETLINK,
            Request::NewLink { .. } => RTM_NEWLINK,
            Request::DelLink(_) => RTM_DELLINK,
            Request::GetQdiscs => RTM_GETQDISC,
            Request::NewQdisc { .. } => RTM_NEWQDISC,
            Request::DelQdisc(_) => RTM_DELQDISC,
            Request::NewFilter { .. } => RTM_NEWTFILTER,
            Request::DelFilter(_) => RTM_DELTFILTER,
            Request::GetFilters(_) => RTM_GETTFILTER,
        }
    }

    fn buffer_len(&self) -> usize {
        let (header, attributes) = self.parts();
        header.buffer_len() + attributes.as_slice().buffer_len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        let (header, attributes) = self.parts();
        let (head, rest) = buffer.split_at_mut(header.buffer_len());
        header.emit(head);
        attributes.as_slice().emit(rest);
    }
}

/// A data message from the kernel (ACKs, errors and DONE are netlink-packet-core's).
#[derive(Debug)]
pub(super) enum Reply {
    /// RTM_NEWLINK: one interface of a dump.
    Link {
        /// Index and flags.
        header: LinkHeader,
        /// IFLA_IFNAME.
        name: String,
    },
    /// RTM_NEWQDISC: one qdisc of a dump.
    Qdisc {
        /// Interface, handle and parent.
        header: TcHeader,
        /// TCA_KIND.
        kind: String,
        /// The TCA_OPTIONS payload, byte for byte (empty when there is none).
        options: Vec<u8>,
    },
    /// RTM_NEWTFILTER: one filter of a dump (only counted).
    Filter,
    /// Any other message type, not parsed.
    Other,
}

/// The attributes after a `header_len`-byte family header, as (type, payload).
fn attributes(payload: &[u8], header_len: usize) -> Result<Vec<(u16, &[u8])>, DecodeError> {
    let mut out = Vec::new();
    for attribute in NlasIterator::new(payload.get(header_len..).unwrap_or_default()) {
        let attribute = attribute?;
        let (kind, len) = (attribute.kind(), attribute.value_length());
        let bytes: &[u8] = attribute.into_inner();
        let value = bytes.get(NLA_HEADER_SIZE..NLA_HEADER_SIZE + len);
        out.push((kind, value.unwrap_or_default()));
    }
    Ok(out)
}

fn string_attribute(attributes: &[(u16, &[u8])], kind: u16) -> Result<String, DecodeError> {
    match attributes.iter().find(|(k, _)| *k == kind) {
        Some((_, value)) => parse_string(value),
        None => Ok(String::new()),
    }
}

impl NetlinkDeserializable for Reply {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Reply, DecodeError> {
        Ok(match header.message_type {
            RTM_NEWLINK => {
                let header = LinkHeader::parse(payload)?;
                let attributes = attributes(payload, header.buffer_len())?;
                Reply::Link {
                    name: string_attribute(&attributes, IFLA_IFNAME)?,
                    header,
                }
            }
            RTM_NEWQDISC => {
                let header = TcHeader::parse(payload)?;
                let attributes = attributes(payload, header.buffer_len())?;
                let options = attributes
                    .iter()
                    .find(|(kind, _)| *kind == TCA_OPTIONS)
                    .map(|(_, value)| value.to_vec())
                    .unwrap_or_default();
                Reply::Qdisc {
                    kind: string_attribute(&attributes, TCA_KIND)?,
                    header,
                    options,
                }
            }
            RTM_NEWTFILTER => Reply::Filter,
            _ => Reply::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::tc::TcHandle;

    use super::*;
    use crate::seams::netlink::tests::nested;

    fn header(message_type: u16) -> NetlinkHeader {
        let mut header = NetlinkHeader::default();
        header.message_type = message_type;
        header
    }

    /// `request`'s body, read back as the kernel's reply of the same shape.
    fn echoed(request: &Request, reply_type: u16) -> Reply {
        let mut body = vec![0; request.buffer_len()];
        request.serialize(&mut body);
        Reply::deserialize(&header(reply_type), &body).unwrap()
    }

    fn new_qdisc(kind: &str, options: &[u8]) -> Request {
        Request::NewQdisc {
            header: TcHeader {
                index: 3,
                handle: 0x4e43_0000.into(),
                parent: TcHandle::ROOT,
                ..TcHeader::default()
            },
            kind: kind.into(),
            options: options.to_vec(),
        }
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn a_new_qdisc_is_a_tcmsg_then_kind_then_options() {
        let request = new_qdisc("pfifo", &100u32.to_le_bytes());
        assert_eq!(request.message_type(), RTM_NEWQDISC);
        let mut body = vec![0; request.buffer_len()];
        request.serialize(&mut body);
        let mut want = vec![0, 0, 0, 0]; // AF_UNSPEC, padding
        want.extend(3i32.to_le_bytes());
        want.extend(0x4e43_0000u32.to_le_bytes());
        want.extend(u32::MAX.to_le_bytes()); // TC_H_ROOT
        want.extend(0u32.to_le_bytes());
        want.extend([10, 0, 1, 0]);
        want.extend(b"pfifo\0\0\0");
        want.extend([8, 0, 2, 0]);
        want.extend(100u32.to_le_bytes());
        assert_eq!(body, want);
    }

    #[test]
    fn qdisc_options_come_back_byte_for_byte_nested_or_not() {
        let fq_codel = nested(&[
            (1, 5_000u32.to_ne_bytes().to_vec()),
            (2, 10_240u32.to_ne_bytes().to_vec()),
            (99, vec![1, 2, 3, 4, 5, 6]), // an attribute of a newer kernel
        ]);
        for (kind, options) in [
            ("bfifo", 4096u32.to_ne_bytes().to_vec()),
            ("fq_codel", fq_codel),
        ] {
            match echoed(&new_qdisc(kind, &options), RTM_NEWQDISC) {
                Reply::Qdisc {
                    header,
                    kind: got,
                    options: back,
                } => {
                    assert_eq!((header.index, header.parent), (3, TcHandle::ROOT));
                    assert_eq!(u32::from(header.handle), 0x4e43_0000);
                    assert_eq!((got.as_str(), back), (kind, options));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn empty_options_are_left_out() {
        let request = new_qdisc("noqueue", &[]);
        let mut body = vec![0; request.buffer_len()];
        request.serialize(&mut body);
        assert_eq!(body.len(), 20 + 12, "tcmsg and TCA_KIND only");
        assert!(matches!(
            echoed(&request, RTM_NEWQDISC),
            Reply::Qdisc { options, .. } if options.is_empty()
        ));
    }

    #[test]
    fn a_link_reply_gives_index_flags_and_name() {
        let mut body = vec![0; 16];
        let link = LinkHeader {
            index: 7,
            flags: netlink_packet_route::link::LinkFlags::Loopback,
            ..LinkHeader::default()
        };
        link.emit(&mut body);
        body.extend(nested(&[
            (IFLA_IFNAME, b"lo\0".to_vec()),
            (1000, vec![9; 5]),
        ]));
        match Reply::deserialize(&header(RTM_NEWLINK), &body).unwrap() {
            Reply::Link { header, name } => {
                assert_eq!((header.index, name.as_str()), (7, "lo"));
                assert!(header
                    .flags
                    .contains(netlink_packet_route::link::LinkFlags::Loopback));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_attribute_running_past_the_message_is_an_error() {
        let mut body = vec![0; 16];
        body.extend([0xff, 0x00, 3, 0, b'l', b'o', 0, 0]);
        assert!(Reply::deserialize(&header(RTM_NEWLINK), &body).is_err());
        assert!(matches!(
            Reply::deserialize(&header(RTM_GETLINK), &body),
            Ok(Reply::Other)
        ));
    }
}
