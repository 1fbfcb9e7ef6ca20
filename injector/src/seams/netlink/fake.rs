//! [`RecordingNetlink`]: the fake of the netlink seam. Namespaces hold links and root qdiscs
//! in memory, every call is recorded, and any operation (on one interface or all) can be told
//! to fail, so the netem fault's apply and undo are unit-tested, partial failures included.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Link, Netlink, NetlinkError, QdiscOps, RootQdisc};

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
}

impl NetlinkCall {
    fn op(&self) -> &'static str {
        match self {
            NetlinkCall::Open(_) => "open",
            NetlinkCall::Links => "list links",
            NetlinkCall::RootQdisc(_) => "list qdiscs",
            NetlinkCall::Replace(..) => "replace root qdisc",
            NetlinkCall::Delete(_) => "delete root qdisc",
        }
    }

    fn ifindex(&self) -> Option<i32> {
        match self {
            NetlinkCall::RootQdisc(i) | NetlinkCall::Replace(i, ..) | NetlinkCall::Delete(i) => {
                Some(*i)
            }
            NetlinkCall::Open(_) | NetlinkCall::Links => None,
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
}

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
                roots: BTreeMap::new(),
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
            .filter(|c| matches!(c, NetlinkCall::Replace(..) | NetlinkCall::Delete(_)))
            .collect()
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
        self.fake
            .with_ns(&self.netns, |ns| ns.roots.insert(ifindex, root));
        Ok(())
    }

    fn delete_root_qdisc(&mut self, ifindex: i32) -> Result<(), NetlinkError> {
        self.fake.call(&self.netns, NetlinkCall::Delete(ifindex))?;
        self.fake
            .with_ns(&self.netns, |ns| ns.roots.remove(&ifindex));
        Ok(())
    }
}
