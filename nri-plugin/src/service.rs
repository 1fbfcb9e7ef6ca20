//! The NRI Plugin service: decode each request, hand plain data to the engine, answer at once.
//! Engine errors become ttrpc statuses through `From<EngineError> for ttrpc::Error`
//! (`engine::error`), the one mapping shared with the control service.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use nri_chaos_proto::nri::{
    ConfigureRequest, ConfigureResponse, Container, CreateContainerRequest,
    CreateContainerResponse, Empty, Event, PodSandbox, StateChangeEvent, StopContainerRequest,
    StopContainerResponse, SynchronizeRequest, SynchronizeResponse, UpdateContainerRequest,
    UpdateContainerResponse,
};
use nri_chaos_proto::nri_ttrpc::Plugin;
use ttrpc::r#async::TtrpcContext;

use crate::engine::hooks::HookAdjustment;
use crate::engine::{ContainerInfo, Engine, PodInfo};
use injector::hookplan::HookPoint;

/// The events nri-chaos subscribes to (bit `1 << (event - 1)`); all within what NRI 0.6.1
/// accepts (0x7FF).
pub const EVENTS: &[Event] = &[
    Event::RUN_POD_SANDBOX,
    Event::REMOVE_POD_SANDBOX,
    Event::CREATE_CONTAINER,
    Event::POST_START_CONTAINER,
    Event::STOP_CONTAINER,
    Event::REMOVE_CONTAINER,
];

/// The ConfigureResponse event mask for [`EVENTS`].
pub fn event_mask() -> i32 {
    EVENTS
        .iter()
        .fold(0i32, |mask, event| mask | (1 << (*event as i32 - 1)))
}

/// What the runtime told us about itself at Configure.
#[derive(Debug, Clone, Default)]
pub struct RuntimeInfo {
    /// e.g. `containerd`.
    pub name: String,
    /// e.g. `1.7.24`.
    pub version: String,
    /// The NRI protocol generation Configure revealed (for `ctl status`).
    pub protocol: String,
}

/// The Plugin service of one session.
#[derive(Debug)]
pub struct NriPlugin {
    engine: Engine,
    runtime: Arc<Mutex<RuntimeInfo>>,
    pending_sync: Mutex<Option<SynchronizeRequest>>,
}

impl NriPlugin {
    /// A service for one session; `runtime` is filled at Configure.
    pub fn new(engine: Engine, runtime: Arc<Mutex<RuntimeInfo>>) -> NriPlugin {
        NriPlugin {
            engine,
            runtime,
            pending_sync: Mutex::new(None),
        }
    }

    fn timed<T>(&self, name: &'static str, work: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        // Its log lines are queued without waking the log writer, and the fault tasks it
        // starts or stops wait for the reply (see `in_handler`).
        let result = crate::in_handler::run(work);
        let elapsed = start.elapsed();
        self.engine.metrics().handler(name, elapsed);
        tracing::debug!(
            event = name,
            handler_ns = elapsed.as_nanos() as u64,
            "handled"
        );
        result
    }
}

