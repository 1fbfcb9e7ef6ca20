//! The netlink seam against the real kernel, inside a private network namespace of a child
//! process (`unshare -n sleep`): nothing of the host's network is touched.

use std::process::{Child, Command};

use super::*;
use crate::faults::netem::{NetemFault, NetemUndo};
use crate::faults::FakeKernel as Fakes;
use crate::faults::{Fault, Kernel, NoUndoLog};

pub(super) struct PrivateNetns {
    child: Child,
}

impl PrivateNetns {
    pub(super) fn new() -> PrivateNetns {
        assert!(
            rustix::process::geteuid().is_root(),
            "the netlink kernel tests need root (a private network namespace)"
        );
        let child = Command::new("unshare")
            .args(["--net", "sleep", "60"])
            .spawn()
            .expect("unshare --net sleep");
        // Dropping it kills and reaps the child, whatever happens next.
        let netns = PrivateNetns { child };
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        for _ in 0..200 {
            if std::fs::read_link(netns.path())
                .map(|l| l != own)
                .unwrap_or(false)
            {
                return netns;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("child never entered its own network namespace");
    }

    /// The process holding it (for `nsenter -t <pid> -n`).
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }
}

impl Drop for PrivateNetns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn lists_links_and_swaps_root_qdiscs_inside_a_namespace() {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let links = socket.links().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].name, "lo");
    assert!(links[0].loopback);
    let lo = links[0].index;

    let before = socket.root_qdisc(lo).unwrap();
    assert!(
        before.as_ref().is_none_or(RootQdisc::is_default),
        "{before:?}"
    );

    // pfifo (always built in) exercises the same RTM_NEWQDISC path netem takes.
    socket
        .replace_root_qdisc(lo, "pfifo", NRI_CHAOS_HANDLE, &100u32.to_ne_bytes())
        .unwrap();
    let installed = socket.root_qdisc(lo).unwrap().unwrap();
    assert_eq!(installed.kind, "pfifo");
    assert!(installed.is_ours());
    assert_eq!(&installed.options[..4], &100u32.to_ne_bytes());

    socket.delete_root_qdisc(lo).unwrap();
    let after = socket.root_qdisc(lo).unwrap();
    assert!(
        after.as_ref().is_none_or(RootQdisc::is_default),
        "{after:?}"
    );
    // Deleting again is fine.
    socket.delete_root_qdisc(lo).unwrap();

    // The host's own namespace was never touched.
    let mut host = RouteSocket::open_current().unwrap();
    assert!(!host.links().unwrap().is_empty());
}

#[test]
fn netem_is_installed_or_reported_unavailable_with_the_reason() {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let lo = socket.links().unwrap()[0].index;
    let fault = crate::faults::netem::NetemFault {
        delay: Some(std::time::Duration::from_millis(100)),
        ..Default::default()
    };
    let options = netem_options::netem_options(&fault);
    match socket.replace_root_qdisc(lo, "netem", NRI_CHAOS_HANDLE, &options) {
        Ok(()) => {
            let installed = socket.root_qdisc(lo).unwrap().unwrap();
            assert_eq!(installed.kind, "netem");
            println!("sch_netem available: netem installed on lo");
            socket.delete_root_qdisc(lo).unwrap();
        }
        Err(err @ NetlinkError::QdiscUnavailable { .. }) => {
            assert!(err.to_string().contains("sch_netem"), "{err}");
            println!("this kernel has no sch_netem: {err}");
        }
        Err(other) => panic!("unexpected: {other}"),
    }
}

#[test]
fn the_opening_thread_is_back_in_its_own_namespace_after_an_open() {
    let own = || std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let before = own();
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    assert_eq!(own(), before, "the thread stayed in the pod's namespace");
    // The socket is the pod's (only lo there), a new one on this thread is the host's.
    assert_eq!(socket.links().unwrap().len(), 1);
    let host = RouteSocket::open_current().unwrap().links().unwrap();
    assert!(host.len() > 1, "{host:?}");
    // A refused join leaves the thread where it was too.
    RouteSocket::open_in_netns(Path::new("/proc/self/ns/mnt")).unwrap_err();
    assert_eq!(own(), before);
}

#[test]
fn a_missing_namespace_is_named_in_the_error() {
    let err = RouteSocket::open_in_netns(Path::new("/proc/0/ns/net")).unwrap_err();
    assert!(err.to_string().contains("/proc/0/ns/net"), "{err}");
}

/// A private namespace whose `lo` has someone else's root qdisc.
fn with_foreign_root_qdisc(
    kind: &str,
    handle: u32,
    options: &[u8],
) -> (PrivateNetns, RouteSocket, Vec<Link>) {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let lo = socket.links().unwrap();
    socket
        .replace_root_qdisc(lo[0].index, kind, handle, options)
        .unwrap();
    (netns, socket, lo)
}

