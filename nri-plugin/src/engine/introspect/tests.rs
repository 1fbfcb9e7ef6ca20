//! The registry: fault states, metrics, rejection records, bounds.

use super::*;

fn new_fault(id: u64, kind: FaultKind, holds: bool) -> NewFault<'static> {
    NewFault {
        id,
        pod: "default/web",
        container: "app",
        container_id: "c1",
        kind,
        value: "{after: 1s}",
        source: "ctl",
        holds,
    }
}

#[test]
fn a_fault_goes_from_armed_to_applied_to_recovered() {
    let registry = Registry::default();
    registry.armed(new_fault(1, FaultKind::Freeze, true));
    let planned = Instant::now() + Duration::from_secs(1);
    registry.planned(1, planned);
    let record = registry.get(1).expect("record");
    assert_eq!(record.state, FaultState::Armed);
    let planned_ms = record.planned_unix_ms.expect("planned");
    let wall = unix_ms(Instant::now());
    assert!(
        (wall + 900..=wall + 1100).contains(&planned_ms),
        "{planned_ms} vs {wall}"
    );
    registry.applied(1, Duration::from_millis(3));
    let record = registry.get(1).expect("record");
    assert_eq!(record.state, FaultState::Applied);
    assert_eq!(record.firings, 1);
    assert!(record.applied_unix_ms.is_some());
    registry.recovered(1);
    registry.ended(1);
    assert_eq!(
        registry.get(1).map(|r| r.state),
        Some(FaultState::Recovered)
    );
    let text = registry
        .metrics()
        .render(&crate::metrics::Observed::default());
    assert!(
        text.contains("nri_chaos_faults_applied_total{kind=\"freeze\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("nri_chaos_faults_recovered_total{kind=\"freeze\"} 1"),
        "{text}"
    );
}

#[test]
fn an_armed_fault_that_ends_unfired_is_stopped_and_a_kill_stays_applied() {
    let registry = Registry::default();
    registry.armed(new_fault(1, FaultKind::Kill, false));
    registry.ended(1);
    assert_eq!(registry.get(1).map(|r| r.state), Some(FaultState::Stopped));
    registry.armed(new_fault(2, FaultKind::Kill, false));
    registry.applied(2, Duration::ZERO);
    registry.ended(2);
    assert_eq!(registry.get(2).map(|r| r.state), Some(FaultState::Applied));
}

#[test]
fn rejections_are_counted_by_the_class_they_carry() {
    let registry = Registry::default();
    let bad = [Rejection::new(
        RejectionClass::Parse,
        "kill.nri-chaos.io",
        "{after: 2x}",
        "after: \"2x\" is not a duration",
    )];
    registry.rejected("default/web", "app", "c1", &bad);
    registry.rejected("default/web", "app", "c1", &bad);
    let (_, rejections) = registry.snapshot();
    assert_eq!(rejections.len(), 1);
    assert_eq!(rejections[0].class, RejectionClass::Parse);
    let text = registry
        .metrics()
        .render(&crate::metrics::Observed::default());
    assert!(
        text.contains("nri_chaos_annotation_rejections_total{reason=\"parse\"} 1"),
        "{text}"
    );
}

#[test]
fn ended_records_are_bounded() {
    let registry = Registry::default();
    for id in 0..(MAX_ENDED as u64 + 10) {
        registry.armed(new_fault(id, FaultKind::Kill, false));
        registry.ended(id);
    }
    registry.armed(new_fault(10_000, FaultKind::Kill, false));
    let (faults, _) = registry.snapshot();
    assert!(faults.len() <= MAX_ENDED + 1, "{}", faults.len());
    assert!(faults.iter().any(|f| f.id == 10_000));
}

/// Arming many faults stays linear: 20,000 records armed (none ended) take well under the
/// time a scan of every record per insert needs (200 million record visits).
#[test]
fn arming_many_faults_is_not_quadratic() {
    let registry = Registry::default();
    let started = std::time::Instant::now();
    for id in 0..20_000 {
        registry.armed(new_fault(id, FaultKind::Kill, false));
    }
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_millis(500), "{took:?}");
    assert_eq!(registry.snapshot().0.len(), 20_000);
}

/// The ended records that go first are the first that ended, whatever their ids.
#[test]
fn the_first_ended_records_go_first() {
    let registry = Registry::default();
    registry.armed(new_fault(0, FaultKind::Kill, false));
    for id in 1..=(MAX_ENDED as u64 + 1) {
        registry.armed(new_fault(id, FaultKind::Kill, false));
        registry.ended(id);
    }
    // 0 is still active; 1 ended first, so it went.
    assert!(registry.get(0).is_some());
    assert!(registry.get(1).is_none());
    assert!(registry.get(2).is_some());
    registry.ended(0);
    assert!(registry.get(0).is_some(), "the newest ended record stays");
    assert!(registry.get(2).is_none());
}
