//! The targeted network faults: their grammar through the daemon's planner, and the shared
//! tree over the recording netlink fake (composition, foreign root, last one out, failures).

use std::collections::HashMap;
use std::path::PathBuf;

use super::tree::slot_handle;
use super::*;
use crate::faults::bandwidth::BandwidthFault;
use crate::faults::netem::{NetemFault, TargetedNetem};
use crate::faults::partition::PartitionFault;
use crate::faults::FakeKernel as Fakes;
use crate::faults::{recover, Fault, RecordingUndoLog, Undo};
use crate::plan::{plan_container, FaultSpec, PodRef};
use crate::policy::Policy;
use crate::seams::netlink::tc::{ETH_P_IP, ETH_P_IPV6};
use crate::seams::netlink::{NetlinkCall, RootQdisc, NRI_CHAOS_HANDLE};

fn plan(kind: &str, value: &str) -> Result<FaultSpec, String> {
    let key = format!("{kind}.nri-chaos.io/pod");
    let annotations: HashMap<String, String> = [(key, value.to_string())].into();
    let pod = PodRef {
        namespace: "default",
        name: "web-0",
        uid: "uid-1",
        annotations: &annotations,
        host_network: false,
    };
    let plan = plan_container(&pod, "app", None, &Policy::default());
    match (plan.faults.first(), plan.rejections.first()) {
        (Some(f), None) => Ok(f.spec.clone()),
        (_, Some(r)) => Err(r.reason.clone()),
        (None, None) => Err("nothing planned".into()),
    }
}

fn partition(value: &str) -> PartitionFault {
    match plan("partition", value) {
        Ok(FaultSpec::Partition(p)) => p,
        other => panic!("{value}: {other:?}"),
    }
}

fn rejected(kind: &str, value: &str, want: &str) {
    let got = plan(kind, value).expect_err(value);
    assert!(
        got.contains(want),
        "{kind} {value}: got {got:?}, want {want:?}"
    );
}

#[test]
fn targets_parse_every_documented_form() {
    let p = partition(
        "{to: [10.0.0.2, 10.0.3.0/24:5432/tcp, '10.0.0.9:8000-8080', '[fd00::1]:80/udp', fd00::/64, 10.1.0.0/16/UDP]}",
    );
    let shown: Vec<String> = p.to.iter().map(Target::to_string).collect();
    assert_eq!(
        shown,
        [
            "10.0.0.2/32",
            "10.0.3.0/24:5432/tcp",
            "10.0.0.9/32:8000-8080",
            "[fd00::1/128]:80/udp",
            "fd00::/64",
            "10.1.0.0/16/udp"
        ]
    );
    assert_eq!(p.direction, Direction::Both, "partition defaults to both");
    let one = partition("{to: 10.0.0.2, direction: egress}");
    assert_eq!((one.to.len(), one.direction), (1, Direction::Egress));
}

#[test]
fn bad_targets_name_the_item_the_value_and_why() {
    for (value, want) in [
        (
            "{to: [10.0.0.300]}",
            "to[0]: \"10.0.0.300\" is not a target: '10.0.0.300' is not an IPv4 or IPv6 address",
        ),
        ("{to: [10.0.0.1/33]}", "prefix '/33' is not 0 to 32"),
        ("{to: [10.0.0.1/24]}", "host bits set in 10.0.0.1/24"),
        (
            "{to: [10.0.0.2, '10.0.0.1:0']}",
            "to[1]: \"10.0.0.1:0\" is not a target: port 0",
        ),
        (
            "{to: ['10.0.0.1:90-80']}",
            "port range 90-80 runs backwards",
        ),
        ("{to: ['10.0.0.1:http']}", "'http' is not a port"),
        ("{to: ['[fd00::1:80']}", "'[' without its ']'"),
        ("{to: ['[10.0.0.1]:80']}", "brackets are for IPv6"),
        ("{to: []}", "lists no target"),
        ("{to: [[10.0.0.1]]}", "to[0]: expected a scalar"),
        ("{to: {a: 1}}", "to: expected a sequence"),
        ("{}", "partition needs to: [targets]"),
        (
            "{to: [10.0.0.1], direction: sideways}",
            "direction: \"sideways\" is not a direction",
        ),
    ] {
        rejected("partition", value, want);
    }
    rejected(
        "netem",
        "{delay: 1s, direction: egress}",
        "direction needs to",
    );
    rejected("bandwidth", "{to: [10.0.0.1]}", "bandwidth needs rate");
    rejected("bandwidth", "{rate: 1mbit}", "bandwidth needs to");
    rejected(
        "bandwidth",
        "{rate: 1mbit, to: [10.0.0.1], burst: 50%}",
        "burst: \"50%\" is not a byte count",
    );
}

