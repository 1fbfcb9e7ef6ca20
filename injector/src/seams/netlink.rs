//! Netlink seam: a NETLINK_ROUTE socket bound to a pod's network namespace, to list its
//! interfaces and add, replace, read and delete root qdiscs. No `tc`, `ip` or `nsenter`.
//!
//! `setns` only moves the calling thread, so [`RouteSocket::open_in_netns`] opens the socket
//! on a short-lived dedicated OS thread that joins the namespace; the socket stays bound to
//! that namespace for its whole life and is then used from any thread.

pub mod netem_options;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

const NETLINK_ROUTE: i32 = 0;
const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTM_GETLINK: u16 = 18;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const IFLA_IFNAME: u16 = 3;
const IFF_LOOPBACK: u32 = 0x8;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
/// The root of an interface's qdisc tree.
pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
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

/// Undoes [`install_netem`]: on each interface whose root qdisc is still ours, puts the saved
/// qdisc back, or deletes ours so the kernel default returns. A namespace that no longer
/// exists (the pod is gone, and its qdiscs with it) is done.
pub fn remove_netem(netns: &Path, interfaces: &[ShapedInterface]) -> Result<(), NetlinkError> {
    let mut socket = match RouteSocket::open_in_netns(netns) {
        Ok(socket) => socket,
        Err(NetlinkError::Namespace { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    for shaped in interfaces {
        let still_ours = socket
            .root_qdisc(shaped.index)?
            .is_some_and(|q| q.is_ours());
        if !still_ours {
            continue;
        }
        match &shaped.saved {
            Some(saved) => socket.replace_root_qdisc(
                shaped.index,
                &saved.kind,
                saved.handle,
                &saved.options,
            )?,
            None => socket.delete_root_qdisc(shaped.index)?,
        }
    }
    Ok(())
}

/// The interfaces `fault` applies to in the namespace `socket` is bound to: the one named by
/// `interface`, or every non-loopback interface.
pub fn target_links(
    socket: &mut RouteSocket,
    interface: Option<&str>,
) -> Result<Vec<Link>, NetlinkError> {
    let links = socket.links()?;
    match interface {
        Some(name) => {
            let found: Vec<Link> = links.iter().filter(|l| l.name == name).cloned().collect();
            if found.is_empty() {
                let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
                return Err(NetlinkError::Malformed {
                    op: "find interface",
                    detail: format!(
                        "no interface '{name}' in the pod's network namespace (it has: {})",
                        names.join(", ")
                    ),
                });
            }
            Ok(found)
        }
        None => Ok(links.into_iter().filter(|l| !l.loopback).collect()),
    }
}

/// Installs netem with `options` as the root qdisc of each of `links`, saving non-default
/// root qdiscs first. On a failure, what was already installed is undone before returning.
pub fn install_netem(
    socket: &mut RouteSocket,
    links: &[Link],
    options: &[u8],
) -> Result<Vec<ShapedInterface>, NetlinkError> {
    install_root_qdisc(socket, links, "netem", options)
}

/// [`install_netem`] for any qdisc kind (the same path, testable on kernels without netem).
pub fn install_root_qdisc(
    socket: &mut RouteSocket,
    links: &[Link],
    kind: &str,
    options: &[u8],
) -> Result<Vec<ShapedInterface>, NetlinkError> {
    let mut shaped = Vec::new();
    for link in links {
        let saved = socket
            .root_qdisc(link.index)?
            .filter(|q| !q.is_default() && !q.is_ours())
            .map(|q| SavedQdisc {
                kind: q.kind,
                handle: q.handle,
                options: q.options,
            });
        if let Err(err) = socket.replace_root_qdisc(link.index, kind, NRI_CHAOS_HANDLE, options) {
            for done in &shaped {
                undo_one(socket, done);
            }
            return Err(err);
        }
        shaped.push(ShapedInterface {
            index: link.index,
            name: link.name.clone(),
            saved,
        });
    }
    Ok(shaped)
}

fn undo_one(socket: &mut RouteSocket, shaped: &ShapedInterface) {
    let _ = match &shaped.saved {
        Some(saved) => {
            socket.replace_root_qdisc(shaped.index, &saved.kind, saved.handle, &saved.options)
        }
        None => socket.delete_root_qdisc(shaped.index),
    };
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
    seq: u32,
}

fn io_err(op: &'static str) -> impl FnOnce(std::io::Error) -> NetlinkError {
    move |source| NetlinkError::Io { op, source }
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

/// Attributes `(type, payload)` in `buf`.
fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let (Some(len), Some(kind)) = (u16_at(buf, 0), u16_at(buf, 2)) else {
            break;
        };
        let len = usize::from(len);
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((kind & 0x3fff, &buf[4..len]));
        let aligned = (len + 3) & !3;
        buf = buf.get(aligned..).unwrap_or_default();
    }
    out
}

fn c_string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

impl RouteSocket {
    /// A socket in the calling thread's network namespace.
    pub fn open_current() -> Result<RouteSocket, NetlinkError> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(NetlinkError::Io {
                op: "socket",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: fd is a fresh, valid descriptor we exclusively own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(RouteSocket { fd, seq: 1 })
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
                // SAFETY: setns(2) on a namespace fd we hold open; it only changes this
                // short-lived thread, which exits right after opening the socket.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(NetlinkError::Namespace {
                        path,
                        source: std::io::Error::last_os_error(),
                    });
                }
                RouteSocket::open_current()
            })
            .map_err(io_err("spawning the namespace thread"))?;
        joined.join().map_err(|_| NetlinkError::Malformed {
            op: "open",
            detail: "namespace thread panicked".into(),
        })?
    }

    fn send(&mut self, kind: u16, flags: u16, body: &[u8]) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDR_LEN + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: the buffer is valid for `msg.len()` bytes; a zeroed sockaddr_nl addresses
        // the kernel.
        let sent = unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(NetlinkError::Io {
                op: "send",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(self.seq)
    }

    /// Reads replies to `seq` until DONE (dump) or the ACK/error; returns the payloads of the
    /// data messages (after their nlmsghdr).
    fn receive(
        &mut self,
        op: &'static str,
        seq: u32,
        ifindex: i32,
    ) -> Result<Vec<Vec<u8>>, NetlinkError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: recv into a buffer we own of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(NetlinkError::Io {
                    op: "recv",
                    source: std::io::Error::last_os_error(),
                });
            }
            let mut chunk = &buf[..n as usize];
            while chunk.len() >= NLMSG_HDR_LEN {
                let len = u32_at(chunk, 0).unwrap_or(0) as usize;
                let kind = u16_at(chunk, 4).unwrap_or(0);
                let msg_seq = u32_at(chunk, 8).unwrap_or(0);
                if len < NLMSG_HDR_LEN || len > chunk.len() {
                    return Err(NetlinkError::Malformed {
                        op,
                        detail: format!("message length {len} in a {}-byte read", chunk.len()),
                    });
                }
                let payload = &chunk[NLMSG_HDR_LEN..len];
                chunk = chunk.get((len + 3) & !3..).unwrap_or_default();
                if msg_seq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = i32_at(payload, 0).unwrap_or(0);
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(NetlinkError::Kernel {
                            op,
                            ifindex,
                            source: std::io::Error::from_raw_os_error(-errno),
                        });
                    }
                    _ => out.push(payload.to_vec()),
                }
            }
        }
    }

    /// Every interface of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let ifinfomsg = [0u8; 16];
        let seq = self.send(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, &ifinfomsg)?;
        let mut links = Vec::new();
        for payload in self.receive("list links", seq, 0)? {
            let (Some(index), Some(flags)) = (i32_at(&payload, 4), u32_at(&payload, 8)) else {
                continue;
            };
            let name = attributes(payload.get(16..).unwrap_or_default())
                .into_iter()
                .find(|(kind, _)| *kind == IFLA_IFNAME)
                .map(|(_, value)| c_string(value))
                .unwrap_or_default();
            links.push(Link {
                index,
                name,
                loopback: flags & IFF_LOOPBACK != 0,
            });
        }
        Ok(links)
    }

    fn tcmsg(ifindex: i32, handle: u32, parent: u32) -> Vec<u8> {
        let mut out = vec![0u8; 4]; // family AF_UNSPEC + padding
        out.extend_from_slice(&ifindex.to_ne_bytes());
        out.extend_from_slice(&handle.to_ne_bytes());
        out.extend_from_slice(&parent.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out
    }

    /// The root qdisc of `ifindex`, if the kernel reports one.
    pub fn root_qdisc(&mut self, ifindex: i32) -> Result<Option<RootQdisc>, NetlinkError> {
        let seq = self.send(
            RTM_GETQDISC,
            NLM_F_REQUEST | NLM_F_DUMP,
            &Self::tcmsg(0, 0, 0),
        )?;
        for payload in self.receive("list qdiscs", seq, ifindex)? {
            let (Some(index), Some(handle), Some(parent)) = (
                i32_at(&payload, 4),
                u32_at(&payload, 8),
                u32_at(&payload, 12),
            ) else {
                continue;
            };
            if index != ifindex || parent != TC_H_ROOT {
                continue;
            }
            let attrs = attributes(payload.get(20..).unwrap_or_default());
            let kind = attrs
                .iter()
                .find(|(k, _)| *k == TCA_KIND)
                .map(|(_, v)| c_string(v))
                .unwrap_or_default();
            let options = attrs
                .iter()
                .find(|(k, _)| *k == TCA_OPTIONS)
                .map(|(_, v)| v.to_vec())
                .unwrap_or_default();
            return Ok(Some(RootQdisc {
                kind,
                handle,
                options,
            }));
        }
        Ok(None)
    }

    /// Installs (or replaces) the root qdisc of `ifindex` with `kind` and its TCA_OPTIONS
    /// payload, under `handle`.
    pub fn replace_root_qdisc(
        &mut self,
        ifindex: i32,
        kind: &str,
        handle: u32,
        options: &[u8],
    ) -> Result<(), NetlinkError> {
        let mut body = Self::tcmsg(ifindex, handle, TC_H_ROOT);
        let mut name = kind.as_bytes().to_vec();
        name.push(0);
        netem_options::push_attr(&mut body, TCA_KIND, &name);
        netem_options::push_attr(&mut body, TCA_OPTIONS, options);
        let seq = self.send(
            RTM_NEWQDISC,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            &body,
        )?;
        match self.receive("replace root qdisc", seq, ifindex) {
            Err(NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                Err(NetlinkError::QdiscUnavailable {
                    kind: kind.to_string(),
                })
            }
            other => other.map(|_| ()),
        }
    }

    /// Deletes the root qdisc of `ifindex` (the kernel's default comes back). Deleting where
    /// there is none is Ok.
    pub fn delete_root_qdisc(&mut self, ifindex: i32) -> Result<(), NetlinkError> {
        let body = Self::tcmsg(ifindex, 0, TC_H_ROOT);
        let seq = self.send(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, &body)?;
        match self.receive("delete root qdisc", seq, ifindex) {
            Err(NetlinkError::Kernel { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOENT) | Some(libc::EINVAL)
                ) =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests;
