//! Synchronize and RunPodSandbox: the runtime's view replaces the engine's.

use std::collections::{HashMap, HashSet};

use super::state::target_alive;
use super::{lock, ContainerInfo, Engine, PodInfo};

impl Engine {
    /// Replaces the engine's view with the runtime's (after every (re)connect). A fault
    /// whose target is gone is disarmed: a pod-scoped fault when its pod sandbox is gone, a
    /// container fault when its container instance no longer runs. Running annotated
    /// containers the engine never saw start are armed with their schedule measured from now.
    pub fn synchronize(&self, pods: Vec<PodInfo>, containers: Vec<ContainerInfo>) {
        let mut to_arm = Vec::new();
        let pod_count = pods.len();
        let gone = {
            let mut state = lock(&self.inner.state);
            let pods: HashMap<String, PodInfo> =
                pods.into_iter().map(|pod| (pod.id.clone(), pod)).collect();
            let running: HashMap<&str, &ContainerInfo> = containers
                .iter()
                .filter(|c| c.running)
                .map(|c| (c.id.as_str(), c))
                .collect();
            let gone = state.take(|key, fault| !target_alive(key, fault, &pods, &running));
            let listed: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
            state.plans.retain(|id, _| listed.contains(id.as_str()));
            for container in running.values().filter(|c| c.pid != 0) {
                if state.containers.contains_key(&container.id) {
                    continue;
                }
                if let Some(pod) = pods.get(&container.pod_sandbox_id) {
                    to_arm.push((pod.clone(), (*container).clone()));
                }
            }
            state.containers = running
                .values()
                .filter(|c| c.pid != 0)
                .map(|c| (c.id.clone(), (*c).clone()))
                .collect();
            let known_uids: Vec<String> = pods.values().map(|p| p.uid.clone()).collect();
            let store = self.inner.store.clone();
            self.inner
                .after_reply
                .call(move || store.retain_pods(&known_uids));
            state.pods = pods;
            gone
        };
        self.inner.after_reply.stop(gone);
        let container_count = containers.len();
        // Formatted by the log writer thread, with this instant's time.
        crate::logging::later(move || {
            tracing::info!(
                pods = pod_count,
                containers = container_count,
                "synchronized with the runtime"
            );
        });
        for (pod, container) in to_arm {
            tracing::info!(pod = %pod.display_name(), container = %container.name, "container already running at sync; its schedule is measured from now");
            self.container_started(pod, container);
        }
    }

    /// RunPodSandbox: records the pod sandbox.
    pub fn pod_started(&self, pod: PodInfo) {
        lock(&self.inner.state).pods.insert(pod.id.clone(), pod);
    }
}