#[test]
fn netem_without_to_is_unchanged_and_with_to_carries_the_targets() {
    match plan("netem", "{delay: 100ms}") {
        Ok(FaultSpec::Netem(n)) => {
            assert_eq!(n.to, None);
            assert_eq!(n.to_string(), "delay=100ms");
        }
        other => panic!("{other:?}"),
    }
    match plan("netem", "{delay: 100ms, to: ['10.0.0.2:8080/tcp']}") {
        Ok(FaultSpec::Netem(n)) => {
            assert_eq!(
                n.to_string(),
                "delay=100ms to=[10.0.0.2/32:8080/tcp] direction=egress"
            )
        }
        other => panic!("{other:?}"),
    }
    match plan("bandwidth", "{rate: 1mbit, to: [10.0.5.0/24]}") {
        Ok(FaultSpec::Bandwidth(b)) => {
            assert_eq!(
                (b.rate_bytes_per_sec, b.burst, b.limit),
                (125_000, 16_384, 22_634)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_examples_parse() {
    assert!(plan("partition", PartitionFault::EXAMPLE).is_ok());
    assert!(plan("bandwidth", BandwidthFault::EXAMPLE).is_ok());
}

fn netns() -> PathBuf {
    PathBuf::from("/run/netns/cni-pod")
}

const PRIO_ROOT: u32 = u32::MAX;

fn foreign() -> RootQdisc {
    RootQdisc {
        kind: "tbf".into(),
        handle: 0x1_0000,
        options: vec![1, 2, 3, 4],
    }
}

#[test]
fn faults_compose_in_one_tree_and_the_last_one_out_puts_the_foreign_root_back() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    fakes.netlink.set_root(&netns(), 2, foreign());
    let mut log = RecordingUndoLog::new();
    let cut = partition("{to: [10.0.0.2, 'fd00::2'], direction: egress}");
    let first = cut.apply(&fakes.kernel(), &netns(), &mut log).unwrap();
    assert_eq!(log.live(), vec![first.recovery().unwrap()]);
    let shaped = &first.interfaces[0];
    assert_eq!((shaped.slot, shaped.ingress), (2, false));
    assert_eq!(shaped.saved.as_ref().unwrap().kind, "tbf");
    let root = fakes.netlink.root(&netns(), 2).unwrap();
    assert_eq!(
        (root.kind.as_str(), root.handle),
        ("prio", NRI_CHAOS_HANDLE)
    );
    let children = fakes.netlink.children(&netns(), 2);
    assert!(children
        .iter()
        .any(|q| q.kind == "tbf" && q.parent == 0x4e43_0001 && q.handle == 0x1_0000));
    let filters = fakes.netlink.filters(&netns(), 2);
    let protocols: Vec<u16> = filters.iter().map(|f| f.protocol).collect();
    assert_eq!(protocols, [ETH_P_IP, ETH_P_IPV6]);
    let prefs: Vec<u16> = filters.iter().map(|f| f.pref).collect();
    assert_eq!(prefs, [4, 5], "one preference per protocol");
    assert!(filters.iter().all(|f| f.parent == NRI_CHAOS_HANDLE));

    // A second fault joins the tree, takes slot 3 and learns the foreign root from band 1.
    let slow = match plan("netem", "{delay: 100ms, to: ['10.0.0.3:8080/tcp']}") {
        Ok(FaultSpec::Netem(n)) => TargetedNetem(n),
        other => panic!("{other:?}"),
    };
    let second = slow.apply(&fakes.kernel(), &netns(), &mut log).unwrap();
    assert_eq!(second.interfaces[0].slot, 3);
    assert_eq!(second.interfaces[0].saved, first.interfaces[0].saved);
    assert!(fakes
        .netlink
        .children(&netns(), 2)
        .iter()
        .any(|q| q.kind == "netem" && q.handle == slot_handle(3) && q.parent == 0x4e43_0003));

    // The first out leaves the tree to the second.
    PartitionFault::recover(&fakes.kernel(), first.clone()).unwrap();
    assert_eq!(fakes.netlink.root(&netns(), 2).unwrap().kind, "prio");
    assert!(fakes
        .netlink
        .filters(&netns(), 2)
        .iter()
        .all(|f| f.pref == 6));
    // The last out (from the journal, as after a crash) puts the foreign root back.
    recover(&fakes.kernel(), &second.recovery().unwrap()).unwrap();
    assert_eq!(fakes.netlink.root(&netns(), 2), Some(foreign()));
    assert!(fakes.netlink.filters(&netns(), 2).is_empty());
    assert!(fakes.netlink.children(&netns(), 2).is_empty());
    // Again: nothing of ours is left, nothing changes.
    let changes = fakes.netlink.changes().len();
    recover(&fakes.kernel(), &second.recovery().unwrap()).unwrap();
    recover(&fakes.kernel(), &first.recovery().unwrap()).unwrap();
    let after: Vec<NetlinkCall> = fakes.netlink.changes()[changes..].to_vec();
    assert!(
        after.iter().all(|c| !matches!(
            c,
            NetlinkCall::Replace(..) | NetlinkCall::PutQdisc(..) | NetlinkCall::AddFilter(..)
        )),
        "{after:?}"
    );
    assert_eq!(fakes.netlink.root(&netns(), 2), Some(foreign()));
}

#[test]
fn partition_both_ways_uses_the_ingress_qdisc_and_removes_it() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    let mut log = RecordingUndoLog::new();
    let undo = partition("{to: ['10.0.0.2:80']}")
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap();
    assert!(undo.interfaces[0].ingress);
    let filters = fakes.netlink.filters(&netns(), 2);
    // tcp and udp, each egress (on 4e43:) and ingress (on ffff:).
    let parents: Vec<u32> = filters.iter().map(|f| f.parent).collect();
    assert_eq!(
        parents,
        [NRI_CHAOS_HANDLE, NRI_CHAOS_HANDLE, 0xffff_0000, 0xffff_0000]
    );
    assert!(fakes
        .netlink
        .children(&netns(), 2)
        .iter()
        .any(|q| q.kind == "ingress" && q.parent == 0xffff_fff1));
    recover(&fakes.kernel(), &undo.recovery().unwrap()).unwrap();
    assert_eq!(fakes.netlink.root(&netns(), 2), None, "kernel default back");
    assert!(
        fakes.netlink.children(&netns(), 2).is_empty(),
        "ingress qdisc gone"
    );
    assert!(fakes.netlink.filters(&netns(), 2).is_empty());
}

#[test]
fn a_failed_step_undoes_the_tree_and_clears_the_journal() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    fakes.netlink.set_root(&netns(), 2, foreign());
    fakes.netlink.fail(&NetlinkCall::AddFilter(2, 0, 0, 0));
    let mut log = RecordingUndoLog::new();
    let err = partition("{to: [10.0.0.2], direction: egress}")
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap_err();
    assert!(err.to_string().contains("add filter"), "{err}");
    assert!(log.live().is_empty());
    assert_eq!(fakes.netlink.root(&netns(), 2), Some(foreign()));
    // A failing undo keeps the entry.
    fakes.netlink.fail(&NetlinkCall::Delete(2));
    let err = partition("{to: [10.0.0.2], direction: egress}")
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap_err();
    assert!(matches!(err, NetError::NotUndone { .. }), "{err}");
    assert_eq!(log.live().len(), 1);
}

#[test]
fn an_untargeted_netem_and_the_tree_refuse_each_other() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    let mut log = RecordingUndoLog::new();
    let whole = NetemFault {
        delay: Some(std::time::Duration::from_millis(5)),
        ..NetemFault::default()
    };
    whole.apply(&fakes.kernel(), &netns(), &mut log).unwrap();
    let err = partition("{to: [10.0.0.2]}")
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap_err();
    assert!(
        err.to_string().contains("an untargeted netem of nri-chaos"),
        "{err}"
    );

    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    partition("{to: [10.0.0.2]}")
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap();
    let err = whole
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("targeted network faults of nri-chaos hold it"),
        "{err}"
    );
    let _ = PRIO_ROOT;
}

