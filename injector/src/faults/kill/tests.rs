//! Unit tests.

use super::*;
use crate::seams::signal::RecordingSignaller;

#[test]
fn signal_names_and_numbers() {
    for (text, n) in [
        ("SIGKILL", 9),
        ("KILL", 9),
        ("sigterm", 15),
        ("term", 15),
        ("9", 9),
        ("15", 15),
        ("1", 1),
        ("31", 31),
        ("34", 34),
        ("64", 64),
        ("SIGHUP", 1),
        ("SIGIOT", 6),
        ("SIGRTMIN", 34),
        ("SIGRTMIN+1", 35),
        ("rtmin+30", 64),
        ("SIGRTMAX", 64),
        ("SIGRTMAX-2", 62),
        ("SIGSYS", 31),
    ] {
        assert_eq!(
            Signal::parse(text).map(Signal::number).ok(),
            Some(n),
            "{text}"
        );
    }
    for bad in [
        "",
        "0",
        "32",
        "33",
        "65",
        "-9",
        "+9",
        "SIG",
        "SIGFOO",
        "KIL",
        "SIGRTMIN+31",
        "SIGRTMAX+1",
        "SIGRTMIN-1",
        "SIGRTMIN+",
        "RTMIN+x",
        "99999999999999999999",
        "９",
        "SIG KILL",
        " KILL",
    ] {
        assert!(Signal::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn signal_display_and_exit_code() {
    assert_eq!(Signal::KILL.name(), "SIGKILL");
    assert_eq!(Signal::KILL.exit_code(), 137);
    assert_eq!(Signal::TERM.exit_code(), 143);
    assert_eq!(
        Signal::from_number(34).map(Signal::name).as_deref(),
        Some("SIGRTMIN")
    );
    assert_eq!(
        Signal::from_number(36).map(Signal::name).as_deref(),
        Some("SIGRTMIN+2")
    );
    assert_eq!(
        Signal::from_number(64).map(Signal::name).as_deref(),
        Some("SIGRTMAX")
    );
    assert_eq!(Signal::from_number(0), None);
    assert_eq!(Signal::from_number(32), None);
    for n in (1..=31).chain(34..=64) {
        let s = Signal::from_number(n).unwrap();
        assert_eq!(Signal::parse(&s.name()).unwrap(), s);
    }
}

#[test]
fn execute_through_the_fake() {
    let fake = RecordingSignaller::default();
    let handle = fake.open(42).unwrap();
    KillFault {
        signal: Signal::TERM,
    }
    .execute(&fake, &handle)
    .unwrap();
    KillFault::default().execute(&fake, &handle).unwrap();
    assert_eq!(fake.sent(), vec![(42, Signal::TERM), (42, Signal::KILL)]);
    fake.mark_exited(42);
    let err = KillFault::default().execute(&fake, &handle).unwrap_err();
    assert!(matches!(
        err,
        KillError::Signal(SignalError::Exited { pid: 42 })
    ));
}
