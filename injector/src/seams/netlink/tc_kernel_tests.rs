//! The targeted network faults' messages against the real kernel, in a private network
//! namespace, read back by `tc -d` (the bytes of `tc.rs` checked once more by the tool that
//! defines them). What the kernel lacks (this host's 6.18 has no sch_prio, act_gact or
//! sch_netem) is reported by name: `[nri-chaos-tests] SKIPPED <test>: <why>`.

use std::process::Command;

use super::tc::{tbf_options, u32_options, Verdict, ETH_P_IP, ETH_P_IPV6};
use super::tests::PrivateNetns;
use super::*;
use crate::faults::net::rules::{matches, Side};
use crate::faults::net::{NetError, Target};
use crate::faults::partition::PartitionFault;
use crate::faults::FakeKernel as Fakes;
use crate::faults::{Fault, Kernel, RecordingUndoLog};

fn tc(netns: &PrivateNetns, args: &[&str]) -> String {
    let pid = netns.pid().to_string();
    let out = Command::new("nsenter")
        .args(["-t", &pid, "-n", "tc"])
        .args(args)
        .output()
        .expect("nsenter tc");
    assert!(
        out.status.success(),
        "tc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Written to the process's stdout itself, not through `println!`: the test harness captures
/// `println!` of a passing test, and a skip must show in the suite's closing line.
fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let line = format!("[nri-chaos-tests] SKIPPED {test}: {why}\n");
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

fn filter(parent: u32, pref: u16, target: &str, verdict: Verdict) -> Vec<Filter> {
    let target = Target::parse(target).unwrap();
    matches(&target, Side::Destination)
        .into_iter()
        .map(|m| Filter {
            parent,
            pref: pref * 2 + u16::from(m.protocol == ETH_P_IPV6),
            protocol: m.protocol,
            kind: "u32".into(),
            options: u32_options(&m.keys, verdict),
        })
        .collect()
}

#[test]
fn u32_selectors_and_an_ingress_qdisc_read_back_by_tc() {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let lo = socket.links().unwrap()[0].index;
    let ingress = Qdisc {
        kind: "ingress".into(),
        handle: 0xffff_0000,
        parent: 0xffff_fff1,
        options: Vec::new(),
    };
    socket.put_qdisc(lo, &ingress).unwrap();
    assert!(tc(&netns, &["qdisc", "show", "dev", "lo"])
        .contains("qdisc ingress ffff: parent ffff:fff1"));
    let class = Verdict::Class(0x4e43_0002);
    for f in filter(0xffff_0000, 2, "10.0.3.0/24:5432/tcp", class)
        .into_iter()
        .chain(filter(0xffff_0000, 2, "[fd00::/40]:443/udp", class))
    {
        socket.add_filter(lo, &f).unwrap();
    }
    assert_eq!(
        socket.filter_count(lo, 0xffff_0000).unwrap(),
        6,
        "2 chains + 2 hash tables + 2 keys"
    );
    let shown = tc(
        &netns,
        &["-d", "filter", "show", "dev", "lo", "parent", "ffff:"],
    );
    for want in [
        "filter protocol ip pref 4 u32",
        "*flowid 4e43:2",
        "match 0a000300/ffffff00 at 16",
        "match 00060000/00ff0000 at 8",
        "match 00001538/0000ffff at 20",
        "filter protocol ipv6 pref 5 u32",
        "match fd000000/ffffffff at 24",
        "match 00000000/ff000000 at 28",
        "match 00001100/0000ff00 at 4",
        "match 000001bb/0000ffff at 40",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }
    socket.delete_filters(lo, 0xffff_0000, 4, ETH_P_IP).unwrap();
    socket
        .delete_filters(lo, 0xffff_0000, 5, ETH_P_IPV6)
        .unwrap();
    socket
        .delete_filters(lo, 0xffff_0000, 5, ETH_P_IPV6)
        .unwrap(); // none: fine
    assert_eq!(socket.filter_count(lo, 0xffff_0000).unwrap(), 0);
    socket.delete_qdisc(lo, 0xffff_fff1, 0xffff_0000).unwrap();
    assert!(!tc(&netns, &["qdisc", "show", "dev", "lo"]).contains("ingress"));
}

#[test]
fn tbf_options_read_back_by_tc() {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let lo = socket.links().unwrap()[0].index;
    let options = tbf_options(125_000, 16_384, 22_634);
    match socket.replace_root_qdisc(lo, "tbf", NRI_CHAOS_HANDLE, &options) {
        Err(NetlinkError::QdiscUnavailable { .. }) => {
            return skipped("tbf_options_read_back_by_tc", "this kernel has no sch_tbf")
        }
        other => other.unwrap(),
    }
    let shown = tc(&netns, &["-d", "qdisc", "show", "dev", "lo"]);
    assert!(
        shown.contains("qdisc tbf 4e43: root") && shown.contains("rate 1Mbit burst 16Kb"),
        "{shown}"
    );
    // limit 22634 bytes at 1 Mbit with a 16 KiB bucket: (22634 - 16384) / 125000 s = 50 ms.
    assert!(
        shown.contains("lat 50ms") && shown.contains("linklayer ethernet"),
        "{shown}"
    );
}

/// The whole partition path on the kernel: built, read back and removed when the kernel has
/// prio and gact; otherwise the failure leaves the interface exactly as it was.
#[test]
fn a_partition_on_the_kernel_builds_the_tree_or_leaves_everything_as_it_was() {
    const TEST: &str = "a_partition_on_the_kernel_builds_the_tree_or_leaves_everything_as_it_was";
    let netns = PrivateNetns::new();
    // A foreign root qdisc an admin put there, to be kept byte for byte.
    tc(
        &netns,
        &[
            "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "7", "r2q", "3",
        ],
    );
    let before = tc(&netns, &["-d", "qdisc", "show", "dev", "lo"]);
    let before_filters = tc(&netns, &["-d", "filter", "show", "dev", "lo"]);
    let fakes = Fakes::new();
    let kernel = Kernel {
        netlink: &KernelNetlink,
        ..fakes.kernel()
    };
    let cut = PartitionFault {
        to: vec![Target::parse("10.0.0.2").unwrap()],
        direction: crate::faults::net::Direction::Both,
        interface: Some("lo".into()),
    };
    let mut log = RecordingUndoLog::new();
    match cut.apply(&kernel, &netns.path(), &mut log) {
        Ok(undo) => {
            let shown = tc(&netns, &["-d", "qdisc", "show", "dev", "lo"]);
            assert!(shown.contains("qdisc prio 4e43: root"), "{shown}");
            assert!(shown.contains("qdisc htb 1: parent 4e43:1"), "{shown}");
            let filters = tc(
                &netns,
                &["-d", "filter", "show", "dev", "lo", "parent", "4e43:"],
            );
            assert!(filters.contains("gact action drop"), "{filters}");
            assert!(
                filters.contains("match 0a000002/ffffffff at 16"),
                "{filters}"
            );
            let ingress = tc(
                &netns,
                &["-d", "filter", "show", "dev", "lo", "parent", "ffff:"],
            );
            assert!(
                ingress.contains("match 0a000002/ffffffff at 12"),
                "{ingress}"
            );
            PartitionFault::recover(&kernel, undo).unwrap();
        }
        Err(NetError::Netlink(NetlinkError::QdiscUnavailable { kind })) => {
            skipped(
                TEST,
                &format!("this kernel has no sch_{kind}; checked the rollback only"),
            );
            assert!(
                log.live().is_empty(),
                "a rolled back apply leaves no journal entry"
            );
        }
        Err(NetError::Netlink(NetlinkError::Kernel {
            op: "add filter",
            source,
            ..
        })) => {
            skipped(TEST, &format!("this kernel cannot add a u32 filter with a gact action (act_gact missing?): {source}; checked the rollback only"));
            assert!(log.live().is_empty());
        }
        Err(other) => panic!("unexpected: {other}"),
    }
    assert_eq!(tc(&netns, &["-d", "qdisc", "show", "dev", "lo"]), before);
    assert_eq!(
        tc(&netns, &["-d", "filter", "show", "dev", "lo"]),
        before_filters
    );
}

#[test]
fn an_ifb_device_and_a_mirred_redirect_read_back_by_tc_and_ip() {
    let netns = PrivateNetns::new();
    let mut socket = RouteSocket::open_in_netns(&netns.path()).unwrap();
    let lo = socket.links().unwrap()[0].index;
    let ifb = match socket.add_link("ifb4e43-1", "ifb") {
        Ok(index) => index,
        Err(err) => {
            return skipped(
                "an_ifb_device_and_a_mirred_redirect_read_back_by_tc_and_ip",
                &format!("this kernel cannot create an ifb device: {err}"),
            )
        }
    };
    let pid = netns.pid().to_string();
    let ip = Command::new("nsenter")
        .args(["-t", &pid, "-n", "ip", "-d", "link", "show", "ifb4e43-1"])
        .output()
        .expect("nsenter ip");
    let shown = String::from_utf8_lossy(&ip.stdout);
    assert!(
        shown.contains("state UNKNOWN") || shown.contains(",UP"),
        "{shown}"
    );
    assert!(shown.contains("ifb"), "{shown}");
    let ingress = Qdisc {
        kind: "ingress".into(),
        handle: 0xffff_0000,
        parent: 0xffff_fff1,
        options: Vec::new(),
    };
    socket.put_qdisc(lo, &ingress).unwrap();
    let every = [super::tc::Key {
        mask: 0,
        value: 0,
        off: 0,
    }];
    let redirect = Filter {
        parent: 0xffff_0000,
        pref: 64,
        protocol: super::tc::ETH_P_ALL,
        kind: "u32".into(),
        options: u32_options(&every, Verdict::Redirect(u32::try_from(ifb).unwrap())),
    };
    socket.add_filter(lo, &redirect).unwrap();
    let filters = tc(&netns, &["-d", "filter", "show", "dev", "lo", "ingress"]);
    for want in [
        "protocol all pref 64 u32",
        "match 00000000/00000000 at 0",
        "mirred (Egress Redirect to device ifb4e43-1) stolen",
    ] {
        assert!(filters.contains(want), "{want:?} not in:\n{filters}");
    }
    socket.delete_link(ifb).unwrap();
    socket.delete_link(ifb).unwrap(); // gone: fine
    assert!(!socket
        .links()
        .unwrap()
        .iter()
        .any(|l| l.name == "ifb4e43-1"));
}
