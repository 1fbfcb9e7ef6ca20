//! CreateContainer: plan the container's faults (grammar, policy, what this build executes),
//! refuse it in strict mode, hand hook-executed faults to the OCI hook, arm the pod's
//! pod-scoped faults, and keep the container's own plan for its start.

use std::sync::Arc;

use injector::{plan_container, FaultRequest, PodRef, Rejection};

use super::error::{CreateError, EngineError};
use super::state::Planned;
use super::{hooks, lock, screen, ContainerInfo, Engine, PodInfo};

impl Engine {
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
            return Err(CreateError::Refused {
                pod: pod.display_name(),
                container: container.name,
                reasons,
            }
            .into());
        }
        let adjustment = hooks::adjustment(&self.inner, &pod, &container.name, &faults);
        let mut state = lock(&self.inner.state);
        state
            .pods
            .entry(pod.id.clone())
            .or_insert_with(|| pod.clone());
        self.inner.arm_pod_faults(&mut state, &pod, &faults);
        let faults: Vec<FaultRequest> = faults
            .into_iter()
            .filter(|fault| !fault.kind.is_pod_scoped())
            .collect();
        if tracing::enabled!(tracing::Level::INFO) {
            let pod_name = pod.display_name();
            for fault in &faults {
                let (pod, container) = (pod_name.clone(), container.name.clone());
                let (fault, key) = (fault.kind.as_str(), fault.key.clone());
                // Formatted by the log writer thread, with this instant's time.
                crate::logging::later(move || {
                    tracing::info!(pod = %pod, container = %container, fault, key = %key, "fault planned");
                });
            }
        }
        // Kept even when empty: PostStart then knows the container was planned, and does
        // not plan it (nor its pod's faults) again.
        state.plans.insert(
            container.id.clone(),
            Arc::new(Planned {
                pod,
                container_name: container.name,
                faults,
            }),
        );
        Ok(adjustment)
    }

    /// The faults of `container` the grammar, the policy and this build accept, and the
    /// rejected annotations with their reasons. Pure: the hook binary was checked at start.
    pub(super) fn plan(
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
        screen(plan, &pod.annotations, |fault| {
            hooks::runtime_problem(
                self.inner.hook_problem.as_deref(),
                &pod.runtime_handler,
                fault,
            )
        })
    }

    /// Records and logs `rejections` (the container runs unharmed unless strict).
    pub(super) fn report_rejections(
        &self,
        pod: &PodInfo,
        container: &ContainerInfo,
        rejections: &[Rejection],
    ) {
        // Nothing to format (the pod's display name) for the common case.
        if rejections.is_empty() {
            return;
        }
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
