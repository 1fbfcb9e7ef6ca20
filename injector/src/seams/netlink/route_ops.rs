//! [`QdiscOps`] of the kernel's [`RouteSocket`].

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::tc::{TcHandle, TcHeader};
use rustix::io::Errno;

use super::messages::{Reply, Request};
use super::socket::{io_err, RouteSocket};
use super::{tc, Change, Filter, Link, NetlinkError, Qdisc, QdiscOps, RootQdisc};

/// The most requests one batch write carries: every one is acknowledged, and the
/// acknowledgements of a batch must fit the socket's receive buffer (the kernel drops what
/// does not fit).
const BATCH: usize = 64;

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
        self.change(ifindex, &Change::Qdisc(qdisc.clone()))
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
        self.change(ifindex, &Change::Filter(filter.clone()))
    }

    /// Up to [`BATCH`] requests per write, every one acknowledged; every acknowledgement is
    /// read (the socket is left clean) and the first refusal is the error.
    fn batch(&mut self, ifindex: i32, changes: &[Change]) -> Result<(), NetlinkError> {
        let mut first_error = None;
        for part in changes.chunks(BATCH) {
            let mut buf = Vec::new();
            let mut sent = Vec::with_capacity(part.len());
            for change in part {
                let (request, flags, _) = Self::change_request(ifindex, change);
                sent.push(self.encode(&mut buf, request, flags));
            }
            self.socket.send(&buf, 0).map_err(io_err("send"))?;
            for (change, seq) in part.iter().zip(sent) {
                if let Err(err) = self.acknowledged(ifindex, change, seq) {
                    first_error.get_or_insert(err);
                }
            }
            if first_error.is_some() {
                break;
            }
        }
        first_error.map_or(Ok(()), Err)
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
