//! [`RecordingNetlink`]: the fake of the netlink seam. Namespaces hold links and root qdiscs
//! in memory, every call is recorded, and any operation (on one interface or all) can be told
//! to fail, so the netem fault's apply and undo are unit-tested, partial failures included.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Filter, Link, Netlink, NetlinkError, Qdisc, QdiscOps, RootQdisc};

/// TC_H_ROOT.
const ROOT: u32 = u32::MAX;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetlinkCall {
    /// [`Netlink::open`] of a namespace.
    Open(PathBuf),
    /// [`QdiscOps::links`].
    Links,
    /// [`QdiscOps::root_qdisc`] of an interface.
    RootQdisc(i32),
    /// [`QdiscOps::replace_root_qdisc`]: interface, kind, handle.
    Replace(i32, String, u32),
    /// [`QdiscOps::delete_root_qdisc`] of an interface.
    Delete(i32),
    /// [`QdiscOps::qdiscs`] of an interface.
    Qdiscs(i32),
    /// [`QdiscOps::put_qdisc`]: interface, kind, parent, handle.
    PutQdisc(i32, String, u32, u32),
    /// [`QdiscOps::delete_qdisc`]: interface, parent, handle.
    DeleteQdisc(i32, u32, u32),
    /// [`QdiscOps::add_filter`]: interface, parent, pref, protocol.
    AddFilter(i32, u32, u16, u16),
    /// [`QdiscOps::delete_filters`]: interface, parent, pref, protocol.
    DeleteFilters(i32, u32, u16, u16),
    /// [`QdiscOps::add_link`]: name, kind.
    AddLink(String, String),
    /// [`QdiscOps::delete_link`] of an interface.
    DeleteLink(i32),
}

