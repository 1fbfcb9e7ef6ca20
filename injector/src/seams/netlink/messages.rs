//! The rtnetlink messages the seam speaks, as netlink-packet-route's link and tc types inside
//! netlink-packet-core's framing.
//!
//! Not the crate's `RouteNetlinkMessage`: its parser would link the parsers of every rtnetlink
//! family (routes, addresses, neighbours, rules ...) into the plugin and the hook, doubling the
//! hook's size; only links and qdiscs are spoken here.

use netlink_packet_core::{
    DecodeError, Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkSerializable, Parseable,
};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::tc::TcMessage;

// Message types (linux/rtnetlink.h); netlink-packet-route keeps its constants private.
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;

/// A request to the kernel.
#[derive(Debug)]
pub(super) enum Request {
    /// RTM_GETLINK (a dump).
    GetLinks(LinkMessage),
    /// RTM_GETQDISC (a dump).
    GetQdiscs(TcMessage),
    /// RTM_NEWQDISC.
    NewQdisc(TcMessage),
    /// RTM_DELQDISC.
    DelQdisc(TcMessage),
}

impl Request {
    fn body(&self) -> &dyn Emitable {
        match self {
            Request::GetLinks(link) => link,
            Request::GetQdiscs(qdisc) | Request::NewQdisc(qdisc) | Request::DelQdisc(qdisc) => {
                qdisc
            }
        }
    }
}

impl NetlinkSerializable for Request {
    fn message_type(&self) -> u16 {
        match self {
            Request::GetLinks(_) => RTM_GETLINK,
            Request::GetQdiscs(_) => RTM_GETQDISC,
            Request::NewQdisc(_) => RTM_NEWQDISC,
            Request::DelQdisc(_) => RTM_DELQDISC,
        }
    }

    fn buffer_len(&self) -> usize {
        self.body().buffer_len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        self.body().emit(buffer);
    }
}

/// A data message from the kernel (ACKs, errors and DONE are netlink-packet-core's).
#[derive(Debug)]
pub(super) enum Reply {
    /// RTM_NEWLINK: one interface of a dump.
    Link(LinkMessage),
    /// RTM_NEWQDISC: one qdisc of a dump.
    Qdisc(TcMessage),
    /// Any other message type, not parsed.
    Other,
}

impl NetlinkDeserializable for Reply {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Reply, DecodeError> {
        Ok(match header.message_type {
            RTM_NEWLINK => Reply::Link(LinkMessage::parse(payload)?),
            RTM_NEWQDISC => Reply::Qdisc(TcMessage::parse(payload)?),
            _ => Reply::Other,
        })
    }
}