#[test]
fn a_foreign_root_qdisc_is_saved_and_put_back() {
    // Someone else's root qdisc (bfifo, limit 4096 bytes, handle 1:).
    let (netns, mut socket, lo) =
        with_foreign_root_qdisc("bfifo", 0x0001_0000, &4096u32.to_ne_bytes());
    let shaped = shape_lo_with_pfifo(&netns);
    assert_eq!(
        shaped[0].saved.as_ref().map(|s| s.kind.as_str()),
        Some("bfifo")
    );
    assert!(socket.root_qdisc(lo[0].index).unwrap().unwrap().is_ours());

    remove(&netns.path(), &shaped);
    let back = socket.root_qdisc(lo[0].index).unwrap().unwrap();
    assert_eq!((back.kind.as_str(), back.handle), ("bfifo", 0x0001_0000));
    assert_eq!(&back.options[..4], &4096u32.to_ne_bytes());
    assert_eq!(back.options, 4096u32.to_ne_bytes());

    // The namespace gone: nothing left to remove.
    let path = netns.path();
    drop(netns);
    std::thread::sleep(std::time::Duration::from_millis(50));
    remove(&path, &shaped);
}

#[test]
fn a_named_interface_that_is_missing_is_reported_with_what_exists() {
    let netns = PrivateNetns::new();
    let shape = |interface| {
        NetemFault::shape(
            &KernelNetlink,
            &netns.path(),
            interface,
            ("pfifo", &[]),
            &mut NoUndoLog,
        )
        .unwrap_err()
        .to_string()
    };
    let err = shape(Some("eth0"));
    assert!(
        err.contains("no interface 'eth0'") && err.contains("lo"),
        "{err}"
    );
    assert_eq!(
        shape(None),
        "the pod's network namespace has no interface but loopback"
    );
}

/// The netem fault's path with pfifo (always built in) on the namespace's loopback.
fn shape_lo_with_pfifo(netns: &PrivateNetns) -> Vec<ShapedInterface> {
    NetemFault::shape(
        &KernelNetlink,
        &netns.path(),
        Some("lo"),
        ("pfifo", &10u32.to_ne_bytes()),
        &mut NoUndoLog,
    )
    .unwrap()
    .interfaces
}

/// The netem fault's recovery against the kernel.
fn remove(netns: &Path, interfaces: &[ShapedInterface]) {
    let fakes = Fakes::new();
    let kernel = Kernel {
        netlink: &KernelNetlink,
        ..fakes.kernel()
    };
    let undo = NetemUndo {
        netns: netns.to_path_buf(),
        interfaces: interfaces.to_vec(),
    };
    NetemFault::recover(&kernel, undo).unwrap();
}

/// The bytes of a TCA_OPTIONS payload made of `attributes` (a kind with nested options).
pub(super) fn nested(attributes: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let attributes: Vec<DefaultNla> = attributes
        .iter()
        .map(|(kind, value)| DefaultNla::new(*kind, value.clone()))
        .collect();
    let mut out = vec![0; attributes.as_slice().buffer_len()];
    attributes.as_slice().emit(&mut out);
    out
}

/// htb's TCA_OPTIONS: TCA_HTB_INIT (`tc_htb_glob`: version, r2q, default class, debug,
/// direct packets) and TCA_HTB_DIRECT_QLEN. tc sends version 3, the kernel dumps its HTB_VER.
fn htb_options(version: u32, default_class: u32, direct_qlen: u32) -> Vec<u8> {
    let glob: Vec<u8> = [version, 10, default_class, 0, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    nested(&[(2, glob), (5, direct_qlen.to_ne_bytes().to_vec())])
}

#[test]
fn a_foreign_qdisc_with_nested_options_is_put_back_exactly() {
    let (netns, mut socket, lo) =
        with_foreign_root_qdisc("htb", 0x0007_0000, &htb_options(3, 0x12, 333));
    let before = socket.root_qdisc(lo[0].index).unwrap().unwrap();
    assert_eq!((before.kind.as_str(), before.handle), ("htb", 0x0007_0000));
    assert_eq!(
        before.options,
        htb_options(0x0003_0011, 0x12, 333),
        "the kernel's dump"
    );

    let shaped = shape_lo_with_pfifo(&netns);
    let saved = shaped[0].saved.clone().unwrap();
    assert_eq!(
        (saved.kind.as_str(), saved.handle, &saved.options),
        ("htb", 0x0007_0000, &before.options)
    );
    assert_eq!(
        socket.root_qdisc(lo[0].index).unwrap().unwrap().kind,
        "pfifo"
    );

    remove(&netns.path(), &shaped);
    assert_eq!(socket.root_qdisc(lo[0].index).unwrap(), Some(before));
}
