//! netem apply and undo over the recording netlink fake, partial failures included.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::faults::FakeKernel as Fakes;
use crate::faults::{recover, Fault, RecordingUndoLog, Undo};
use crate::seams::netlink::{NetlinkCall, RootQdisc, NRI_CHAOS_HANDLE};

fn netns() -> PathBuf {
    PathBuf::from("/run/netns/cni-pod")
}

fn delay() -> NetemFault {
    NetemFault {
        delay: Some(Duration::from_millis(100)),
        ..NetemFault::default()
    }
}

fn tbf() -> RootQdisc {
    RootQdisc {
        kind: "tbf".into(),
        handle: 0x1_0000,
        options: vec![1, 2, 3, 4],
    }
}

fn replace(ifindex: i32) -> NetlinkCall {
    NetlinkCall::Replace(ifindex, "netem".into(), NRI_CHAOS_HANDLE)
}

#[test]
fn apply_saves_a_foreign_root_journals_installs_and_recover_puts_it_back() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0", "eth1"]);
    fakes.netlink.set_root(&netns(), 3, tbf());
    let mut log = RecordingUndoLog::new();
    let undo = delay().apply(&fakes.kernel(), &netns(), &mut log).unwrap();
    assert_eq!(log.live(), vec![undo.recovery().unwrap()]);
    assert_eq!(undo.interfaces.len(), 2);
    assert_eq!(undo.interfaces[0].saved, None);
    let saved = undo.interfaces[1].saved.as_ref().unwrap();
    assert_eq!((saved.kind.as_str(), saved.handle), ("tbf", 0x1_0000));
    assert_eq!(fakes.netlink.changes(), vec![replace(2), replace(3)]);
    assert!(fakes.netlink.root(&netns(), 2).unwrap().is_ours());

    NetemFault::recover(&fakes.kernel(), undo.clone()).unwrap();
    assert_eq!(fakes.netlink.root(&netns(), 2), None);
    assert_eq!(fakes.netlink.root(&netns(), 3).unwrap().kind, "tbf");
    // Again (a retry, a journal replay): nothing is ours any more, nothing changes.
    let changes = fakes.netlink.changes().len();
    recover(&fakes.kernel(), &undo.recovery().unwrap()).unwrap();
    assert_eq!(fakes.netlink.changes().len(), changes);
}

#[test]
fn a_failed_install_halfway_puts_back_what_was_shaped_and_clears_the_journal() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0", "eth1"]);
    fakes.netlink.fail(&replace(3));
    let mut log = RecordingUndoLog::new();
    let err = delay()
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("replace root qdisc on interface 3"),
        "{err}"
    );
    assert_eq!(
        fakes.netlink.changes(),
        vec![replace(2), replace(3), NetlinkCall::Delete(2)]
    );
    assert_eq!(fakes.netlink.root(&netns(), 2), None);
    assert!(log.live().is_empty());
}

#[test]
fn a_failed_put_back_after_a_failed_install_is_returned_and_stays_journaled() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0", "eth1"]);
    fakes.netlink.fail(&replace(3));
    fakes.netlink.fail(&NetlinkCall::Delete(2));
    let mut log = RecordingUndoLog::new();
    let err = delay()
        .apply(&fakes.kernel(), &netns(), &mut log)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("kept in the journal"), "{text}");
    assert!(
        text.contains("interface eth0: netlink delete root qdisc"),
        "{text}"
    );
    // The entry covers every planned interface; its recovery finishes the job later.
    let live = log.live();
    assert_eq!(live.len(), 1);
    fakes.netlink.heal();
    recover(&fakes.kernel(), &live[0]).unwrap();
    assert_eq!(fakes.netlink.root(&netns(), 2), None);
}

#[test]
fn an_unjournaled_netem_is_not_installed() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    let log = RecordingUndoLog::new();
    log.fail_from(0);
    let err = delay()
        .apply(&fakes.kernel(), &netns(), &mut log.clone())
        .unwrap_err();
    assert!(
        err.to_string().starts_with("not applied: journal record"),
        "{err}"
    );
    assert!(fakes.netlink.changes().is_empty());
}

#[test]
fn recover_tries_every_interface_and_reports_every_failure() {
    let fakes = Fakes::new();
    fakes
        .netlink
        .add_namespace(&netns(), &["eth0", "eth1", "eth2"]);
    let mut log = RecordingUndoLog::new();
    let undo = delay().apply(&fakes.kernel(), &netns(), &mut log).unwrap();
    fakes.netlink.fail(&NetlinkCall::Delete(2));
    fakes.netlink.fail(&NetlinkCall::Delete(4));
    let err = NetemFault::recover(&fakes.kernel(), undo.clone()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("interface eth0: netlink delete root qdisc on interface 2")
            && text.contains("interface eth2: netlink delete root qdisc on interface 4"),
        "{text}"
    );
    // eth1 was still put back.
    assert_eq!(fakes.netlink.root(&netns(), 3), None);
    fakes.netlink.heal();
    NetemFault::recover(&fakes.kernel(), undo).unwrap();
    assert_eq!(fakes.netlink.root(&netns(), 2), None);
}

#[test]
fn hook_first_is_left_alone_and_still_removed_at_the_end() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    let ours = RootQdisc {
        kind: "netem".into(),
        handle: NRI_CHAOS_HANDLE,
        options: vec![],
    };
    fakes.netlink.set_root(&netns(), 2, ours);
    let undo = delay()
        .apply(&fakes.kernel(), &netns(), &mut RecordingUndoLog::new())
        .unwrap();
    assert!(fakes.netlink.changes().is_empty());
    NetemFault::recover(&fakes.kernel(), undo).unwrap();
    assert_eq!(fakes.netlink.changes(), vec![NetlinkCall::Delete(2)]);
}

#[test]
fn a_gone_namespace_and_an_old_empty_entry() {
    let fakes = Fakes::new();
    let gone = NetemUndo {
        netns: netns(),
        interfaces: Vec::new(),
    };
    NetemFault::recover(&fakes.kernel(), gone.clone()).unwrap();
    let err = delay()
        .apply(&fakes.kernel(), &netns(), &mut RecordingUndoLog::new())
        .unwrap_err();
    assert!(NetemFault::target_gone(&err), "{err}");
    // An entry journaled before its interfaces were known: every root that is ours goes.
    fakes.netlink.add_namespace(&netns(), &["eth0"]);
    delay()
        .apply(&fakes.kernel(), &netns(), &mut RecordingUndoLog::new())
        .unwrap();
    NetemFault::recover(&fakes.kernel(), gone).unwrap();
    assert_eq!(fakes.netlink.root(&netns(), 2), None);
}

#[test]
fn only_loopback_or_a_missing_interface_is_an_error() {
    let fakes = Fakes::new();
    fakes.netlink.add_namespace(&netns(), &[]);
    let err = delay()
        .apply(&fakes.kernel(), &netns(), &mut RecordingUndoLog::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the pod's network namespace has no interface but loopback"
    );
    let named = NetemFault {
        interface: Some("eth9".into()),
        ..delay()
    };
    let err = named
        .apply(&fakes.kernel(), &netns(), &mut RecordingUndoLog::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no interface 'eth9' in the pod's network namespace (it has: lo)"
    );
}