impl NetlinkCall {
    fn op(&self) -> &'static str {
        match self {
            NetlinkCall::Open(_) => "open",
            NetlinkCall::Links => "list links",
            NetlinkCall::RootQdisc(_) => "list qdiscs",
            NetlinkCall::Replace(..) => "replace root qdisc",
            NetlinkCall::Delete(_) => "delete root qdisc",
            NetlinkCall::Qdiscs(_) => "list qdiscs",
            NetlinkCall::PutQdisc(..) => "add qdisc",
            NetlinkCall::DeleteQdisc(..) => "delete qdisc",
            NetlinkCall::AddFilter(..) => "add filter",
            NetlinkCall::DeleteFilters(..) => "delete filters",
            NetlinkCall::AddLink(..) => "add link",
            NetlinkCall::DeleteLink(_) => "delete link",
        }
    }

    fn ifindex(&self) -> Option<i32> {
        match self {
            NetlinkCall::RootQdisc(i)
            | NetlinkCall::Replace(i, ..)
            | NetlinkCall::Delete(i)
            | NetlinkCall::Qdiscs(i)
            | NetlinkCall::PutQdisc(i, ..)
            | NetlinkCall::DeleteQdisc(i, ..)
            | NetlinkCall::AddFilter(i, ..)
            | NetlinkCall::DeleteFilters(i, ..)
            | NetlinkCall::DeleteLink(i) => Some(*i),
            NetlinkCall::Open(_) | NetlinkCall::Links | NetlinkCall::AddLink(..) => None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    namespaces: HashMap<PathBuf, Namespace>,
    calls: Vec<NetlinkCall>,
    /// (operation, interface or None for every interface) that fail.
    failing: HashSet<(&'static str, Option<i32>)>,
}

#[derive(Debug, Default, Clone)]
struct Namespace {
    links: Vec<Link>,
    roots: BTreeMap<i32, RootQdisc>,
    /// Non-root qdiscs, by interface.
    children: Vec<(i32, Qdisc)>,
    /// Filters, by interface.
    filters: Vec<(i32, Filter)>,
}

impl Namespace {
    /// A root qdisc changes: the old tree's children and filters go with it (not ingress's).
    fn drop_tree(&mut self, ifindex: i32) {
        let ingress = |parent: u32| parent >> 16 == 0xffff;
        self.children
            .retain(|(i, q)| *i != ifindex || ingress(q.parent) || q.parent == INGRESS);
        self.filters
            .retain(|(i, f)| *i != ifindex || ingress(f.parent));
    }
}

/// TC_H_INGRESS.
const INGRESS: u32 = 0xffff_fff1;

/// The fake netlink (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct RecordingNetlink {
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecordingNetlink {
    /// No namespace yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds namespace `netns` with loopback (index 1) and the named interfaces (index 2, 3,
    /// ...), each with the kernel's default root qdisc (none reported).
    pub fn add_namespace(&self, netns: &Path, interfaces: &[&str]) {
        let mut links = vec![Link {
            index: 1,
            name: "lo".into(),
            loopback: true,
        }];
        for (i, name) in interfaces.iter().enumerate() {
            links.push(Link {
                index: i32::try_from(i).unwrap_or(i32::MAX - 2) + 2,
                name: (*name).to_string(),
                loopback: false,
            });
        }
        lock(&self.state).namespaces.insert(
            netns.to_path_buf(),
            Namespace {
                links,
                ..Namespace::default()
            },
        );
    }

    /// Removes namespace `netns` (the pod is gone).
    pub fn remove_namespace(&self, netns: &Path) {
        lock(&self.state).namespaces.remove(netns);
    }

    /// Sets the root qdisc of `ifindex` in `netns` (a foreign qdisc an admin installed).
    pub fn set_root(&self, netns: &Path, ifindex: i32, root: RootQdisc) {
        if let Some(ns) = lock(&self.state).namespaces.get_mut(netns) {
            ns.roots.insert(ifindex, root);
        }
    }

    /// The root qdisc of `ifindex` in `netns` (None: the kernel default).
    pub fn root(&self, netns: &Path, ifindex: i32) -> Option<RootQdisc> {
        lock(&self.state)
            .namespaces
            .get(netns)
            .and_then(|ns| ns.roots.get(&ifindex).cloned())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<NetlinkCall> {
        lock(&self.state).calls.clone()
    }

    /// The calls that changed something (replace, delete), in order.
    pub fn changes(&self) -> Vec<NetlinkCall> {
        self.calls()
            .into_iter()
            .filter(|c| {
                !matches!(
                    c,
                    NetlinkCall::Open(_)
                        | NetlinkCall::Links
                        | NetlinkCall::RootQdisc(_)
                        | NetlinkCall::Qdiscs(_)
                )
            })
            .collect()
    }

    /// The qdiscs below the root of `ifindex` in `netns`.
    pub fn children(&self, netns: &Path, ifindex: i32) -> Vec<Qdisc> {
        self.with_ns(netns, |ns| {
            ns.children
                .iter()
                .filter(|(i, _)| *i == ifindex)
                .map(|(_, q)| q.clone())
                .collect()
        })
    }

    /// The filters of `ifindex` in `netns`.
    pub fn filters(&self, netns: &Path, ifindex: i32) -> Vec<Filter> {
        self.with_ns(netns, |ns| {
            ns.filters
                .iter()
                .filter(|(i, _)| *i == ifindex)
                .map(|(_, f)| f.clone())
                .collect()
        })
    }

    /// From now on, `call`'s operation fails on `call`'s interface (any interface for
    /// open and list links), with EIO from the "kernel".
    pub fn fail(&self, call: &NetlinkCall) {
        lock(&self.state)
            .failing
            .insert((call.op(), call.ifindex()));
    }

    /// Operations stop failing.
    pub fn heal(&self) {
        lock(&self.state).failing.clear();
    }

    fn call(&self, netns: &Path, call: NetlinkCall) -> Result<(), NetlinkError> {
        let mut state = lock(&self.state);
        let (op, ifindex) = (call.op(), call.ifindex());
        state.calls.push(call);
        if !state.namespaces.contains_key(netns) {
            return Err(NetlinkError::Namespace {
                path: netns.to_path_buf(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        if state.failing.contains(&(op, ifindex)) {
            return Err(NetlinkError::Kernel {
                op,
                ifindex: ifindex.unwrap_or(0),
                source: std::io::Error::from_raw_os_error(libc::EIO),
            });
        }
        Ok(())
    }

    fn with_ns<T>(&self, netns: &Path, f: impl FnOnce(&mut Namespace) -> T) -> T {
        let mut state = lock(&self.state);
        let ns = state.namespaces.entry(netns.to_path_buf()).or_default();
        f(ns)
    }
}

impl Netlink for RecordingNetlink {
    fn open(&self, netns: &Path) -> Result<Box<dyn QdiscOps>, NetlinkError> {
        self.call(netns, NetlinkCall::Open(netns.to_path_buf()))?;
        Ok(Box::new(FakeHandle {
            fake: self.clone(),
            netns: netns.to_path_buf(),
        }))
    }
}

/// A fake handle bound to one namespace.
#[derive(Debug)]
struct FakeHandle {
    fake: RecordingNetlink,
    netns: PathBuf,
}

impl QdiscOps for FakeHandle {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        self.fake.call(&self.netns, NetlinkCall::Links)?;
        Ok(self.fake.with_ns(&self.netns, |ns| ns.links.clone()))
    }

    fn root_qdisc(&mut self, ifindex: i32) -> Result<Option<RootQdisc>, NetlinkError> {
        self.fake
            .call(&self.netns, NetlinkCall::RootQdisc(ifindex))?;
        Ok(self.fake.root(&self.netns, ifindex))
    }

    fn replace_root_qdisc(
        &mut self,
        ifindex: i32,
        kind: &str,
        handle: u32,
        options: &[u8],
    ) -> Result<(), NetlinkError> {
        let call = NetlinkCall::Replace(ifindex, kind.to_string(), handle);
        self.fake.call(&self.netns, call)?;
        let root = RootQdisc {
            kind: kind.to_string(),
            handle,
            options: options.to_vec(),
        };
        self.fake.with_ns(&self.netns, |ns| {
            if ns.roots.get(&ifindex).map(|r| (&r.kind, r.handle)) != Some((&root.kind, handle)) {
                ns.drop_tree(ifindex);
            }
            ns.roots.insert(ifindex, root)
        });
        Ok(())
    }

    fn delete_root_qdisc(&mut self, ifindex: i32) -> Result<(), NetlinkError> {
        self.fake.call(&self.netns, NetlinkCall::Delete(ifindex))?;
        self.fake.with_ns(&self.netns, |ns| {
            ns.drop_tree(ifindex);
            ns.roots.remove(&ifindex)
        });
        Ok(())
    }

    fn qdiscs(&mut self, ifindex: i32) -> Result<Vec<Qdisc>, NetlinkError> {
        self.fake.call(&self.netns, NetlinkCall::Qdiscs(ifindex))?;
        let mut out: Vec<Qdisc> = self
            .fake
            .root(&self.netns, ifindex)
            .into_iter()
            .map(|r| Qdisc {
                kind: r.kind,
                handle: r.handle,
                parent: ROOT,
                options: r.options,
            })
            .collect();
        out.extend(self.fake.children(&self.netns, ifindex));
        Ok(out)
    }

    fn put_qdisc(&mut self, ifindex: i32, qdisc: &Qdisc) -> Result<(), NetlinkError> {
        let call = NetlinkCall::PutQdisc(ifindex, qdisc.kind.clone(), qdisc.parent, qdisc.handle);
        self.fake.call(&self.netns, call)?;
        self.fake.with_ns(&self.netns, |ns| {
            ns.children
                .retain(|(i, q)| *i != ifindex || q.parent != qdisc.parent);
            ns.children.push((ifindex, qdisc.clone()));
        });
        Ok(())
    }

    fn delete_qdisc(&mut self, ifindex: i32, parent: u32, handle: u32) -> Result<(), NetlinkError> {
        let call = NetlinkCall::DeleteQdisc(ifindex, parent, handle);
        self.fake.call(&self.netns, call)?;
        self.fake.with_ns(&self.netns, |ns| {
            ns.children
                .retain(|(i, q)| *i != ifindex || q.parent != parent);
            if parent == INGRESS {
                ns.filters
                    .retain(|(i, f)| *i != ifindex || f.parent != handle);
            }
        });
        Ok(())
    }

    fn add_filter(&mut self, ifindex: i32, filter: &Filter) -> Result<(), NetlinkError> {
        let call = NetlinkCall::AddFilter(ifindex, filter.parent, filter.pref, filter.protocol);
        self.fake.call(&self.netns, call)?;
        self.fake
            .with_ns(&self.netns, |ns| ns.filters.push((ifindex, filter.clone())));
        Ok(())
    }

    fn add_link(&mut self, name: &str, kind: &str) -> Result<i32, NetlinkError> {
        let call = NetlinkCall::AddLink(name.to_string(), kind.to_string());
        self.fake.call(&self.netns, call)?;
        Ok(self.fake.with_ns(&self.netns, |ns| {
            let index = ns.links.iter().map(|l| l.index).max().unwrap_or(1) + 1;
            ns.links.push(Link {
                index,
                name: name.to_string(),
                loopback: false,
            });
            index
        }))
    }

    fn delete_link(&mut self, ifindex: i32) -> Result<(), NetlinkError> {
        self.fake
            .call(&self.netns, NetlinkCall::DeleteLink(ifindex))?;
        self.fake.with_ns(&self.netns, |ns| {
            ns.links.retain(|l| l.index != ifindex);
            ns.roots.remove(&ifindex);
            ns.children.retain(|(i, _)| *i != ifindex);
            ns.filters.retain(|(i, _)| *i != ifindex);
        });
        Ok(())
    }

    fn filter_count(&mut self, ifindex: i32, parent: u32) -> Result<usize, NetlinkError> {
        self.fake.call(&self.netns, NetlinkCall::Qdiscs(ifindex))?;
        let filters = self.fake.filters(&self.netns, ifindex);
        Ok(filters.iter().filter(|f| f.parent == parent).count())
    }

    fn delete_filters(
        &mut self,
        ifindex: i32,
        parent: u32,
        pref: u16,
        protocol: u16,
    ) -> Result<(), NetlinkError> {
        let call = NetlinkCall::DeleteFilters(ifindex, parent, pref, protocol);
        self.fake.call(&self.netns, call)?;
        self.fake.with_ns(&self.netns, |ns| {
            ns.filters.retain(|(i, f)| {
                *i != ifindex || (f.parent, f.pref, f.protocol) != (parent, pref, protocol)
            })
        });
        Ok(())
    }
}
