//! The engine: turns NRI lifecycle events into planned faults and runs them.
//!
//! Handlers call in with plain data ([`PodInfo`], [`ContainerInfo`]); every method here only
//! plans, updates maps under a short lock, and spawns tasks — nothing waits on the kernel.
//! Faults run on tokio tasks owned by the engine ([`runner`]); when their container stops, or
//! the plugin shuts down, a stop signal makes each task recover what it holds and end.

mod effects;
pub mod events;
pub mod hooks;
pub mod introspect;
mod journal_ops;
pub mod ledger_store;
pub mod model;
mod runner;
mod screen;
pub mod seams;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use injector::seams::signal::Signaller;
use injector::{
    plan_container, FaultKind, FaultRequest, FaultSpec, FiringLedger, Journal, PodRef, Policy,
    Rejection,
};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use model::{ContainerInfo, PodInfo};
pub use screen::screen;
pub use seams::Seams;

/// Errors the engine hands back to the runtime.
#[derive(Debug, Error)]
pub enum EngineError {
    /// `strict = true` and the container's annotations were rejected.
    #[error("nri-chaos refused container {container} of pod {pod}: {reasons}")]
    Refused {
        /// `namespace/name` of the pod.
        pod: String,
        /// Container name.
        container: String,
        /// Every rejection, `; `-separated.
        reasons: String,
    },
    /// The journal of active faults cannot be opened: no recovery could be guaranteed.
    #[error("fault journal {path}: {reason}")]
    Journal {
        /// The journal directory.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// Why `ctl inject` armed nothing.
#[derive(Debug, Error)]
pub enum InjectError {
    /// The target is not `namespace/pod[/container]`.
    #[error("target '{0}' is not namespace/pod or namespace/pod/container")]
    Target(String),
    /// No running container matches.
    #[error("no running container matches '{0}' (nri-chaos knows the pods containerd reported over NRI; check namespace, pod and container names)")]
    NotFound(String),
    /// The fault value does not parse or the policy refuses it.
    #[error("{0}")]
    Rejected(String),
}

/// A container's validated faults, kept from CreateContainer to its start.
#[derive(Debug, Clone)]
struct Planned {
    pod: PodInfo,
    container_name: String,
    faults: Vec<FaultRequest>,
}

#[derive(Debug, Default)]
struct State {
    pods: HashMap<String, PodInfo>,
    plans: HashMap<String, Planned>,
    armed: HashMap<String, Vec<ArmedFault>>,
    /// Started containers with a PID, by id (targets of `ctl inject`).
    containers: HashMap<String, ContainerInfo>,
}

/// A fault task and its stop signal.
#[derive(Debug)]
struct ArmedFault {
    id: u64,
    kind: FaultKind,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ArmedFault {
    fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Shared engine internals (the kill tasks hold a reference).
pub(crate) struct Inner {
    policy: Policy,
    seams: Seams,
    journal: Journal,
    ledger: FiringLedger,
    ledger_path: PathBuf,
    state: Mutex<State>,
    next_fault_id: AtomicU64,
    /// What the operator sees (`ctl list`, metrics).
    registry: introspect::Registry,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("policy", &self.policy)
            .field("ledger_path", &self.ledger_path)
            .finish_non_exhaustive()
    }
}

/// The fault engine of one plugin process (survives NRI reconnects).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps inconsistent in a way
    // that matters more than stopping fault injection would; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    /// Creates the engine; the firing ledger and the journal live in `state_dir`.
    pub fn new(
        policy: Policy,
        seams: Seams,
        state_dir: &std::path::Path,
    ) -> Result<Engine, EngineError> {
        let ledger_path = ledger_store::ledger_path(state_dir);
        let ledger = ledger_store::load(&ledger_path);
        hooks::clear_exec_injections(state_dir);
        let journal_dir = state_dir.join("journal");
        let journal = Journal::open(&journal_dir).map_err(|err| EngineError::Journal {
            path: journal_dir.display().to_string(),
            reason: err.to_string(),
        })?;
        Ok(Engine {
            inner: Arc::new(Inner {
                policy,
                seams,
                journal,
                ledger,
                ledger_path,
                state: Mutex::new(State::default()),
                next_fault_id: AtomicU64::new(1),
                registry: introspect::Registry::default(),
            }),
        })
    }

    /// Start-up: every fault a previous run left in the journal is recovered at once if its
    /// deadline passed, or resumed to be recovered at its deadline (or when Synchronize
    /// reports its container gone). Call before connecting to the runtime.
    pub fn replay_journal(&self) {
        let (entries, errors) = self.inner.journal.load();
        for err in errors {
            tracing::error!(error = %err, "unreadable journal entry set aside");
        }
        if !entries.is_empty() {
            tracing::info!(
                faults = entries.len(),
                "journal of a previous run found; recovering"
            );
        }
        let mut state = lock(&self.inner.state);
        for entry in entries {
            let (stop, stop_rx) = watch::channel(false);
            let id = self.inner.next_fault_id.fetch_add(1, Ordering::Relaxed);
            let container_id = entry.container_id.clone();
            let kind = entry.kind;
            // Visible to `ctl list` and recoverable with `ctl recover ID`.
            let source = match entry.source.as_str() {
                "" => journal_ops::JOURNAL_SOURCE.to_string(),
                key => format!("{key} ({})", journal_ops::JOURNAL_SOURCE),
            };
            self.inner.registry.resumed(
                introspect::NewFault {
                    id,
                    pod: &entry.pod,
                    container: &entry.container_name,
                    container_id: &entry.container_id,
                    kind: entry.kind,
                    value: &entry.value,
                    source: &source,
                    holds: true,
                },
                entry.applied_at_unix_ms,
            );
            let task = tokio::spawn(journal_ops::resume(self.inner.clone(), entry, id, stop_rx));
            state
                .armed
                .entry(container_id)
                .or_default()
                .push(ArmedFault {
                    id,
                    kind,
                    stop,
                    task,
                });
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// What the operator sees: faults, rejections, metrics.
    pub fn registry(&self) -> &introspect::Registry {
        &self.inner.registry
    }

    /// The Prometheus figures.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.inner.registry.metrics()
    }

    /// The /metrics text, with what is read at scrape time: the faults whose task still
    /// runs (armed, holding, or resumed from the journal) and the journal's entries.
    pub fn metrics_text(&self) -> String {
        let mut active: Vec<(FaultKind, i64)> = Vec::new();
        for fault in lock(&self.inner.state).armed.values().flatten() {
            if fault.task.is_finished() {
                continue;
            }
            match active.iter_mut().find(|(kind, _)| *kind == fault.kind) {
                Some((_, count)) => *count += 1,
                None => active.push((fault.kind, 1)),
            }
        }
        let observed = crate::metrics::Observed {
            active,
            journal_entries: i64::try_from(self.inner.journal.count()).unwrap_or(i64::MAX),
        };
        self.metrics().render(&observed)
    }

    /// `ctl recover`: stops fault `id` (or every fault) now and waits (bounded by `grace`)
    /// for each to run its recovery. Returns the faults' records after recovery; an unknown
    /// or already ended id gives an empty list.
    pub async fn recover(
        &self,
        id: Option<u64>,
        grace: std::time::Duration,
    ) -> Vec<introspect::FaultRecord> {
        let faults: Vec<ArmedFault> = {
            let mut state = lock(&self.inner.state);
            let mut taken = Vec::new();
            for faults in state.armed.values_mut() {
                let (stop, keep): (Vec<ArmedFault>, Vec<ArmedFault>) = std::mem::take(faults)
                    .into_iter()
                    .partition(|fault| id.is_none_or(|id| fault.id == id));
                *faults = keep;
                taken.extend(stop);
            }
            state.armed.retain(|_, faults| !faults.is_empty());
            taken
        };
        faults.iter().for_each(ArmedFault::stop);
        let ids: Vec<u64> = faults.iter().map(|fault| fault.id).collect();
        let all = async {
            for fault in faults {
                let _ = fault.task.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::error!(
                grace_ms = grace.as_millis() as u64,
                "ctl recover: some faults did not finish recovering in time"
            );
        }
        for id in &ids {
            tracing::info!(fault_id = id, "recovered on operator request");
        }
        ids.into_iter()
            .filter_map(|id| self.inner.registry.get(id))
            .collect()
    }

    /// `ctl inject`: arms fault `kind` with annotation `value` on the running containers of
    /// `target` (`namespace/pod` for every container, `namespace/pod/container` for one),
    /// through the same grammar and policy as an annotation; `after` counts from now. Its
    /// `count` is its own (not shared with the pod's annotations).
    pub fn inject(
        &self,
        target: &str,
        kind: FaultKind,
        value: &str,
    ) -> Result<Vec<introspect::FaultRecord>, InjectError> {
        let mut parts = target.splitn(3, '/');
        let (Some(namespace), Some(pod_name)) = (parts.next(), parts.next()) else {
            return Err(InjectError::Target(target.to_string()));
        };
        let container_name = parts.next();
        if namespace.is_empty() || pod_name.is_empty() || container_name == Some("") {
            return Err(InjectError::Target(target.to_string()));
        }
        let targets: Vec<(PodInfo, ContainerInfo)> = {
            let state = lock(&self.inner.state);
            let mut found: Vec<(PodInfo, ContainerInfo)> = state
                .containers
                .values()
                .filter(|c| container_name.is_none_or(|name| c.name == name))
                .filter_map(|c| {
                    let pod = state.pods.get(&c.pod_sandbox_id)?;
                    (pod.namespace == namespace && pod.name == pod_name)
                        .then(|| (pod.clone(), c.clone()))
                })
                .collect();
            found.sort_by(|a, b| a.1.name.cmp(&b.1.name));
            found
        };
        if targets.is_empty() {
            return Err(InjectError::NotFound(target.to_string()));
        }
        let mut armed = Vec::new();
        for (pod, container) in targets {
            let key = format!(
                "{}.{}/container.{}",
                kind.as_str(),
                self.inner.policy.domain,
                container.name
            );
            let synthetic = PodInfo {
                annotations: HashMap::from([(key.clone(), value.to_string())]),
                ..pod.clone()
            };
            let (faults, rejections) = self.plan(&synthetic, &container);
            if let Some(rejection) = rejections.first() {
                return Err(InjectError::Rejected(rejection.reason.clone()));
            }
            let started = Instant::now();
            let target = runner::Target {
                fault_id: 0,
                source: String::new(),
                value: String::new(),
                pod: pod.display_name(),
                // Injected faults count their own firings, apart from the annotations'.
                pod_uid: format!("{}#ctl", pod.uid),
                container: container.name.clone(),
                container_id: container.id.clone(),
                pid: container.pid,
                netns: pod.netns_path(),
                started,
            };
            let mut new = Vec::new();
            for fault in &faults {
                let armed_fault = if fault.kind == FaultKind::Exec {
                    // The shim wrapper executes it: handed over through its inject file.
                    hooks::inject_exec(&self.inner, &target, &fault.key, value)
                        .map_err(InjectError::Rejected)?
                } else {
                    self.arm(fault, &target, container.memory_limit, value, "ctl")
                };
                if let Some(fault) = armed_fault {
                    tracing::info!(pod = %target.pod, container = %target.container, fault = kind.as_str(), fault_id = fault.id, value = %value, "fault injected on operator request");
                    armed.push(fault.id);
                    new.push(fault);
                }
            }
            lock(&self.inner.state)
                .armed
                .entry(container.id.clone())
                .or_default()
                .extend(new);
        }
        Ok(armed
            .into_iter()
            .filter_map(|id| self.inner.registry.get(id))
            .collect())
    }

    /// Faults with a task (armed or holding).
    pub fn active_faults(&self) -> usize {
        lock(&self.inner.state).armed.values().map(Vec::len).sum()
    }

    /// Replaces the engine's view with the runtime's (after every (re)connect).
    /// Containers armed before that are gone now are disarmed; running annotated containers
    /// the engine never saw start are armed with their schedule measured from now.
    pub fn synchronize(&self, pods: Vec<PodInfo>, containers: Vec<ContainerInfo>) {
        let mut to_arm = Vec::new();
        {
            let mut state = lock(&self.inner.state);
            state.pods = pods.into_iter().map(|pod| (pod.id.clone(), pod)).collect();
            let live: HashMap<&str, &ContainerInfo> =
                containers.iter().map(|c| (c.id.as_str(), c)).collect();
            let gone: Vec<String> = state
                .armed
                .keys()
                .filter(|id| !live.get(id.as_str()).is_some_and(|c| c.running))
                .cloned()
                .collect();
            for id in gone {
                if let Some(faults) = state.armed.remove(&id) {
                    faults.iter().for_each(ArmedFault::stop);
                }
                state.plans.remove(&id);
            }
            for container in &containers {
                if container.running
                    && container.pid != 0
                    && !state.armed.contains_key(&container.id)
                {
                    if let Some(pod) = state.pods.get(&container.pod_sandbox_id) {
                        to_arm.push((pod.clone(), container.clone()));
                    }
                }
            }
            state.containers = containers
                .iter()
                .filter(|c| c.running && c.pid != 0)
                .map(|c| (c.id.clone(), c.clone()))
                .collect();
            let known_uids: Vec<String> = state.pods.values().map(|p| p.uid.clone()).collect();
            self.inner.ledger.retain_pods(&known_uids);
        }
        tracing::info!(
            pods = lock(&self.inner.state).pods.len(),
            containers = containers.len(),
            "synchronized with the runtime"
        );
        for (pod, container) in to_arm {
            tracing::info!(pod = %pod.display_name(), container = %container.name, "container already running at sync; its schedule is measured from now");
            self.container_started(pod, container);
        }
    }

    /// Records a pod sandbox.
    pub fn pod_started(&self, pod: PodInfo) {
        lock(&self.inner.state).pods.insert(pod.id.clone(), pod);
    }

    /// Forgets a pod sandbox and everything armed for its containers.
    pub fn pod_removed(&self, pod_id: &str) {
        let mut state = lock(&self.inner.state);
        state.pods.remove(pod_id);
        if let Some(faults) = state.armed.remove(pod_id) {
            faults.iter().for_each(ArmedFault::stop);
        }
        state.containers.retain(|_, c| c.pod_sandbox_id != pod_id);
        let ids: Vec<String> = state
            .plans
            .iter()
            .filter(|(_, planned)| planned.pod.id == pod_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            state.plans.remove(&id);
            if let Some(faults) = state.armed.remove(&id) {
                faults.iter().for_each(ArmedFault::stop);
            }
        }
    }

    /// CreateContainer: validates the pod's annotations for this container.
    /// With `strict = true`, any rejection refuses the container with every reason.
    /// Returns the adjustment that hands hook-executed faults (`start`) to the OCI hook.
    pub fn create_container(
        &self,
        pod: PodInfo,
        container: ContainerInfo,
    ) -> Result<Option<hooks::HookAdjustment>, EngineError> {
        let (faults, rejections) = self.plan(&pod, &container);
        self.report_rejections(&pod, &container, &rejections);
        if self.inner.policy.strict && !rejections.is_empty() {
            let reasons = rejections
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(EngineError::Refused {
                pod: pod.display_name(),
                container: container.name,
                reasons,
            });
        }
        let adjustment =
            hooks::adjustment(&self.inner, &pod, &container.name, &container.id, &faults);
        let (pod_scoped, faults): (Vec<FaultRequest>, Vec<FaultRequest>) = faults
            .into_iter()
            .partition(|fault| fault.kind.is_pod_scoped());
        if let Some(netem) = pod_scoped.first() {
            self.arm_pod_fault(&pod, netem);
        }
        let mut state = lock(&self.inner.state);
        state
            .pods
            .entry(pod.id.clone())
            .or_insert_with(|| pod.clone());
        if !faults.is_empty() {
            for fault in &faults {
                tracing::info!(pod = %pod.display_name(), container = %container.name, fault = fault.kind.as_str(), key = %fault.key, "fault planned");
            }
            state.plans.insert(
                container.id.clone(),
                Planned {
                    pod,
                    container_name: container.name,
                    faults,
                },
            );
        }
        Ok(adjustment)
    }

    /// Arms a pod-scoped fault (netem: the network namespace is the pod's) once per pod
    /// sandbox, its schedule measured from the creation of the pod's first container — the
    /// earliest moment the plugin sees the pod's network namespace before any app runs. It
    /// ends when the pod sandbox is removed.
    fn arm_pod_fault(&self, pod: &PodInfo, fault: &FaultRequest) {
        if lock(&self.inner.state).armed.contains_key(&pod.id) {
            return;
        }
        let key = injector::LedgerKey::new(pod.uid.clone(), String::new(), fault.kind);
        if fault
            .timing
            .count
            .is_some_and(|limit| self.inner.ledger.count(&key) >= limit)
        {
            tracing::info!(pod = %pod.display_name(), fault = fault.kind.as_str(), "count spent; not armed");
            return;
        }
        let target = runner::Target {
            fault_id: 0,
            source: String::new(),
            value: String::new(),
            pod: pod.display_name(),
            pod_uid: pod.uid.clone(),
            container: String::new(),
            container_id: pod.id.clone(),
            pid: pod.pid,
            netns: pod.netns_path(),
            started: Instant::now(),
        };
        let value = pod
            .annotations
            .get(&fault.key)
            .map(String::as_str)
            .unwrap_or_default();
        tracing::info!(pod = %pod.display_name(), fault = fault.kind.as_str(), key = %fault.key, "pod fault planned");
        if let Some(armed) = self.arm(fault, &target, None, value, &fault.key) {
            lock(&self.inner.state)
                .armed
                .insert(pod.id.clone(), vec![armed]);
        }
    }

    /// PostStartContainer: arms the container's planned faults, measured from now.
    pub fn container_started(&self, pod: PodInfo, container: ContainerInfo) {
        let started = Instant::now();
        let planned = {
            let mut state = lock(&self.inner.state);
            if container.pid != 0 {
                state
                    .containers
                    .insert(container.id.clone(), container.clone());
            }
            state.plans.get(&container.id).cloned()
        };
        let planned = match planned {
            Some(planned) => planned,
            None => {
                // Not seen at creation (plugin started later): plan now.
                let (faults, rejections) = self.plan(&pod, &container);
                self.report_rejections(&pod, &container, &rejections);
                if faults.is_empty() {
                    return;
                }
                Planned {
                    pod,
                    container_name: container.name.clone(),
                    faults,
                }
            }
        };
        if container.pid == 0 {
            tracing::warn!(pod = %planned.pod.display_name(), container = %planned.container_name, "container started without a PID; its faults cannot be armed");
            return;
        }
        let target = runner::Target {
            fault_id: 0,
            source: String::new(),
            value: String::new(),
            pod: planned.pod.display_name(),
            pod_uid: planned.pod.uid.clone(),
            container: planned.container_name.clone(),
            container_id: container.id.clone(),
            pid: container.pid,
            netns: planned.pod.netns_path(),
            started,
        };
        let mut armed = Vec::new();
        for fault in &planned.faults {
            let key = injector::LedgerKey::new(
                planned.pod.uid.clone(),
                planned.container_name.clone(),
                fault.kind,
            );
            if fault
                .timing
                .count
                .is_some_and(|limit| self.inner.ledger.count(&key) >= limit)
            {
                tracing::info!(pod = %target.pod, container = %target.container, fault = fault.kind.as_str(), "count spent; not armed");
                continue;
            }
            let value = planned
                .pod
                .annotations
                .get(&fault.key)
                .map(String::as_str)
                .unwrap_or_default();
            if let Some(fault) = self.arm(fault, &target, container.memory_limit, value, &fault.key)
            {
                armed.push(fault);
            }
        }
        if !armed.is_empty() {
            lock(&self.inner.state).armed.insert(container.id, armed);
        }
    }

    /// Spawns the task of one fault on `target` (its schedule measured from
    /// `target.started`) and records it in the registry.
    fn arm(
        &self,
        fault: &FaultRequest,
        target: &runner::Target,
        memory_limit: Option<u64>,
        value: &str,
        source: &str,
    ) -> Option<ArmedFault> {
        let (stop, stop_rx) = watch::channel(false);
        let engine = self.inner.clone();
        let id = self.inner.next_fault_id.fetch_add(1, Ordering::Relaxed);
        let target = runner::Target {
            fault_id: id,
            source: source.to_string(),
            value: value.to_string(),
            ..target.clone()
        };
        self.inner.registry.armed(introspect::NewFault {
            id,
            pod: &target.pod,
            container: &target.container,
            container_id: &target.container_id,
            kind: fault.kind,
            value,
            source,
            holds: !matches!(fault.spec, FaultSpec::Kill(_)),
        });
        let timing = fault.timing;
        let task = match &fault.spec {
            FaultSpec::Kill(kill) => {
                let kill = *kill;
                tokio::spawn(async move {
                    match effects::kill::KillEffect::arm(&engine, kill, target.pid) {
                        Ok(effect) => runner::run(engine, target, timing, effect, stop_rx).await,
                        Err(err) => {
                            engine.registry.failed(target.fault_id, &err.to_string());
                            tracing::warn!(pod = %target.pod, container = %target.container, pid = target.pid, error = %err, "kill: cannot take a handle on the container's init process; fault dropped");
                        }
                    }
                })
            }
            FaultSpec::Freeze(_) => {
                let effect = effects::freeze::FreezeEffect {
                    hold: timing.duration,
                };
                tokio::spawn(runner::run(engine, target, timing, effect, stop_rx))
            }
            FaultSpec::Stress(stress) => {
                let effect = effects::stress::StressEffect {
                    stress: *stress,
                    hold: timing
                        .duration
                        .unwrap_or(std::time::Duration::from_secs(60)),
                    memory_limit,
                };
                tokio::spawn(runner::run(engine, target, timing, effect, stop_rx))
            }
            FaultSpec::Oom(oom) => {
                let effect = effects::oom::OomEffect {
                    oom: *oom,
                    hold: timing.duration,
                    memory_limit,
                };
                tokio::spawn(runner::run(engine, target, timing, effect, stop_rx))
            }
            FaultSpec::Netem(netem) => {
                let Some(netns) = target.netns.clone() else {
                    self.inner
                        .registry
                        .failed(id, "the pod has no network namespace to shape");
                    tracing::warn!(pod = %target.pod, fault = "netem", "the pod has no network namespace path; netem not applied");
                    return None;
                };
                let effect = effects::netem::NetemEffect {
                    netem: netem.clone(),
                    netns,
                    hold: timing.duration,
                };
                tokio::spawn(runner::run(engine, target, timing, effect, stop_rx))
            }
            _ => return None,
        };
        Some(ArmedFault {
            id,
            kind: fault.kind,
            stop,
            task,
        })
    }

    /// StopContainer / RemoveContainer: ends every fault of the container.
    pub fn container_gone(&self, container_id: &str) {
        let mut state = lock(&self.inner.state);
        state.plans.remove(container_id);
        state.containers.remove(container_id);
        if let Some(faults) = state.armed.remove(container_id) {
            faults.iter().for_each(ArmedFault::stop);
        }
    }

    /// Plugin shutdown: stops every armed fault, waits (bounded) for each to recover what it
    /// holds, and saves the ledger.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let faults: Vec<ArmedFault> = {
            let mut state = lock(&self.inner.state);
            state.armed.drain().flat_map(|(_, faults)| faults).collect()
        };
        faults.iter().for_each(ArmedFault::stop);
        let tasks = faults.into_iter().map(|fault| fault.task);
        let all = async {
            for task in tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::error!(
                grace_ms = grace.as_millis() as u64,
                "some faults did not finish recovering before shutdown"
            );
        }
        if let Err(err) = ledger_store::save(&self.inner.ledger_path, &self.inner.ledger) {
            tracing::error!(error = %err, path = %self.inner.ledger_path.display(), "saving the firing ledger at shutdown");
        }
    }

    fn plan(
        &self,
        pod: &PodInfo,
        container: &ContainerInfo,
    ) -> (Vec<FaultRequest>, Vec<Rejection>) {
        let pod_ref = PodRef {
            namespace: &pod.namespace,
            name: &pod.name,
            uid: &pod.uid,
            annotations: &pod.annotations,
            host_network: pod.host_network,
        };
        let plan = plan_container(
            &pod_ref,
            &container.name,
            container.memory_limit,
            &self.inner.policy,
        );
        let hook_path = self.inner.hook_path();
        screen(plan, &pod.annotations, |fault| {
            hooks::runtime_problem(Some(hook_path), &pod.runtime_handler, fault)
        })
    }

    fn report_rejections(
        &self,
        pod: &PodInfo,
        container: &ContainerInfo,
        rejections: &[Rejection],
    ) {
        self.inner.registry.rejected(
            &pod.display_name(),
            &container.name,
            &container.id,
            rejections,
        );
        for rejection in rejections {
            tracing::warn!(
                pod = %pod.display_name(),
                container = %container.name,
                key = %rejection.key,
                value = %rejection.value,
                reason = %rejection.reason,
                strict = self.inner.policy.strict,
                "annotation rejected; container runs unharmed"
            );
        }
    }
}

impl Inner {
    /// Takes one firing from the ledger and persists it; None when `count` is spent.
    pub(crate) fn claim_firing(
        &self,
        key: &injector::LedgerKey,
        limit: Option<u32>,
    ) -> Option<u32> {
        let ordinal = self.ledger.claim(key, limit)?;
        if let Err(err) = ledger_store::save(&self.ledger_path, &self.ledger) {
            tracing::error!(error = %err, path = %self.ledger_path.display(), "saving the firing ledger");
        }
        Some(ordinal)
    }

    /// Gives back a firing that signalled nothing (the process was already gone).
    pub(crate) fn release_firing(&self, key: &injector::LedgerKey) {
        self.ledger.release(key);
        if let Err(err) = ledger_store::save(&self.ledger_path, &self.ledger) {
            tracing::error!(error = %err, path = %self.ledger_path.display(), "saving the firing ledger");
        }
    }

    pub(crate) fn signaller(&self) -> &dyn Signaller {
        self.seams.signaller.as_ref()
    }

    /// A fault task ended by itself: forget it.
    pub(crate) fn disarm(&self, container_id: &str, fault_id: u64) {
        let mut state = lock(&self.state);
        if let Some(faults) = state.armed.get_mut(container_id) {
            faults.retain(|fault| fault.id != fault_id);
            if faults.is_empty() {
                state.armed.remove(container_id);
            }
        }
    }
}

#[cfg(test)]
mod tests;
