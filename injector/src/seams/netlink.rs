//! Netlink seam: a NETLINK_ROUTE socket bound to a pod's network namespace, to list its
//! interfaces and add, replace, read and delete root qdiscs. No `tc`, `ip` or `nsenter`.
//!
//! [`Netlink`] / [`QdiscOps`] are the seam the `netem` fault acts through
//! ([`crate::faults::netem`]): [`KernelNetlink`] opens a [`RouteSocket`], [`RecordingNetlink`]
//! is the recording fake.
//!
//! The socket is `netlink-sys`'s; messages are framed by `netlink-packet-core` around
//! `netlink-packet-route`'s link and tc headers (`messages.rs` says why not its attribute
//! enums). Only netem's TCA_OPTIONS payload is encoded here ([`netem_options`]).
//!
//! `setns` only moves the calling thread, so [`RouteSocket::open_in_netns`] opens the socket
//! on a short-lived dedicated OS thread that joins the namespace; the socket stays bound to
//! that namespace for its whole life and is then used from any thread.

mod fake;
mod messages;
pub mod netem_options;
pub mod tc;

pub use fake::{NetlinkCall, RecordingNetlink};

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    DecodeError, DefaultNla, Emitable, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, Nla, NlasIterator, Parseable, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::tc::{TcHandle, TcHeader};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rustix::io::Errno;
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use messages::{Reply, Request};

/// The handle nri-chaos gives the qdiscs it installs (`4e43:`, "NC"): how a root qdisc is
/// recognised as ours later, even after a restart.
pub const NRI_CHAOS_HANDLE: u32 = 0x4e43_0000;

/// Errors of the netlink seam.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// The namespace file could not be opened or joined.
    #[error("network namespace {path}: {source}")]
    Namespace {
        /// The namespace file (`/proc/<pid>/ns/net` or a bind mount).
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The socket failed.
    #[error("netlink {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The kernel refused a request.
    #[error("netlink {op} on interface {ifindex}: {source}")]
    Kernel {
        /// What was asked.
        op: &'static str,
        /// The interface.
        ifindex: i32,
        /// The kernel's errno.
        source: std::io::Error,
    },
    /// The kernel has no such qdisc (module not built or not loadable).
    #[error(
        "qdisc '{kind}' is not available in this kernel (sch_{kind} not built or not loadable)"
    )]
    QdiscUnavailable {
        /// The qdisc kind, e.g. `netem`.
        kind: String,
    },
    /// A reply that does not parse.
    #[error("netlink {op}: malformed reply ({detail})")]
    Malformed {
        /// What was asked.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: i32,
    /// Interface name (without `@peer`: that is `ip`'s rendering of the link, not the name).
    pub name: String,
    /// IFF_LOOPBACK.
    pub loopback: bool,
}

/// `interface` selects nothing in the namespace.
#[derive(Debug, Error)]
pub enum NoLink {
    /// Only loopback is there.
    #[error("the pod's network namespace has no interface but loopback")]
    OnlyLoopback,
    /// `interface` names no interface of the namespace.
    #[error("no interface '{name}' in the pod's network namespace (it has: {has})")]
    Missing {
        /// The interface asked for.
        name: String,
        /// The interfaces there are, comma separated.
        has: String,
    },
}

/// The name prefix of the ifb devices nri-chaos creates (`ifb4e43-<ifindex>`).
pub const IFB_PREFIX: &str = "ifb4e43-";

/// The links `interface` selects among `links`: that one, or every non-loopback one but the
/// ifb devices of nri-chaos.
pub fn select_links(links: Vec<Link>, interface: Option<&str>) -> Result<Vec<Link>, NoLink> {
    let Some(name) = interface else {
        let found: Vec<Link> = links
            .into_iter()
            .filter(|l| !l.loopback && !l.name.starts_with(IFB_PREFIX))
            .collect();
        return if found.is_empty() {
            Err(NoLink::OnlyLoopback)
        } else {
            Ok(found)
        };
    };
    let found: Vec<Link> = links.iter().filter(|l| l.name == name).cloned().collect();
    if found.is_empty() {
        let has: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        return Err(NoLink::Missing {
            name: name.to_string(),
            has: has.join(", "),
        });
    }
    Ok(found)
}

/// A root qdisc as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootQdisc {
    /// `netem`, `noqueue`, `tbf` ...
    pub kind: String,
    /// Its handle (0 for the kernel's default qdiscs).
    pub handle: u32,
    /// Its raw TCA_OPTIONS payload, to restore it as it was.
    pub options: Vec<u8>,
}

impl RootQdisc {
    /// Installed by nri-chaos.
    pub fn is_ours(&self) -> bool {
        self.handle == NRI_CHAOS_HANDLE
    }

    /// A kernel default (handle 0): deleting whatever replaced it brings it back.
    pub fn is_default(&self) -> bool {
        self.handle == 0
    }
}

