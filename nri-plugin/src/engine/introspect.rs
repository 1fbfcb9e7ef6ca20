//! What the engine did and is doing, for the operator: a small registry of faults (armed,
//! applied, recovered, stopped, failed) and of rejected annotations, read by the control API
//! (`nri-chaos ctl list`) and updated by the engine and the runner at each decision point. It
//! also carries the Prometheus figures ([`Metrics`]) so one call updates both.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use injector::{FaultKind, Rejection};

use super::events::{EventKind, EventLog, Subject};
use crate::metrics::Metrics;

/// Ended fault records kept for `ctl list` (the oldest ended ones go first).
const MAX_ENDED: usize = 512;
/// Rejections kept for `ctl list`.
const MAX_REJECTIONS: usize = 256;

/// Where a fault is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultState {
    /// Waiting for its first planned firing.
    Armed,
    /// Applied at least once (and holding, for faults with a duration, or done for kill).
    Applied,
    /// Held, then recovered.
    Recovered,
    /// Stopped before it fired (container gone, `ctl recover`, shutdown).
    Stopped,
    /// Could not be applied.
    Failed,
}

impl FaultState {
    /// Lower-case name, as shown by `ctl list`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultState::Armed => "armed",
            FaultState::Applied => "applied",
            FaultState::Recovered => "recovered",
            FaultState::Stopped => "stopped",
            FaultState::Failed => "failed",
        }
    }

    /// The fault still has a task (it can be recovered).
    pub fn is_active(self) -> bool {
        matches!(self, FaultState::Armed | FaultState::Applied)
    }
}

/// One fault the engine armed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRecord {
    /// The engine's fault id (what `ctl recover ID` takes).
    pub id: u64,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Container id.
    pub container_id: String,
    /// Fault kind.
    pub kind: FaultKind,
    /// The annotation value (parameters), as written.
    pub value: String,
    /// The annotation key it came from, or `ctl` for an injected fault.
    pub source: String,
    /// Next (or last) planned firing.
    pub planned_unix_ms: Option<u64>,
    /// Last firing actually applied.
    pub applied_unix_ms: Option<u64>,
    /// Where it is.
    pub state: FaultState,
    /// Why it failed.
    pub error: String,
    /// Firings applied so far.
    pub firings: u32,
    /// Whether the fault holds (has a recovery) or is instantaneous (kill).
    holds: bool,
}

impl FaultRecord {
    fn new(fault: &NewFault<'_>) -> FaultRecord {
        FaultRecord {
            id: fault.id,
            pod: fault.pod.to_string(),
            container: fault.container.to_string(),
            container_id: fault.container_id.to_string(),
            kind: fault.kind,
            value: fault.value.to_string(),
            source: fault.source.to_string(),
            planned_unix_ms: None,
            applied_unix_ms: None,
            state: FaultState::Armed,
            error: String::new(),
            firings: 0,
            holds: fault.holds,
        }
    }
}

/// Why an annotation was rejected, in three classes (metrics label `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RejectionClass {
    /// The key or value does not parse.
    Parse,
    /// The admin policy refused it.
    Policy,
    /// Valid, but this build does not execute that fault kind.
    Unsupported,
}

impl RejectionClass {
    /// Every class, for metrics families that list zeroes.
    pub const ALL: [RejectionClass; 3] = [
        RejectionClass::Parse,
        RejectionClass::Policy,
        RejectionClass::Unsupported,
    ];

    /// Classifies a rejection reason by the wording the injector and engine use.
    pub fn of(reason: &str) -> RejectionClass {
        if reason.contains("not supported by this build") || reason.contains("runtime handler") {
            RejectionClass::Unsupported
        } else if reason.contains("policy") {
            RejectionClass::Policy
        } else {
            RejectionClass::Parse
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionClass::Parse => "parse",
            RejectionClass::Policy => "policy",
            RejectionClass::Unsupported => "unsupported",
        }
    }
}

