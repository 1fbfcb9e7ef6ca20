//! `ctl inject`: a fault armed on running containers on operator request, through the same
//! grammar and policy as an annotation.

use std::collections::HashMap;
use std::time::Instant;

use injector::{FaultKey, FaultKind, FaultRequest};

use super::arm;
use super::error::InjectError;
use super::exec_inject;
use super::introspect::FaultRecord;
use super::kinds::{executor, Executor};
use super::runner::Target;
use super::state::Origin;
use super::{lock, ContainerInfo, Engine, PodInfo};

/// What `ctl list` shows as the source of an injected fault.
const CTL_SOURCE: &str = "ctl";

impl Engine {
    /// `ctl inject`: arms fault `kind` with annotation `value` on the running containers of
    /// `target` (`namespace/pod` for every container, `namespace/pod/container` for one);
    /// a pod-scoped kind (netem) is armed once for the pod. `after` counts from now. Each
    /// injection counts its own firings (apart from the annotations' and from other
    /// injections). Nothing is armed unless every container accepts the fault.
    pub fn inject(
        &self,
        target: &str,
        kind: FaultKind,
        value: &str,
    ) -> Result<Vec<FaultRecord>, InjectError> {
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
        let mut planned: Vec<(PodInfo, ContainerInfo, Vec<FaultRequest>)> = Vec::new();
        for (pod, container) in targets {
            let key = format!(
                "{}.{}/container.{}",
                kind.as_str(),
                self.inner.policy.domain,
                container.name
            );
            let synthetic = PodInfo {
                annotations: HashMap::from([(key, value.to_string())]),
                ..pod
            };
            let (faults, rejections) = self.plan(&synthetic, &container);
            if let Some(rejection) = rejections.first() {
                return Err(InjectError::Rejected(rejection.reason.clone()));
            }
            planned.push((synthetic, container, faults));
        }
        let started = Instant::now();
        let mut armed = Vec::new();
        let mut state = lock(&self.inner.state);
        let mut pods_done: Vec<String> = Vec::new();
        for (pod, container, faults) in &planned {
            for fault in faults {
                let pod_scoped = fault.kind.is_pod_scoped();
                if pod_scoped && pods_done.contains(&pod.id) {
                    continue;
                }
                let key = FaultKey::of(fault.kind, &pod.uid, &container.name);
                let base = arm::target(pod, &key, fault, Origin::Ctl);
                let target = if pod_scoped {
                    pods_done.push(pod.id.clone());
                    Target {
                        container_id: pod.id.clone(),
                        ..base
                    }
                } else {
                    Target {
                        container: container.name.clone(),
                        container_id: container.id.clone(),
                        pid: container.pid,
                        ..base
                    }
                };
                let target = Target {
                    source: CTL_SOURCE.to_string(),
                    started,
                    ..target
                };
                let (pod_name, container_name) = (target.pod.clone(), target.container.clone());
                let armed_fault = if executor(fault.kind) == Executor::Shim {
                    // The shim wrapper executes it: handed over through its inject file.
                    let value = target.value.clone();
                    Some(
                        exec_inject::inject_exec(&self.inner, &target, &fault.key, &value)
                            .map_err(InjectError::Rejected)?,
                    )
                } else {
                    self.inner.arm(fault, target, container.memory_limit)
                };
                if let Some(fault) = armed_fault {
                    tracing::info!(pod = %pod_name, container = %container_name, fault = kind.as_str(), fault_id = fault.id, value = %value, "fault injected on operator request");
                    armed.push(fault.id);
                    state.insert(key, fault);
                }
            }
        }
        drop(state);
        Ok(armed
            .into_iter()
            .filter_map(|id| self.inner.registry.get(id))
            .collect())
    }
}