/// A root qdisc saved before nri-chaos replaced it, to put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedQdisc {
    /// Its kind.
    pub kind: String,
    /// Its handle.
    pub handle: u32,
    /// Its TCA_OPTIONS payload.
    pub options: Vec<u8>,
}

impl SavedQdisc {
    /// Its TCA_OPTIONS as the kernel takes them back. A dump is not always what the qdisc's
    /// init accepts: htb dumps its full HTB_VER (0x30011) in `tc_htb_glob.version` but accepts
    /// only the major version, 3.
    pub fn options_to_restore(&self) -> Vec<u8> {
        const TCA_HTB_INIT: u16 = 2;
        const HTB_MAJOR_VERSION: u32 = 3;
        if self.kind != "htb" {
            return self.options.clone();
        }
        let mut attributes = Vec::new();
        for attribute in NlasIterator::new(&self.options) {
            let Ok(attribute) = attribute else {
                return self.options.clone();
            };
            let mut value = attribute.value().to_vec();
            if attribute.kind() == TCA_HTB_INIT {
                if let Some(version) = value.get_mut(..4) {
                    version.copy_from_slice(&HTB_MAJOR_VERSION.to_ne_bytes());
                }
            }
            let kind = DefaultNla::parse(&attribute).map_or(attribute.kind(), |raw| raw.kind());
            attributes.push(DefaultNla::new(kind, value));
        }
        let mut options = vec![0; attributes.as_slice().buffer_len()];
        attributes.as_slice().emit(&mut options);
        options
    }
}

/// An interface nri-chaos shaped, and what its root qdisc was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapedInterface {
    /// Interface index in the pod's namespace.
    pub index: i32,
    /// Interface name.
    pub name: String,
    /// The root qdisc that was there, when it was not a kernel default.
    pub saved: Option<SavedQdisc>,
}

/// A qdisc of an interface, root or child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qdisc {
    /// Its kind.
    pub kind: String,
    /// Its handle.
    pub handle: u32,
    /// Its parent (`TC_H_ROOT`, `TC_H_INGRESS` or a class).
    pub parent: u32,
    /// Its TCA_OPTIONS payload.
    pub options: Vec<u8>,
}

/// A filter to add: under qdisc `parent`, with preference `pref`, for `protocol` (an
/// ETH_P_* value), of classifier `kind` with its TCA_OPTIONS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The qdisc it hangs on.
    pub parent: u32,
    /// Its preference (lower first).
    pub pref: u16,
    /// ETH_P_IP, ETH_P_IPV6...
    pub protocol: u16,
    /// `u32`.
    pub kind: String,
    /// Its TCA_OPTIONS payload.
    pub options: Vec<u8>,
}

/// The netlink operations the `netem` fault needs in one network namespace: list its links,
/// read a root qdisc (to save a foreign one), install or restore a root qdisc, delete one.
/// [`RouteSocket`] is the kernel's; [`RecordingNetlink`]'s handles are the fake.
pub trait QdiscOps: Send {
    /// Every interface of the namespace.
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError>;
    /// The root qdisc of `ifindex`, if the kernel reports one.
    fn root_qdisc(&mut self, ifindex: i32) -> Result<Option<RootQdisc>, NetlinkError>;
    /// Installs (or replaces) the root qdisc of `ifindex`.
    fn replace_root_qdisc(
        &mut self,
        ifindex: i32,
        kind: &str,
        handle: u32,
        options: &[u8],
    ) -> Result<(), NetlinkError>;
    /// Deletes the root qdisc of `ifindex` (the kernel default returns); none there is Ok.
    fn delete_root_qdisc(&mut self, ifindex: i32) -> Result<(), NetlinkError>;
    /// Every qdisc of `ifindex`, root and children.
    fn qdiscs(&mut self, ifindex: i32) -> Result<Vec<Qdisc>, NetlinkError>;
    /// Adds (or replaces) the qdisc `handle` under `parent` (a class or `TC_H_INGRESS`).
    fn put_qdisc(&mut self, ifindex: i32, qdisc: &Qdisc) -> Result<(), NetlinkError>;
    /// Deletes the qdisc `handle` under `parent`; none there is Ok.
    fn delete_qdisc(&mut self, ifindex: i32, parent: u32, handle: u32) -> Result<(), NetlinkError>;
    /// Adds a filter.
    fn add_filter(&mut self, ifindex: i32, filter: &Filter) -> Result<(), NetlinkError>;
    /// Deletes every filter of qdisc `parent` with preference `pref` and `protocol`; none
    /// there is Ok.
    fn delete_filters(
        &mut self,
        ifindex: i32,
        parent: u32,
        pref: u16,
        protocol: u16,
    ) -> Result<(), NetlinkError>;
    /// Creates a virtual device `name` of `kind` (`ifb`), up; returns its index.
    fn add_link(&mut self, name: &str, kind: &str) -> Result<i32, NetlinkError>;
    /// Deletes interface `ifindex`; none there is Ok.
    fn delete_link(&mut self, ifindex: i32) -> Result<(), NetlinkError>;
    /// How many filters qdisc `parent` of `ifindex` holds.
    fn filter_count(&mut self, ifindex: i32, parent: u32) -> Result<usize, NetlinkError>;
    /// Puts `saved` back as the root qdisc of `ifindex`, as the kernel takes it back.
    fn restore_root_qdisc(&mut self, ifindex: i32, saved: &SavedQdisc) -> Result<(), NetlinkError> {
        self.replace_root_qdisc(
            ifindex,
            &saved.kind,
            saved.handle,
            &saved.options_to_restore(),
        )
    }
}