/// One rejected annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionRecord {
    /// `namespace/name` of the pod.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Annotation key.
    pub key: String,
    /// Annotation value.
    pub value: String,
    /// Why.
    pub reason: String,
    /// Class of the reason.
    pub class: RejectionClass,
    /// When.
    pub at_unix_ms: u64,
    /// The container instance (dedupes repeated reports).
    pub container_id: String,
}

/// The registry (one per engine).
#[derive(Debug, Default)]
pub struct Registry {
    faults: Mutex<BTreeMap<u64, FaultRecord>>,
    rejections: Mutex<VecDeque<RejectionRecord>>,
    metrics: Metrics,
    events: EventLog,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wall-clock milliseconds of a monotonic instant (past or future).
pub fn unix_ms(at: Instant) -> u64 {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let now = Instant::now();
    let wall = if at >= now {
        now_wall.saturating_add(at - now)
    } else {
        now_wall.saturating_sub(now - at)
    };
    u64::try_from(wall.as_millis()).unwrap_or(u64::MAX)
}

/// The identity of a fault being armed.
#[derive(Debug, Clone)]
pub struct NewFault<'a> {
    /// Fault id.
    pub id: u64,
    /// `namespace/name`.
    pub pod: &'a str,
    /// Container name.
    pub container: &'a str,
    /// Container id.
    pub container_id: &'a str,
    /// Kind.
    pub kind: FaultKind,
    /// Annotation value.
    pub value: &'a str,
    /// Annotation key or `ctl`.
    pub source: &'a str,
    /// Whether it holds (has a `duration` or is recovered when stopped).
    pub holds: bool,
}

