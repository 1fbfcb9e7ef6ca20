//! PostStartContainer: arm the container's planned faults, measured from its start.

use std::sync::Arc;
use std::time::Instant;

use injector::FaultKey;

use super::arm::target;
use super::runner::Target;
use super::state::{Origin, Planned};
use super::{lock, ContainerInfo, Engine, PodInfo};

impl Engine {
    /// PostStartContainer: arms the container's planned faults, measured from now. A fault
    /// already standing for the same annotation on this container (resumed from the journal,
    /// or armed by an earlier call) is not armed again; pod-scoped faults are armed once per
    /// pod sandbox.
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
                // Not seen at creation (plugin started later): plan now, pod faults included.
                let (faults, rejections) = self.plan(&pod, &container);
                self.report_rejections(&pod, &container, &rejections);
                Arc::new(Planned {
                    pod,
                    container_name: container.name.clone(),
                    faults,
                })
            }
        };
        if planned.faults.is_empty() {
            return;
        }
        if container.pid == 0 {
            tracing::warn!(pod = %planned.pod.display_name(), container = %planned.container_name, "container started without a PID; its faults cannot be armed");
            return;
        }
        let pod = &planned.pod;
        let mut state = lock(&self.inner.state);
        self.inner.arm_pod_faults(&mut state, pod, &planned.faults);
        for fault in planned.faults.iter().filter(|f| !f.kind.is_pod_scoped()) {
            let key = FaultKey::of(fault.kind, &pod.uid, &planned.container_name);
            if state.holds_annotation(&key, Some(&container.id)) {
                continue;
            }
            if self.inner.spent(&key, fault) {
                tracing::info!(pod = %pod.display_name(), container = %planned.container_name, fault = fault.kind.as_str(), "count spent; not armed");
                continue;
            }
            let target = Target {
                container: planned.container_name.clone(),
                container_id: container.id.clone(),
                pid: container.pid,
                started,
                ..target(pod, &key, fault, Origin::Annotation)
            };
            if let Some(armed) = self.inner.arm(fault, target, container.memory_limit) {
                state.insert(key, armed);
            }
        }
    }
}