/// Opens [`QdiscOps`] inside a network namespace.
pub trait Netlink: Send + Sync {
    /// A handle bound to the namespace at `netns` (`/proc/<pid>/ns/net` or a bind mount).
    /// A namespace file that does not exist is [`NetlinkError::Namespace`] with `NotFound`.
    fn open(&self, netns: &Path) -> Result<Box<dyn QdiscOps>, NetlinkError>;
}

/// The kernel's netlink: a [`RouteSocket`] per namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelNetlink;

impl Netlink for KernelNetlink {
    fn open(&self, netns: &Path) -> Result<Box<dyn QdiscOps>, NetlinkError> {
        Ok(Box::new(RouteSocket::open_in_netns(netns)?))
    }
}

impl NetlinkError {
    /// The namespace file does not exist: the pod is gone, and its qdiscs with it.
    pub fn is_namespace_gone(&self) -> bool {
        matches!(self, NetlinkError::Namespace { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
}

fn io_err(op: &'static str) -> impl FnOnce(std::io::Error) -> NetlinkError {
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
    /// CNI netns bind mount), opened on a dedicated thread that joins it.
    pub fn open_in_netns(ns_path: &Path) -> Result<RouteSocket, NetlinkError> {
        let path = ns_path.to_path_buf();
        let ns = std::fs::File::open(&path).map_err(|source| NetlinkError::Namespace {
            path: path.clone(),
            source,
        })?;
        let joined = std::thread::Builder::new()
            .name("nri-chaos-netns".into())
            .spawn(move || {
                // setns(2) moves only this short-lived thread, which ends right after
                // opening the socket.
                move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)).map_err(
                    |errno| NetlinkError::Namespace {
                        path,
                        source: errno.into(),
                    },
                )?;
                RouteSocket::open_current()
            })
            .map_err(io_err("spawning the namespace thread"))?;
        joined.join().map_err(|_| NetlinkError::Malformed {
            op: "open",
            detail: "namespace thread panicked".into(),
        })?
    }

    fn send(&mut self, message: Request, flags: u16) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(io_err("send"))?;
        Ok(self.seq)
    }

    /// Reads replies to `seq` until DONE (dump) or the ACK/error; returns the data messages.
    fn receive(
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
}

impl QdiscOps for RouteSocket {
    /// Every interface of the namespace.
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let seq = self.send(Request::GetLinks, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut links = Vec::new();
        for message in self.receive("list links", seq, 0)? {
            let Reply::Link { header, name } = message else {
                continue;
            };
            let index = i32::try_from(header.index).map_err(|_| NetlinkError::Malformed {
                op: "list links",
                detail: format!("interface index {} out of range", header.index),
            })?;
            links.push(Link {
                index,
                name,
                loopback: header.flags.contains(LinkFlags::Loopback),
            });
        }
        Ok(links)
    }

    /// The root qdisc of `ifindex`, if the kernel reports one.
    fn root_qdisc(&mut self, ifindex: i32) -> Result<Option<RootQdisc>, NetlinkError> {
        let root = u32::from(TcHandle::ROOT);
        Ok(self
            .qdiscs(ifindex)?
            .into_iter()
            .find(|q| q.parent == root)
            .map(|q| RootQdisc {
                kind: q.kind,
                handle: q.handle,
                options: q.options,
            }))
    }