impl Registry {
    /// The Prometheus figures.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The live feed of `ctl events`.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    fn event(&self, kind: EventKind, record: FaultRecord) {
        self.events
            .push(kind, Subject::Fault(record), unix_ms(Instant::now()));
    }

    /// A fault was armed.
    pub fn armed(&self, fault: NewFault<'_>) {
        self.insert(FaultRecord::new(&fault));
    }

    /// A holding fault a previous run left in the journal, resumed at start: `applied` since
    /// `applied_unix_ms` (no event: nobody follows a daemon that is only starting).
    pub fn resumed(&self, fault: NewFault<'_>, applied_unix_ms: u64) {
        let mut record = FaultRecord::new(&fault);
        record.planned_unix_ms = Some(applied_unix_ms);
        record.applied_unix_ms = Some(applied_unix_ms);
        record.state = FaultState::Applied;
        record.firings = 1;
        self.insert(record);
    }

    fn insert(&self, record: FaultRecord) {
        let mut faults = lock(&self.faults);
        if record.state == FaultState::Armed {
            self.event(EventKind::Armed, record.clone());
        }
        faults.insert(record.id, record);
        let ended: Vec<u64> = faults
            .values()
            .filter(|record| !record.state.is_active())
            .map(|record| record.id)
            .collect();
        for id in ended.iter().take(ended.len().saturating_sub(MAX_ENDED)) {
            faults.remove(id);
        }
    }

    /// Changes record `id`; `change` returns the event the change is, if any.
    fn update(
        &self,
        id: u64,
        change: impl FnOnce(&mut FaultRecord) -> Option<EventKind>,
    ) -> Option<FaultKind> {
        let mut faults = lock(&self.faults);
        let record = faults.get_mut(&id)?;
        if let Some(event) = change(record) {
            self.event(event, record.clone());
        }
        Some(record.kind)
    }

    /// The next firing is planned at `at`.
    pub fn planned(&self, id: u64, at: Instant) {
        let ms = unix_ms(at);
        self.update(id, |record| {
            record.planned_unix_ms = Some(ms);
            None
        });
    }

    /// A firing was applied now, `lateness` after its plan.
    pub fn applied(&self, id: u64, lateness: Duration) {
        let now = unix_ms(Instant::now());
        if let Some(kind) = self.update(id, |record| {
            record.applied_unix_ms = Some(now);
            record.state = FaultState::Applied;
            record.firings = record.firings.saturating_add(1);
            Some(EventKind::Applied)
        }) {
            self.metrics.fault_applied(kind, lateness);
        }
    }

    /// A holding firing was recovered.
    pub fn recovered(&self, id: u64) {
        if let Some(kind) = self.update(id, |record| {
            record.state = FaultState::Recovered;
            Some(EventKind::Recovered)
        }) {
            self.metrics.fault_recovered(kind);
        }
    }

    /// A firing could not be applied.
    pub fn failed(&self, id: u64, reason: &str) {
        if let Some(kind) = self.update(id, |record| {
            record.state = FaultState::Failed;
            record.error = reason.to_string();
            Some(EventKind::Failed)
        }) {
            self.metrics.fault_failed(kind);
        }
    }

    /// The fault's task ended: an armed fault that never fired is `stopped`; a holding
    /// fault's state was set by its recovery.
    pub fn ended(&self, id: u64) {
        self.update(id, |record| {
            if record.state == FaultState::Armed {
                record.state = FaultState::Stopped;
                Some(EventKind::Stopped)
            } else if record.state == FaultState::Applied && record.holds {
                // Stopped between firings of a repeating holding fault: nothing holds.
                record.state = FaultState::Recovered;
                Some(EventKind::Recovered)
            } else {
                None
            }
        });
    }

    /// Annotations rejected for container `container_id`. The same annotation reported again
    /// for the same container (at creation, then at start) is recorded and counted once.
    pub fn rejected(
        &self,
        pod: &str,
        container: &str,
        container_id: &str,
        rejections: &[Rejection],
    ) {
        if rejections.is_empty() {
            return;
        }
        let now = unix_ms(Instant::now());
        let mut kept = lock(&self.rejections);
        for rejection in rejections {
            if kept.iter().any(|seen| {
                seen.container_id == container_id
                    && seen.key == rejection.key
                    && seen.value == rejection.value
            }) {
                continue;
            }
            let class = RejectionClass::of(&rejection.reason);
            self.metrics.annotation_rejected(class);
            if kept.len() >= MAX_REJECTIONS {
                kept.pop_front();
            }
            let record = RejectionRecord {
                pod: pod.to_string(),
                container: container.to_string(),
                key: rejection.key.clone(),
                value: rejection.value.clone(),
                reason: rejection.reason.clone(),
                class,
                at_unix_ms: now,
                container_id: container_id.to_string(),
            };
            self.events
                .push(EventKind::Rejected, Subject::Rejection(record.clone()), now);
            kept.push_back(record);
        }
    }

    /// One fault.
    pub fn get(&self, id: u64) -> Option<FaultRecord> {
        lock(&self.faults).get(&id).cloned()
    }

    /// Every fault (by id) and every kept rejection (oldest first).
    pub fn snapshot(&self) -> (Vec<FaultRecord>, Vec<RejectionRecord>) {
        let faults = lock(&self.faults).values().cloned().collect();
        let rejections = lock(&self.rejections).iter().cloned().collect();
        (faults, rejections)
    }
}

#[cfg(test)]
mod tests {
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
    fn rejections_are_classified_and_counted() {
        assert_eq!(
            RejectionClass::of("after: \"2x\" is not a duration"),
            RejectionClass::Parse
        );
        assert_eq!(
            RejectionClass::of("namespace \"kube-system\" is denied by policy (deny = [..])"),
            RejectionClass::Policy
        );
        assert_eq!(
            RejectionClass::of(
                "fault 'netem' is valid but not supported by this build of nri-chaos"
            ),
            RejectionClass::Unsupported
        );
        let registry = Registry::default();
        let bad = [Rejection::new(
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
}
