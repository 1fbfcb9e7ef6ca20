//! What containerd sends to the plugin on the Plugin service connection: ttrpc frames
//! (ttrpc's own frame decode), the `Request` envelope, the NRI v1alpha1 messages of
//! `proto/`, and then what the plugin does with a pod and a container: plan its faults from
//! the pod's annotations. Checks: no panic in any layer; decode errors are displayable; the
//! plan properties of `nri_chaos_fuzz::plan_and_check`.
#![no_main]

use injector::Policy;
use libfuzzer_sys::fuzz_target;
use nri_chaos_fuzz::{decode, plan_and_check, ttrpc_requests};
use nri_chaos_proto::nri::{
    ConfigureRequest, Container, CreateContainerRequest, PodSandbox, StateChangeEvent,
    StopContainerRequest, SynchronizeRequest, UpdateContainerRequest,
};

/// The plugin's view of a container's memory limit (`service::container_info`).
fn memory_limit(container: &Container) -> Option<u64> {
    container
        .linux
        .as_ref()
        .and_then(|linux| linux.resources.as_ref())
        .and_then(|resources| resources.memory.as_ref())
        .and_then(|memory| memory.limit.as_ref())
        .and_then(|limit| u64::try_from(limit.value).ok())
        .filter(|limit| *limit > 0)
}

fn plan(pod: &PodSandbox, container: &Container) {
    let host_network = pod.linux.as_ref().is_some_and(|linux| {
        !linux.namespaces.is_empty()
            && !linux
                .namespaces
                .iter()
                .any(|ns| ns.type_ == "network" && !ns.path.is_empty())
    });
    plan_and_check(
        &pod.namespace,
        &pod.annotations,
        &container.name,
        memory_limit(container),
        host_network,
        &Policy::default(),
    );
}

fuzz_target!(|data: &[u8]| {
    for request in ttrpc_requests(data) {
        if request.service != "nri.pkg.api.v1alpha1.Plugin" {
            continue;
        }
        match request.method.as_str() {
            "Configure" => {
                if let Some(req) = decode::<ConfigureRequest>(&request.payload) {
                    let _ = (req.registration_timeout, req.request_timeout);
                }
            }
            "Synchronize" => {
                if let Some(req) = decode::<SynchronizeRequest>(&request.payload) {
                    for container in &req.containers {
                        if let Some(pod) =
                            req.pods.iter().find(|p| p.id == container.pod_sandbox_id)
                        {
                            plan(pod, container);
                        }
                    }
                }
            }
            "CreateContainer" => {
                if let Some(req) = decode::<CreateContainerRequest>(&request.payload) {
                    if let (Some(pod), Some(container)) = (req.pod.as_ref(), req.container.as_ref())
                    {
                        plan(pod, container);
                    }
                }
            }
            "UpdateContainer" => {
                let _ = decode::<UpdateContainerRequest>(&request.payload);
            }
            "StopContainer" => {
                let _ = decode::<StopContainerRequest>(&request.payload);
            }
            "StateChange" => {
                if let Some(event) = decode::<StateChangeEvent>(&request.payload) {
                    let _ = event.event.enum_value();
                }
            }
            _ => {}
        }
    }
});
