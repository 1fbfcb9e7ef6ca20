//! StopContainer, RemoveContainer, RemovePodSandbox and plugin shutdown: the faults of what
//! is gone are stopped; each task recovers what it holds. In an NRI handler the faults leave
//! the state at once and their stop signal is raised after the reply (`after_reply`).

use std::time::Duration;

use injector::Scope;

use super::state::{of_pod, ArmedFault};
use super::{lock, Engine};

impl Engine {
    /// StopContainer / RemoveContainer: ends every fault of that container instance.
    pub fn container_gone(&self, container_id: &str) {
        let gone = {
            let mut state = lock(&self.inner.state);
            state.plans.remove(container_id);
            state.containers.remove(container_id);
            state.take(|key, fault| {
                matches!(key.scope, Scope::Container { .. }) && fault.instance == container_id
            })
        };
        self.inner.after_reply.stop(gone);
    }

    /// RemovePodSandbox: forgets the sandbox and ends every fault of it and its containers.
    pub fn pod_removed(&self, sandbox_id: &str) {
        let mut state = lock(&self.inner.state);
        let uid = state.pods.remove(sandbox_id).map(|pod| pod.uid);
        // Its firing counts go with it, unless another sandbox of the same pod lives on (the
        // kubelet removes an old sandbox after it made a new one).
        if let Some(uid) = &uid {
            if !state.pods.values().any(|other| &other.uid == uid) {
                let (store, uid) = (self.inner.store.clone(), uid.clone());
                self.inner.after_reply.call(move || store.forget_pod(&uid));
            }
        }
        let gone = state.take(|key, fault| of_pod(key, fault, sandbox_id, uid.as_deref()));
        state
            .containers
            .retain(|_, c| c.pod_sandbox_id != sandbox_id);
        state
            .plans
            .retain(|_, planned| planned.pod.id != sandbox_id);
        drop(state);
        self.inner.after_reply.stop(gone);
    }

    /// Plugin shutdown: starts what handlers left for after their reply, stops every armed
    /// fault (and those stopped after a reply that was never written), waits (bounded) for
    /// each to recover what it holds, and waits until the store has made everything durable.
    pub async fn shutdown(&self, grace: Duration) {
        let mut faults = self.inner.after_reply.run();
        faults.extend(lock(&self.inner.state).take(|_, _| true));
        if !stop_and_wait(faults, grace).await {
            tracing::error!(
                grace_ms = grace.as_millis() as u64,
                "some faults did not finish recovering before shutdown"
            );
        }
        if let Err(err) = self.inner.store.sync().acked().await {
            tracing::error!(error = %err, "the durable store could not be flushed at shutdown");
        }
    }
}

/// Stops `faults` and waits up to `grace` for their tasks; false when time ran out.
pub(super) async fn stop_and_wait(faults: Vec<ArmedFault>, grace: Duration) -> bool {
    faults.iter().for_each(ArmedFault::stop);
    let all = async {
        for fault in &faults {
            fault.wait_ended().await;
        }
    };
    tokio::time::timeout(grace, all).await.is_ok()
}
