//! The engine's view under one lock: pods, plans, started containers, and the armed faults
//! keyed by [`FaultKey`] (a pod-scoped and a container-scoped fault never share a key).

use std::collections::HashMap;
use std::sync::Arc;

use injector::{FaultKey, FaultKind, FaultRequest, Scope};
use tokio::sync::watch;

use super::model::{ContainerInfo, PodInfo};

/// Where an armed fault came from; it decides how its firings are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// A pod annotation: counted in the durable ledger, across restarts.
    Annotation,
    /// `ctl inject`: counted by its own task (its `count` is its own).
    Ctl,
    /// Resumed from the journal of a previous run (stands for its annotation's fault).
    Journal,
}

/// A container's validated faults, kept from CreateContainer to its start.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub pod: PodInfo,
    pub container_name: String,
    pub faults: Vec<FaultRequest>,
}

/// A fault task's stop signal. The task holds the signal's only receiver until it ends, so
/// the signal's closing is the task's end, whether the task runs already or is still queued
/// for after an NRI handler's reply ([`super::after_reply`]).
#[derive(Debug)]
pub(super) struct ArmedFault {
    pub id: u64,
    pub origin: Origin,
    /// The runtime instance it acts on: the container id (container scope) or the pod's
    /// sandbox id (pod scope).
    pub instance: String,
    /// The pod sandbox of that instance ("" when a journal entry did not say).
    pub sandbox: String,
    pub stop: watch::Sender<bool>,
}

impl ArmedFault {
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Whether the fault's task has ended.
    pub fn ended(&self) -> bool {
        self.stop.is_closed()
    }

    /// Resolves when the fault's task has ended.
    pub async fn wait_ended(&self) {
        self.stop.closed().await;
    }
}

/// Entries each map of [`State`] holds before it grows. Growing a map moves every entry in the
/// one NRI handler that crosses the size (a step in the handler time tail); reserved at start,
/// it is address space until used (the bench's 110 pods and 200 containers fit).
const RESERVED: usize = 256;

#[derive(Debug, Default)]
pub(super) struct State {
    /// Pod sandboxes by sandbox id.
    pub pods: HashMap<String, PodInfo>,
    /// Plans by container id.
    /// Shared with PostStart, which reads it without copying it.
    pub plans: HashMap<String, Arc<Planned>>,
    /// Armed faults by what they are.
    pub armed: HashMap<FaultKey, Vec<ArmedFault>>,
    /// Started containers with a PID, by id (targets of `ctl inject`).
    pub containers: HashMap<String, ContainerInfo>,
}

impl State {
    /// An empty state with room for [`RESERVED`] entries per map.
    pub fn reserved() -> State {
        State {
            pods: HashMap::with_capacity(RESERVED),
            plans: HashMap::with_capacity(RESERVED),
            armed: HashMap::with_capacity(RESERVED),
            containers: HashMap::with_capacity(RESERVED),
        }
    }

    /// Records `fault` under `key`, next to what is armed there already.
    pub fn insert(&mut self, key: FaultKey, fault: ArmedFault) {
        self.armed.entry(key).or_default().push(fault);
    }

    /// Whether `key` already has a fault standing for its annotation on `instance` (any
    /// instance when `None`): armed from an annotation, or resumed from the journal.
    pub fn holds_annotation(&self, key: &FaultKey, instance: Option<&str>) -> bool {
        self.armed.get(key).is_some_and(|faults| {
            faults.iter().any(|fault| {
                fault.origin != Origin::Ctl && instance.is_none_or(|i| fault.instance == i)
            })
        })
    }

    /// Removes and returns every armed fault `select` picks. Only the lists that hold one
    /// are changed (a StopContainer among many armed faults moves or allocates nothing else).
    pub fn take(&mut self, select: impl Fn(&FaultKey, &ArmedFault) -> bool) -> Vec<ArmedFault> {
        let mut taken = Vec::new();
        let mut emptied = false;
        for (key, faults) in self.armed.iter_mut() {
            let mut i = 0;
            while i < faults.len() {
                if select(key, &faults[i]) {
                    taken.push(faults.remove(i));
                } else {
                    i += 1;
                }
            }
            emptied |= faults.is_empty();
        }
        if emptied {
            self.armed.retain(|_, faults| !faults.is_empty());
        }
        taken
    }

    /// Forgets fault `id` of `key` (its task ended by itself).
    pub fn forget(&mut self, key: &FaultKey, id: u64) {
        if let Some(faults) = self.armed.get_mut(key) {
            faults.retain(|fault| fault.id != id);
            if faults.is_empty() {
                self.armed.remove(key);
            }
        }
    }

    /// Faults with a live task, per kind.
    pub fn active_by_kind(&self) -> Vec<(FaultKind, i64)> {
        let mut active: Vec<(FaultKind, i64)> = Vec::new();
        for (key, faults) in &self.armed {
            let live = faults.iter().filter(|f| !f.ended()).count();
            if live == 0 {
                continue;
            }
            let live = i64::try_from(live).unwrap_or(i64::MAX);
            match active.iter_mut().find(|(kind, _)| *kind == key.kind) {
                Some((_, count)) => *count += live,
                None => active.push((key.kind, live)),
            }
        }
        active
    }
}

/// Whether `fault` (of `key`) still has its target among the runtime's live pods and running
/// containers: a pod-scoped fault while its pod sandbox lives, a container fault while its
/// container instance runs.
pub(super) fn target_alive(
    key: &FaultKey,
    fault: &ArmedFault,
    pods: &HashMap<String, PodInfo>,
    running: &HashMap<&str, &ContainerInfo>,
) -> bool {
    match &key.scope {
        Scope::Pod { pod_uid } => pods
            .get(&fault.instance)
            .is_some_and(|pod| &pod.uid == pod_uid),
        Scope::Container { .. } => running.contains_key(fault.instance.as_str()),
    }
}

/// Whether `fault` (of `key`) belongs to pod sandbox `sandbox` (of pod `pod_uid`, when known).
pub(super) fn of_pod(
    key: &FaultKey,
    fault: &ArmedFault,
    sandbox: &str,
    pod_uid: Option<&str>,
) -> bool {
    if fault.sandbox.is_empty() {
        pod_uid == Some(key.scope.pod_uid())
    } else {
        fault.sandbox == sandbox
    }
}