#[test]
fn fifteen_faults_fill_an_interface_and_the_sixteenth_is_refused() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    let mut log = RecordingUndoLog::new();
    let cut = partition("{to: [10.0.0.2], direction: egress}");
    for slot in 2..=16u8 {
        let undo = cut.apply(&fakes.kernel(), &netns(), &mut log).unwrap();
        assert_eq!(undo.interfaces[0].slot, slot);
    }
    let err = cut.apply(&fakes.kernel(), &netns(), &mut log).unwrap_err();
    assert!(
        err.to_string()
            .contains("15 targeted network faults already hold it"),
        "{err}"
    );
}

#[test]
fn a_gone_namespace_is_recovered() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    let undo = partition("{to: [10.0.0.2]}")
        .apply(&fakes.kernel(), &netns(), &mut RecordingUndoLog::new())
        .unwrap();
    fakes.netlink.remove_namespace(&netns());
    BandwidthFault::recover(&fakes.kernel(), undo).unwrap();
}

#[test]
fn ingress_shaping_goes_through_an_ifb_device_removed_by_the_last_one_out() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    let mut log = RecordingUndoLog::new();
    let lossy = match plan("netem", "{loss: 100%, direction: ingress, to: [10.0.0.3]}") {
        Ok(FaultSpec::Netem(n)) => TargetedNetem(n),
        other => panic!("{other:?}"),
    };
    let first = lossy.apply(&fakes.kernel(), &netns(), &mut log).unwrap();
    let shaped = &first.interfaces[0];
    assert_eq!(
        (shaped.ifb.as_deref(), shaped.ifb_slot),
        (Some("ifb4e43-2"), 2)
    );
    // eth0 (2): the ingress qdisc with the redirect to the ifb device (3); no egress filter.
    let filters = fakes.netlink.filters(&netns(), 2);
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert_eq!((filters[0].parent, filters[0].pref), (0xffff_0000, 64));
    let ifb = fakes.netlink.filters(&netns(), 3);
    assert_eq!(ifb.len(), 1);
    assert_eq!((ifb[0].parent, ifb[0].pref), (NRI_CHAOS_HANDLE, 4));
    assert_eq!(fakes.netlink.root(&netns(), 3).unwrap().kind, "prio");
    // A second one joins the same device, in slot 3.
    let slow = match plan(
        "bandwidth",
        "{rate: 1mbit, direction: both, to: [10.0.0.4]}",
    ) {
        Ok(FaultSpec::Bandwidth(b)) => b,
        other => panic!("{other:?}"),
    };
    let second = slow.apply(&fakes.kernel(), &netns(), &mut log).unwrap();
    assert_eq!(
        second.interfaces.len(),
        1,
        "the ifb device is not a target itself"
    );
    assert_eq!(second.interfaces[0].ifb_slot, 3);
    assert_eq!(
        fakes.netlink.filters(&netns(), 2).len(),
        2,
        "one redirect, one egress filter"
    );
    recover(&fakes.kernel(), &first.recovery().unwrap()).unwrap();
    assert!(
        fakes.netlink.root(&netns(), 3).is_some(),
        "the second still uses the device"
    );
    recover(&fakes.kernel(), &second.recovery().unwrap()).unwrap();
    let links: Vec<String> = fakes
        .netlink
        .calls()
        .iter()
        .filter_map(|c| match c {
            NetlinkCall::AddLink(name, kind) => Some(format!("{name}:{kind}")),
            NetlinkCall::DeleteLink(i) => Some(format!("-{i}")),
            _ => None,
        })
        .collect();
    assert_eq!(links, ["ifb4e43-2:ifb", "-3"]);
    assert!(fakes.netlink.filters(&netns(), 2).is_empty());
    assert!(
        fakes.netlink.children(&netns(), 2).is_empty(),
        "ingress qdisc gone"
    );
    assert_eq!(fakes.netlink.root(&netns(), 2), None);
}
