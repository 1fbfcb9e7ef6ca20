//! [`QdiscOps::batch`] of the kernel's socket, in a private network namespace: more changes
//! than one write carries, and a refused change in the middle (its error is the batch's, the
//! kernel went on past it, every acknowledgement was read so the socket answers the next
//! request with its own reply).

use super::tc::{u32_options, Key, Verdict, ETH_P_IP};
use super::tests::PrivateNetns;
use super::*;

const INGRESS: u32 = 0xffff_0000;

fn ingress() -> Change {
    Change::Qdisc(Qdisc {
        kind: "ingress".into(),
        handle: INGRESS,
        parent: 0xffff_fff1,
        options: Vec::new(),
    })
}

/// A u32 filter matching destination 10.77.<i / 250>.<i % 250 + 1>, under `parent`.
fn filter(parent: u32, i: u32) -> Change {
    let key = Key {
        mask: u32::MAX,
        value: 0x0a4d_0000 | (i / 250) << 8 | (i % 250 + 1),
        off: 16,
    };
    Change::Filter(Filter {
        parent,
        pref: 4,
        protocol: ETH_P_IP,
        kind: "u32".into(),
        options: u32_options(&[key], Verdict::Class(0x4e43_0002)),
    })
}

#[test]
fn a_batch_longer_than_one_write_is_applied_in_order() {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let lo = socket.links().unwrap()[0].index;
    let mut changes = vec![ingress()];
    changes.extend((0..150).map(|i| filter(INGRESS, i)));
    socket.batch(lo, &changes).unwrap();
    // One u32 instance and its hash table at preference 4, and a node per filter.
    assert_eq!(socket.filter_count(lo, INGRESS).unwrap(), 152);
    socket.delete_qdisc(lo, 0xffff_fff1, INGRESS).unwrap();
    assert_eq!(socket.qdiscs(lo).unwrap().len(), 0);
}

#[test]
fn a_refused_change_is_the_batch_error_and_the_socket_stays_in_step() {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let lo = socket.links().unwrap()[0].index;
    // The second filter hangs on a qdisc that does not exist.
    let changes = [
        ingress(),
        filter(INGRESS, 1),
        filter(0x1234_0000, 2),
        filter(INGRESS, 3),
    ];
    let err = socket.batch(lo, &changes).unwrap_err();
    assert!(
        matches!(err, NetlinkError::Kernel { op: "add filter", ifindex, .. } if ifindex == lo),
        "{err}"
    );
    // The kernel went on past the refused change: both other filters are there.
    assert_eq!(socket.filter_count(lo, INGRESS).unwrap(), 4);
    // A kind the kernel does not know is named.
    let unknown = Change::Qdisc(Qdisc {
        kind: "nosuchqdisc".into(),
        handle: 0x4e43_0000,
        parent: u32::MAX,
        options: Vec::new(),
    });
    let err = socket.batch(lo, &[unknown]).unwrap_err();
    assert!(
        matches!(&err, NetlinkError::QdiscUnavailable { kind } if kind == "nosuchqdisc"),
        "{err}"
    );
    socket.delete_qdisc(lo, 0xffff_fff1, INGRESS).unwrap();
    assert!(socket.qdiscs(lo).unwrap().is_empty());
}