/// The engine's hook adjustment as NRI's ContainerAdjustment (annotations 2, hooks 5).
pub fn adjustment_to_nri(adjustment: HookAdjustment) -> nri_chaos_proto::nri::ContainerAdjustment {
    use nri_chaos_proto::nri::{Hook, Hooks, OptionalInt};
    let mut hooks = Hooks::default();
    for hook in adjustment.hooks {
        let entry = Hook {
            path: hook.path,
            args: hook.args,
            timeout: Some(OptionalInt {
                value: hook.timeout_secs,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        match hook.point {
            HookPoint::CreateRuntime => hooks.create_runtime.push(entry),
            HookPoint::CreateContainer => hooks.create_container.push(entry),
            HookPoint::StartContainer => hooks.start_container.push(entry),
            HookPoint::Poststart => hooks.poststart.push(entry),
            HookPoint::Poststop => hooks.poststop.push(entry),
        }
    }
    nri_chaos_proto::nri::ContainerAdjustment {
        annotations: adjustment.annotations.into_iter().collect(),
        hooks: Some(hooks).into(),
        ..Default::default()
    }
}

/// Converts NRI's pod to the engine's.
pub fn pod_info(pod: &PodSandbox) -> PodInfo {
    let namespaces = pod
        .linux
        .as_ref()
        .map(|linux| linux.namespaces.as_slice())
        .unwrap_or_default();
    let host_network = !namespaces.is_empty()
        && !namespaces
            .iter()
            .any(|ns| ns.type_ == "network" && !ns.path.is_empty());
    PodInfo {
        id: pod.id.clone(),
        name: pod.name.clone(),
        namespace: pod.namespace.clone(),
        uid: pod.uid.clone(),
        annotations: pod.annotations.clone(),
        host_network,
        netns: namespaces
            .iter()
            .find(|ns| ns.type_ == "network" && !ns.path.is_empty())
            .map(|ns| ns.path.clone()),
        pid: pod.pid,
        runtime_handler: pod.runtime_handler.clone(),
    }
}

/// Converts NRI's container to the engine's.
pub fn container_info(container: &Container) -> ContainerInfo {
    let memory_limit = container
        .linux
        .as_ref()
        .and_then(|linux| linux.resources.as_ref())
        .and_then(|resources| resources.memory.as_ref())
        .and_then(|memory| memory.limit.as_ref())
        .and_then(|limit| u64::try_from(limit.value).ok())
        .filter(|limit| *limit > 0);
    ContainerInfo {
        id: container.id.clone(),
        pod_sandbox_id: container.pod_sandbox_id.clone(),
        name: container.name.clone(),
        pid: container.pid,
        memory_limit,
        running: container.state.enum_value_or_default()
            == nri_chaos_proto::nri::ContainerState::CONTAINER_RUNNING,
    }
}

#[async_trait]
impl Plugin for NriPlugin {
    async fn configure(
        &self,
        _ctx: &TtrpcContext,
        req: ConfigureRequest,
    ) -> ttrpc::Result<ConfigureResponse> {
        tracing::info!(runtime = %req.runtime_name, version = %req.runtime_version, events = format!("{:#x}", event_mask()), "configured by the runtime");
        if let Ok(mut runtime) = self.runtime.lock() {
            *runtime = RuntimeInfo {
                name: req.runtime_name.clone(),
                version: req.runtime_version.clone(),
                protocol: if req.request_timeout != 0 || req.registration_timeout != 0 {
                    "v0.7+ (Configure carried registration/request timeouts)".to_string()
                } else {
                    "v0.6 or older (Configure carried no timeouts)".to_string()
                },
            };
        }
        Ok(ConfigureResponse {
            events: event_mask(),
            ..Default::default()
        })
    }

    async fn synchronize(
        &self,
        _ctx: &TtrpcContext,
        req: SynchronizeRequest,
    ) -> ttrpc::Result<SynchronizeResponse> {
        let more = req.more;
        let complete = {
            let Ok(mut pending) = self.pending_sync.lock() else {
                return Ok(SynchronizeResponse::default());
            };
            let mut merged = pending.take().unwrap_or_default();
            merged.pods.extend(req.pods);
            merged.containers.extend(req.containers);
            if more {
                *pending = Some(merged);
                None
            } else {
                Some(merged)
            }
        };
        if let Some(all) = complete {
            self.timed("handler.synchronize", || {
                self.engine.synchronize(
                    all.pods.iter().map(pod_info).collect(),
                    all.containers.iter().map(container_info).collect(),
                )
            });
        }
        // A split synchronization (NRI v0.7+) must be acknowledged by echoing `more`.
        Ok(SynchronizeResponse {
            more,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: Empty) -> ttrpc::Result<Empty> {
        tracing::info!("the runtime is shutting down");
        Ok(Empty::default())
    }

    async fn create_container(
        &self,
        _ctx: &TtrpcContext,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<CreateContainerResponse> {
        let (Some(pod), Some(container)) = (req.pod.as_ref(), req.container.as_ref()) else {
            tracing::warn!("CreateContainer without pod or container; ignored");
            return Ok(CreateContainerResponse::default());
        };
        let adjustment = self
            .timed("handler.create_container", || {
                self.engine
                    .create_container(pod_info(pod), container_info(container))
            })
            .map_err(ttrpc::Error::from)?;
        Ok(CreateContainerResponse {
            adjust: adjustment.map(adjustment_to_nri).into(),
            ..Default::default()
        })
    }

    async fn update_container(
        &self,
        _ctx: &TtrpcContext,
        _req: UpdateContainerRequest,
    ) -> ttrpc::Result<UpdateContainerResponse> {
        Ok(UpdateContainerResponse::default())
    }

    async fn stop_container(
        &self,
        _ctx: &TtrpcContext,
        req: StopContainerRequest,
    ) -> ttrpc::Result<StopContainerResponse> {
        if let Some(container) = req.container.as_ref() {
            self.timed("handler.stop_container", || {
                self.engine.container_gone(&container.id)
            });
        }
        Ok(StopContainerResponse::default())
    }

    async fn state_change(
        &self,
        _ctx: &TtrpcContext,
        req: StateChangeEvent,
    ) -> ttrpc::Result<Empty> {
        let event = req.event.enum_value_or_default();
        match (event, req.pod.as_ref(), req.container.as_ref()) {
            (Event::RUN_POD_SANDBOX, Some(pod), _) => self.timed("handler.run_pod_sandbox", || {
                self.engine.pod_started(pod_info(pod))
            }),
            (Event::REMOVE_POD_SANDBOX, Some(pod), _) => self
                .timed("handler.remove_pod_sandbox", || {
                    self.engine.pod_removed(&pod.id)
                }),
            (Event::POST_START_CONTAINER, Some(pod), Some(container)) => {
                self.timed("handler.post_start_container", || {
                    self.engine
                        .container_started(pod_info(pod), container_info(container))
                })
            }
            (Event::REMOVE_CONTAINER, _, Some(container)) => self
                .timed("handler.remove_container", || {
                    self.engine.container_gone(&container.id)
                }),
            (other, _, _) => tracing::debug!(event = ?other, "event ignored"),
        }
        Ok(Empty::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_mask_fits_nri_0_6_1() {
        let mask = event_mask();
        assert_eq!(mask & !0x7FF, 0, "mask {mask:#x} has bits 0.6.1 rejects");
        // RUN_POD_SANDBOX=1, REMOVE_POD_SANDBOX=3, CREATE=4, POST_START=7, STOP=10, REMOVE=11.
        assert_eq!(mask, 0b110_0100_1101);
    }
}
