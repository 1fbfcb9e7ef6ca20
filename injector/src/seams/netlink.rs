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
//! The socket and its requests are [`socket`]'s: one request at a time, or a batch of changes
//! in one write ([`QdiscOps::batch`]), each acknowledged, the acknowledgements read after.

mod fake;
mod messages;
pub mod netem_options;
mod netns;
mod route_ops;
mod socket;
pub mod tc;

pub use fake::{NetlinkCall, RecordingNetlink};
pub use socket::RouteSocket;

use std::path::{Path, PathBuf};

use netlink_packet_core::{DefaultNla, Emitable, Nla, NlasIterator, Parseable};
use netlink_packet_route::tc::TcHandle;
use serde::{Deserialize, Serialize};
use thiserror::Error;

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

/// One change of a [`QdiscOps::batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds (or replaces) a qdisc; a root one (parent `TC_H_ROOT`) replaces the root.
    Qdisc(Qdisc),
    /// Adds a filter.
    Filter(Filter),
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
    /// Applies `changes` to `ifindex` in order; the first refusal is the error. The kernel's
    /// socket sends them in one write and reads every acknowledgement after (the kernel goes
    /// on past a refused one: the caller's rollback removes what the rest did); this default
    /// makes the calls one by one.
    fn batch(&mut self, ifindex: i32, changes: &[Change]) -> Result<(), NetlinkError> {
        for change in changes {
            match change {
                Change::Qdisc(q) if q.parent == u32::from(TcHandle::ROOT) => {
                    self.replace_root_qdisc(ifindex, &q.kind, q.handle, &q.options)?
                }
                Change::Qdisc(q) => self.put_qdisc(ifindex, q)?,
                Change::Filter(f) => self.add_filter(ifindex, f)?,
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod tc_kernel_tests;
#[cfg(test)]
mod tests;
