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

pub use records::{FaultRecord, FaultState, NewFault, RejectionClass, RejectionRecord};

mod records;

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
        // At most MAX_ENDED records in all cannot hold more ended ones: no scan then.
        if faults.len() <= MAX_ENDED {
            return;
        }
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
            let class = rejection.class;
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
mod tests;
