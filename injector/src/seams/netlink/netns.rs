//! Opening a [`RouteSocket`] in another network namespace: `setns` moves only the calling
//! thread, and a socket stays bound to the namespace it was created in for its whole life, so
//! the calling thread joins the pod's namespace, creates the socket and goes back to its own.
//! No other thread is involved: under emulation (the VM tier) a thread spawned and joined, or
//! a job handed to a long-lived thread and its answer handed back, cost more than the whole
//! open (each is a wake-up of another thread, measured in the `net` suite's `netlink_steps`).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::socket::RouteSocket;
use super::NetlinkError;

fn join(ns: &File, path: PathBuf) -> Result<(), NetlinkError> {
    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|errno| {
        NetlinkError::Namespace {
            path,
            source: errno.into(),
        }
    })
}

/// Opens a socket in the namespace of `ns` (opened from `path`) on the calling thread, which
/// is back in its own namespace when this returns.
pub(super) fn open_in(ns: File, path: PathBuf) -> Result<RouteSocket, NetlinkError> {
    const OWN: &str = "/proc/thread-self/ns/net";
    let own = File::open(OWN).map_err(|source| NetlinkError::Namespace {
        path: PathBuf::from(OWN),
        source,
    })?;
    join(&ns, path)?;
    let socket = RouteSocket::open_current();
    if let Err(err) = join(&own, PathBuf::from(OWN)) {
        // A thread left in a pod's namespace would create every later socket of whatever
        // runs on it there. Going back into a namespace this thread was in a moment ago
        // cannot be refused; if it ever is, the process stops, and its restart recovers
        // every fault from the journal (the path a SIGKILL takes).
        eprintln!("nri-chaos: cannot return to this thread's own network namespace: {err}");
        std::process::abort();
    }
    socket
}
