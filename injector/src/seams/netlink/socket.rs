//! [`RouteSocket`]: the kernel's side of the netlink seam, a NETLINK_ROUTE socket bound to one
//! network namespace, one request and its reply at a time, or a batch of changes in one write
//! ([`QdiscOps::batch`]) whose acknowledgements are read after.
//!
//! Its [`super::QdiscOps`] are in `route_ops.rs`; `netns.rs` opens it in another network
//! namespace.

use std::fs::File;
use std::path::Path;

use netlink_packet_core::{
    DecodeError, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::tc::{TcHandle, TcHeader};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rustix::io::Errno;

use super::messages::{Reply, Request};
use super::{tc, Change, NetlinkError};

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct RouteSocket {
    pub(super) socket: Socket,
    seq: u32,
}

pub(super) fn io_err(op: &'static str) -> impl FnOnce(std::io::Error) -> NetlinkError {
    move |source| NetlinkError::Io { op, source }
}

impl RouteSocket {
    /// A socket in the calling thread's network namespace.
    pub fn open_current() -> Result<RouteSocket, NetlinkError> {
        let socket = Socket::new(NETLINK_ROUTE).map_err(io_err("socket"))?;
        // Port 0 is the kernel: every request goes to it, only its replies come back.
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(io_err("connect"))?;
        Ok(RouteSocket { socket, seq: 1 })
    }

    /// A socket bound to the network namespace at `ns_path` (`/proc/<pid>/ns/net`, or the
    /// CNI netns bind mount): the calling thread joins it for the open, then goes back.
    pub fn open_in_netns(ns_path: &Path) -> Result<RouteSocket, NetlinkError> {
        let path = ns_path.to_path_buf();
        let ns = File::open(&path).map_err(|source| NetlinkError::Namespace {
            path: path.clone(),
            source,
        })?;
        super::netns::open_in(ns, path)
    }

    /// Appends `message` with `flags` to `buf`; returns its sequence number.
    pub(super) fn encode(&mut self, buf: &mut Vec<u8>, message: Request, flags: u16) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let start = buf.len();
        buf.resize(start + packet.buffer_len(), 0);
        packet.serialize(&mut buf[start..]);
        self.seq
    }

    pub(super) fn send(&mut self, message: Request, flags: u16) -> Result<u32, NetlinkError> {
        let mut buf = Vec::new();
        let seq = self.encode(&mut buf, message, flags);
        self.socket.send(&buf, 0).map_err(io_err("send"))?;
        Ok(seq)
    }

    /// Reads replies to `seq` until DONE (dump) or the ACK/error; returns the data messages.
    pub(super) fn receive(
        &mut self,
        op: &'static str,
        seq: u32,
        ifindex: i32,
    ) -> Result<Vec<Reply>, NetlinkError> {
        let kernel = |code: i32| NetlinkError::Kernel {
            op,
            ifindex,
            source: std::io::Error::from_raw_os_error(code.abs()),
        };
        let mut out = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(io_err("recv"))?;
            let mut chunk = datagram.as_slice();
            while !chunk.is_empty() {
                let malformed = |err: DecodeError| NetlinkError::Malformed {
                    op,
                    detail: err.to_string(),
                };
                // The header first: another request's replies are skipped unparsed.
                let frame = NetlinkBuffer::new_checked(chunk).map_err(malformed)?;
                let (len, ours) = (frame.length() as usize, frame.sequence_number() == seq);
                let bytes = &chunk[..len];
                chunk = chunk.get(len.next_multiple_of(4)..).unwrap_or_default();
                if !ours {
                    continue;
                }
                let message = NetlinkMessage::<Reply>::deserialize(bytes).map_err(malformed)?;
                match message.payload {
                    NetlinkPayload::Done(done) if done.code != 0 => return Err(kernel(done.code)),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(out),
                        Some(code) => return Err(kernel(code.get())),
                    },
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// One change's request, flags and operation name.
    pub(super) fn change_request(ifindex: i32, change: &Change) -> (Request, u16, &'static str) {
        match change {
            Change::Qdisc(qdisc) => {
                let op = if qdisc.parent == u32::from(TcHandle::ROOT) {
                    "replace root qdisc"
                } else {
                    "add qdisc"
                };
                let header = TcHeader {
                    index: ifindex,
                    handle: qdisc.handle.into(),
                    parent: qdisc.parent.into(),
                    ..TcHeader::default()
                };
                let request = Request::NewQdisc {
                    header,
                    kind: qdisc.kind.clone(),
                    options: qdisc.options.clone(),
                };
                let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
                (request, flags, op)
            }
            Change::Filter(filter) => {
                let header = TcHeader {
                    index: ifindex,
                    parent: filter.parent.into(),
                    info: tc::filter_info(filter.pref, filter.protocol),
                    ..TcHeader::default()
                };
                let request = Request::NewFilter {
                    header,
                    kind: filter.kind.clone(),
                    options: filter.options.clone(),
                };
                let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
                (request, flags, "add filter")
            }
        }
    }

    /// Reads the acknowledgement of `change` (request `seq`): a qdisc kind the kernel does not
    /// know is [`NetlinkError::QdiscUnavailable`].
    pub(super) fn acknowledged(
        &mut self,
        ifindex: i32,
        change: &Change,
        seq: u32,
    ) -> Result<(), NetlinkError> {
        let (op, kind) = match change {
            Change::Qdisc(q) if q.parent == u32::from(TcHandle::ROOT) => {
                ("replace root qdisc", Some(&q.kind))
            }
            Change::Qdisc(q) => ("add qdisc", Some(&q.kind)),
            Change::Filter(_) => ("add filter", None),
        };
        match (self.receive(op, seq, ifindex), kind) {
            (Err(NetlinkError::Kernel { source, .. }), Some(kind))
                if Errno::from_io_error(&source) == Some(Errno::NOENT) =>
            {
                Err(NetlinkError::QdiscUnavailable { kind: kind.clone() })
            }
            (other, _) => other.map(|_| ()),
        }
    }

    pub(super) fn change(&mut self, ifindex: i32, change: &Change) -> Result<(), NetlinkError> {
        let (request, flags, _) = Self::change_request(ifindex, change);
        let seq = self.send(request, flags)?;
        self.acknowledged(ifindex, change, seq)
    }
}