    fn qdiscs(&mut self, ifindex: i32) -> Result<Vec<Qdisc>, NetlinkError> {
        let seq = self.send(Request::GetQdiscs, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        for message in self.receive("list qdiscs", seq, ifindex)? {
            let Reply::Qdisc {
                header,
                kind,
                options,
            } = message
            else {
                continue;
            };
            if header.index == ifindex {
                out.push(Qdisc {
                    kind,
                    handle: header.handle.into(),
                    parent: header.parent.into(),
                    options,
                });
            }
        }
        Ok(out)
    }

    fn put_qdisc(&mut self, ifindex: i32, qdisc: &Qdisc) -> Result<(), NetlinkError> {
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
        let seq = self.send(request, flags)?;
        let op = if qdisc.parent == u32::from(TcHandle::ROOT) {
            "replace root qdisc"
        } else {
            "add qdisc"
        };
        match self.receive(op, seq, ifindex) {
            Err(NetlinkError::Kernel { source, .. })
                if Errno::from_io_error(&source) == Some(Errno::NOENT) =>
            {
                Err(NetlinkError::QdiscUnavailable {
                    kind: qdisc.kind.clone(),
                })
            }
            other => other.map(|_| ()),
        }
    }

    fn delete_qdisc(&mut self, ifindex: i32, parent: u32, handle: u32) -> Result<(), NetlinkError> {
        let header = TcHeader {
            index: ifindex,
            handle: handle.into(),
            parent: parent.into(),
            ..TcHeader::default()
        };
        let seq = self.send(Request::DelQdisc(header), NLM_F_REQUEST | NLM_F_ACK)?;
        let op = if parent == u32::from(TcHandle::ROOT) {
            "delete root qdisc"
        } else {
            "delete qdisc"
        };
        absent_is_done(self.receive(op, seq, ifindex))
    }

    fn add_filter(&mut self, ifindex: i32, filter: &Filter) -> Result<(), NetlinkError> {
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
        let seq = self.send(request, flags)?;
        self.receive("add filter", seq, ifindex).map(|_| ())
    }

    fn add_link(&mut self, name: &str, kind: &str) -> Result<i32, NetlinkError> {
        let request = Request::NewLink {
            name: name.to_string(),
            kind: kind.to_string(),
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        let seq = self.send(request, flags)?;
        self.receive("add link", seq, 0)?;
        let link = self.links()?.into_iter().find(|l| l.name == name);
        link.map(|l| l.index)
            .ok_or_else(|| NetlinkError::Malformed {
                op: "add link",
                detail: format!("{name} created but not listed"),
            })
    }

    fn delete_link(&mut self, ifindex: i32) -> Result<(), NetlinkError> {
        let index = u32::try_from(ifindex).unwrap_or_default();
        let seq = self.send(Request::DelLink(index), NLM_F_REQUEST | NLM_F_ACK)?;
        match self.receive("delete link", seq, ifindex) {
            Err(NetlinkError::Kernel { source, .. })
                if Errno::from_io_error(&source) == Some(Errno::NODEV) =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    fn filter_count(&mut self, ifindex: i32, parent: u32) -> Result<usize, NetlinkError> {
        let header = TcHeader {
            index: ifindex,
            parent: parent.into(),
            ..TcHeader::default()
        };
        let seq = self.send(Request::GetFilters(header), NLM_F_REQUEST | NLM_F_DUMP)?;
        let replies = self.receive("list filters", seq, ifindex)?;
        Ok(replies
            .iter()
            .filter(|r| matches!(r, Reply::Filter))
            .count())
    }

    fn delete_filters(
        &mut self,
        ifindex: i32,
        parent: u32,
        pref: u16,
        protocol: u16,
    ) -> Result<(), NetlinkError> {
        let header = TcHeader {
            index: ifindex,
            parent: parent.into(),
            info: tc::filter_info(pref, protocol),
            ..TcHeader::default()
        };
        let seq = self.send(Request::DelFilter(header), NLM_F_REQUEST | NLM_F_ACK)?;
        absent_is_done(self.receive("delete filters", seq, ifindex))
    }

    /// Installs (or replaces) the root qdisc of `ifindex` with `kind` and its TCA_OPTIONS
    /// payload (none when empty), under `handle`.
    fn replace_root_qdisc(
        &mut self,
        ifindex: i32,
        kind: &str,
        handle: u32,
        options: &[u8],
    ) -> Result<(), NetlinkError> {
        let root = Qdisc {
            kind: kind.to_string(),
            handle,
            parent: TcHandle::ROOT.into(),
            options: options.to_vec(),
        };
        self.put_qdisc(ifindex, &root)
    }

    /// Deletes the root qdisc of `ifindex` (the kernel's default comes back). Deleting where
    /// there is none is Ok.
    fn delete_root_qdisc(&mut self, ifindex: i32) -> Result<(), NetlinkError> {
        self.delete_qdisc(ifindex, TcHandle::ROOT.into(), 0)
    }
}

/// A delete of something that is not there (ENOENT, or EINVAL for a default qdisc) is done.
fn absent_is_done(reply: Result<Vec<Reply>, NetlinkError>) -> Result<(), NetlinkError> {
    match reply {
        Err(NetlinkError::Kernel { source, .. })
            if matches!(
                Errno::from_io_error(&source),
                Some(Errno::NOENT) | Some(Errno::INVAL)
            ) =>
        {
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tc_kernel_tests;
#[cfg(test)]
mod tests;
