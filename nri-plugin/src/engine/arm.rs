//! Arming one fault: the task that runs its effect on the scheduler, recorded in the registry.
//! Called by the verbs with the state lock held, so what they check and what they arm is one
//! step (a `ctl inject` and a PostStart of the same container never overwrite each other).
//! In an NRI handler the task is started after the reply (`after_reply`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_core::future::BoxFuture;
use injector::faults::netem::TargetedNetem;
use injector::{FaultKey, FaultRequest, FaultSpec};
use tokio::sync::watch;

use super::kinds::{self, executor, Executor};
use super::runner::{self, Target};
use super::state::{ArmedFault, Origin, State};
use super::{effects, introspect, Inner, PodInfo};

/// A stressor without `duration` stops after this long.
const DEFAULT_STRESS_HOLD: Duration = Duration::from_secs(60);

impl Inner {
    /// Starts the task of `fault` on `target` (its schedule measured from `target.started`),
    /// records it in the registry and returns it. A fault the shim wrapper executes (`exec`)
    /// gets a record and a task that only waits for its end. `None` when nothing runs in the
    /// plugin: the kind is executed by the OCI hook (`start`), or the pod has no network
    /// namespace to shape (recorded as failed).
    pub(super) fn arm(
        self: &Arc<Self>,
        fault: &FaultRequest,
        mut target: Target,
        memory_limit: Option<u64>,
    ) -> Option<ArmedFault> {
        let id = self.next_fault_id.fetch_add(1, Ordering::Relaxed);
        target.fault_id = id;
        let (stop, stop_rx) = watch::channel(false);
        let engine = self.clone();
        match executor(fault.kind) {
            // Executed by the OCI hook in the start path: no task, no record.
            Executor::Hook => return None,
            // Executed by the shim wrapper, per exec, from the plan written at creation: the
            // plugin only records it, in force while the container lives.
            Executor::Shim => {
                return Some(self.handed_to_shim(new_fault(&target, fault), &target, None))
            }
            Executor::Engine => {}
        }
        let timing = fault.timing;
        let task_target = target.clone();
        let run: BoxFuture<'static, ()> = match &fault.spec {
            FaultSpec::Kill(kill) => {
                let kill = *kill;
                let target = task_target;
                Box::pin(async move {
                    match effects::kill(&engine, kill, target.pid) {
                        Ok(effect) => runner::run(engine, target, timing, effect, stop_rx).await,
                        // Stopped before it started (see `after_reply`), its container gone.
                        Err(_) if *stop_rx.borrow() => {
                            engine.registry.ended(target.fault_id);
                            engine.disarm(&target.key, target.fault_id);
                        }
                        Err(err) => {
                            engine.registry.failed(target.fault_id, &err.to_string());
                            tracing::warn!(pod = %target.pod, container = %target.container, pid = target.pid, error = %err, "kill: cannot take a handle on the container's init process; fault dropped");
                            engine.disarm(&target.key, target.fault_id);
                        }
                    }
                })
            }
            FaultSpec::Freeze(_) => {
                let effect = effects::freeze(timing.duration);
                Box::pin(runner::run(engine, task_target, timing, effect, stop_rx))
            }
            FaultSpec::Stress(stress) => {
                let hold = timing.duration.unwrap_or(DEFAULT_STRESS_HOLD);
                let effect = effects::stress(*stress, hold, memory_limit);
                Box::pin(runner::run(engine, task_target, timing, effect, stop_rx))
            }
            FaultSpec::Oom(oom) => {
                let effect = effects::oom(*oom, timing.duration, memory_limit);
                Box::pin(runner::run(engine, task_target, timing, effect, stop_rx))
            }
            FaultSpec::Netem(_) | FaultSpec::Partition(_) | FaultSpec::Bandwidth(_) => {
                let Some(netns) = target.netns.clone() else {
                    self.registry.armed(new_fault(&target, fault));
                    self.registry
                        .failed(id, "the pod has no network namespace to shape");
                    tracing::warn!(pod = %target.pod, fault = fault.kind.as_str(), "the pod has no network namespace path; not applied");
                    return None;
                };
                let hold = timing.duration;
                match &fault.spec {
                    FaultSpec::Netem(n) if n.to.is_some() => {
                        let effect = effects::in_netns(TargetedNetem(n.clone()), netns, hold);
                        Box::pin(runner::run(engine, task_target, timing, effect, stop_rx))
                    }
                    FaultSpec::Netem(n) => {
                        let effect = effects::in_netns(n.clone(), netns, hold);
                        Box::pin(runner::run(engine, task_target, timing, effect, stop_rx))
                    }
                    FaultSpec::Partition(p) => {
                        let effect = effects::in_netns(p.clone(), netns, hold);
                        Box::pin(runner::run(engine, task_target, timing, effect, stop_rx))
                    }
                    FaultSpec::Bandwidth(b) => {
                        let effect = effects::in_netns(b.clone(), netns, hold);
                        Box::pin(runner::run(engine, task_target, timing, effect, stop_rx))
                    }
                    _ => return None,
                }
            }
            // Not `Executor::Engine` (returned above).
            FaultSpec::Start(_) | FaultSpec::Exec(_) => return None,
        };
        self.registry.armed(new_fault(&target, fault));
        self.after_reply.start(run);
        Some(ArmedFault {
            id,
            origin: target.origin,
            instance: target.container_id,
            sandbox: target.sandbox,
            stop,
        })
    }

    /// Records a fault the shim wrapper executes (`exec`) as in force (`applied`) and returns
    /// its handle: when it is stopped (`ctl recover`, the container's end, shutdown) the
    /// task removes `inject_file` (the wrapper then stops faulting) and records it recovered.
    pub(super) fn handed_to_shim(
        self: &Arc<Self>,
        record: introspect::NewFault<'_>,
        target: &Target,
        inject_file: Option<std::path::PathBuf>,
    ) -> ArmedFault {
        let id = record.id;
        self.registry.armed(record);
        self.registry.applied(id, Duration::ZERO);
        let (stop, mut stop_rx) = watch::channel(false);
        let engine = self.clone();
        self.after_reply.start(Box::pin(async move {
            // Stopped, or the engine dropped the fault.
            let _ = stop_rx.changed().await;
            if let Some(path) = inject_file {
                let _ = std::fs::remove_file(&path);
            }
            engine.registry.recovered(id);
        }));
        ArmedFault {
            id,
            origin: target.origin,
            instance: target.container_id.clone(),
            sandbox: target.sandbox.clone(),
            stop,
        }
    }

    /// Whether the ledger says `fault` of `key` has fired `count` times already.
    pub(super) fn spent(&self, key: &FaultKey, fault: &FaultRequest) -> bool {
        fault
            .timing
            .count
            .is_some_and(|limit| self.store.ledger().count(key) >= limit)
    }

    /// Arms the pod-scoped faults among `faults` (netem: the network namespace is the pod's)
    /// once per pod sandbox, measured from now. At CreateContainer of the pod's first
    /// container that is the earliest moment the plugin sees the pod's network namespace
    /// before any app runs. They end when the pod sandbox is removed.
    pub(super) fn arm_pod_faults(
        self: &Arc<Self>,
        state: &mut State,
        pod: &PodInfo,
        faults: &[FaultRequest],
    ) {
        for fault in faults.iter().filter(|fault| fault.kind.is_pod_scoped()) {
            let key = FaultKey::of(fault.kind, &pod.uid, "");
            if state.holds_annotation(&key, Some(&pod.id)) {
                continue;
            }
            if self.spent(&key, fault) {
                tracing::info!(pod = %pod.display_name(), fault = fault.kind.as_str(), "count spent; not armed");
                continue;
            }
            tracing::info!(pod = %pod.display_name(), fault = fault.kind.as_str(), key = %fault.key, "pod fault planned");
            let target = Target {
                container: String::new(),
                container_id: pod.id.clone(),
                ..target(pod, &key, fault, Origin::Annotation)
            };
            if let Some(armed) = self.arm(fault, target, None) {
                state.insert(key, armed);
            }
        }
    }
}

/// A target on `pod` for `fault` (the container fields are the caller's to fill in).
pub(super) fn target(
    pod: &PodInfo,
    key: &FaultKey,
    fault: &FaultRequest,
    origin: Origin,
) -> Target {
    let value = pod.annotations.get(&fault.key).cloned().unwrap_or_default();
    Target {
        fault_id: 0,
        source: fault.key.clone(),
        value,
        pod: pod.display_name(),
        pod_uid: pod.uid.clone(),
        container: String::new(),
        container_id: String::new(),
        sandbox: pod.id.clone(),
        key: key.clone(),
        origin,
        pid: pod.pid,
        netns: pod.netns_path(),
        started: std::time::Instant::now(),
    }
}

fn new_fault<'a>(target: &'a Target, fault: &FaultRequest) -> introspect::NewFault<'a> {
    introspect::NewFault {
        id: target.fault_id,
        pod: &target.pod,
        container: &target.container,
        container_id: &target.container_id,
        kind: fault.kind,
        value: &target.value,
        source: &target.source,
        holds: kinds::holds(fault.kind),
    }
}
