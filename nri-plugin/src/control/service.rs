//! The `Control` service: reads the engine's registry, asks the engine to recover or inject,
//! and reports the daemon's state. Its errors are the engine's ([`EngineError`]), which become
//! ttrpc statuses in one place (`engine::error`).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use injector::annotations::UnknownFaultKind;
use injector::units::format_duration;
use injector::{FaultKind, Policy};
use nri_chaos_proto::control::{
    Event, EventsRequest, EventsResponse, Fault, InjectRequest, InjectResponse, ListRequest,
    ListResponse, RecoverRequest, RecoverResponse, Rejection, StatusRequest, StatusResponse,
};
use nri_chaos_proto::control_ttrpc::Control;
use ttrpc::r#async::TtrpcContext;

use crate::engine::events::Subject;
use crate::engine::introspect::{FaultRecord, RejectionRecord};
use crate::engine::{Engine, EngineError, InjectError};
use crate::service::RuntimeInfo;

/// How long `Recover` waits for the recoveries it started.
const RECOVER_GRACE: Duration = Duration::from_secs(10);
/// The longest an `Events` long poll waits (the client's call timeout is longer).
const MAX_EVENTS_WAIT: Duration = Duration::from_secs(10);

/// What the control service reads and steers.
#[derive(Debug, Clone)]
pub struct ControlService {
    /// The fault engine.
    pub engine: Engine,
    /// Runtime name/version/protocol of the current NRI session.
    pub runtime: Arc<Mutex<RuntimeInfo>>,
    /// When the daemon started.
    pub started: Instant,
    /// The control socket (for status).
    pub socket: String,
    /// The metrics address, or `off`.
    pub metrics_address: String,
}

fn ms(value: Option<u64>) -> i64 {
    value.and_then(|v| i64::try_from(v).ok()).unwrap_or(0)
}

/// A registry record on the wire.
pub fn fault_message(record: &FaultRecord) -> Fault {
    Fault {
        id: record.id,
        pod: record.pod.clone(),
        container: record.container.clone(),
        container_id: record.container_id.clone(),
        kind: record.kind.as_str().to_string(),
        value: record.value.clone(),
        source: record.source.clone(),
        planned_unix_ms: ms(record.planned_unix_ms),
        applied_unix_ms: ms(record.applied_unix_ms),
        state: record.state.as_str().to_string(),
        error: record.error.clone(),
        firings: record.firings,
        ..Default::default()
    }
}

fn rejection_message(record: &RejectionRecord) -> Rejection {
    Rejection {
        pod: record.pod.clone(),
        container: record.container.clone(),
        key: record.key.clone(),
        value: record.value.clone(),
        reason: record.reason.clone(),
        class: record.class.as_str().to_string(),
        at_unix_ms: ms(Some(record.at_unix_ms)),
        ..Default::default()
    }
}

fn event_message(event: &crate::engine::events::Event) -> Event {
    let mut message = Event {
        seq: event.seq,
        at_unix_ms: ms(Some(event.at_unix_ms)),
        event: event.kind.as_str().to_string(),
        ..Default::default()
    };
    match &event.subject {
        Subject::Fault(record) => message.fault = Some(fault_message(record)).into(),
        Subject::Rejection(record) => message.rejection = Some(rejection_message(record)).into(),
    }
    message
}

fn toml_str(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn toml_list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().map(|item| toml_str(&item)).collect();
    format!("[{}]", items.join(", "))
}

/// The policy in force, as TOML (every field, defaults included).
pub fn render_policy(policy: &Policy) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "strict = {}", policy.strict);
    let _ = writeln!(out, "domain = {}", toml_str(&policy.domain));
    let _ = writeln!(
        out,
        "allowed_faults = {}",
        toml_list(policy.allowed_faults.iter().map(|k| k.as_str().to_string()))
    );
    match policy.max_duration {
        Some(max) => {
            let _ = writeln!(out, "max_duration = {}", toml_str(&format_duration(max)));
        }
        None => {
            let _ = writeln!(out, "# max_duration: no limit");
        }
    }
    let _ = writeln!(
        out,
        "allow_netem_host_network = {}",
        policy.allow_netem_host_network
    );
    let _ = writeln!(
        out,
        "allow_oom_kill_without_limit = {}",
        policy.allow_oom_kill_without_limit
    );
    for (name, value) in [
        ("state_dir", &policy.state_dir),
        ("control_socket", &policy.control_socket),
        ("metrics_address", &policy.metrics_address),
        ("hook_path", &policy.hook_path),
    ] {
        if let Some(value) = value {
            let _ = writeln!(out, "{name} = {}", toml_str(value));
        }
    }
    let _ = writeln!(out, "\n[namespaces]");
    let _ = writeln!(
        out,
        "allow = {}",
        toml_list(policy.namespaces.allow.iter().cloned())
    );
    let _ = writeln!(
        out,
        "deny = {}",
        toml_list(policy.namespaces.deny.iter().cloned())
    );
    let _ = writeln!(out, "\n[stress]");
    let _ = writeln!(out, "max_cpu_workers = {}", policy.stress.max_cpu_workers);
    match &policy.stress.max_memory {
        Some(size) => {
            let _ = writeln!(out, "max_memory = {}", toml_str(&size.to_string()));
        }
        None => {
            let _ = writeln!(out, "# max_memory: no limit");
        }
    }
    out
}

#[async_trait]
impl Control for ControlService {
    async fn list(&self, _ctx: &TtrpcContext, _req: ListRequest) -> ttrpc::Result<ListResponse> {
        let (faults, rejections) = self.engine.registry().snapshot();
        Ok(ListResponse {
            faults: faults.iter().map(fault_message).collect(),
            rejections: rejections.iter().map(rejection_message).collect(),
            ..Default::default()
        })
    }

    async fn recover(
        &self,
        _ctx: &TtrpcContext,
        req: RecoverRequest,
    ) -> ttrpc::Result<RecoverResponse> {
        let id = (!req.all).then_some(req.id);
        let recovered = self
            .engine
            .recover(id, RECOVER_GRACE)
            .await
            .map_err(EngineError::from)?;
        Ok(RecoverResponse {
            recovered: recovered.iter().map(fault_message).collect(),
            ..Default::default()
        })
    }

    async fn inject(
        &self,
        _ctx: &TtrpcContext,
        req: InjectRequest,
    ) -> ttrpc::Result<InjectResponse> {
        let kind: FaultKind = req
            .kind
            .parse()
            .map_err(|err: UnknownFaultKind| EngineError::from(InjectError::from(err)))?;
        let armed = self
            .engine
            .inject(&req.target, kind, &req.value)
            .map_err(EngineError::from)?;
        Ok(InjectResponse {
            armed: armed.iter().map(fault_message).collect(),
            ..Default::default()
        })
    }

    async fn events(
        &self,
        _ctx: &TtrpcContext,
        req: EventsRequest,
    ) -> ttrpc::Result<EventsResponse> {
        let wait = Duration::from_millis(req.wait_ms.into()).min(MAX_EVENTS_WAIT);
        let batch = self
            .engine
            .registry()
            .events()
            .wait(req.since_seq, wait)
            .await;
        Ok(EventsResponse {
            events: batch.events.iter().map(event_message).collect(),
            last_seq: batch.last_seq,
            dropped: batch.dropped,
            ..Default::default()
        })
    }

    async fn status(
        &self,
        _ctx: &TtrpcContext,
        _req: StatusRequest,
    ) -> ttrpc::Result<StatusResponse> {
        let runtime = self
            .runtime
            .lock()
            .map(|runtime| runtime.clone())
            .unwrap_or_default();
        let metrics = self.engine.metrics();
        let (applied, recovered, failed, rejections) = metrics.totals();
        Ok(StatusResponse {
            nri_connected: metrics.nri_connected(),
            runtime_name: runtime.name,
            runtime_version: runtime.version,
            nri_protocol: runtime.protocol,
            uptime_seconds: self.started.elapsed().as_secs(),
            policy: render_policy(self.engine.policy()),
            nri_reconnects: metrics.nri_reconnects(),
            faults_armed: u64::try_from(self.engine.active_faults()).unwrap_or(u64::MAX),
            faults_applied: applied,
            faults_recovered: recovered,
            faults_failed: failed,
            rejections,
            version: env!("CARGO_PKG_VERSION").to_string(),
            control_socket: self.socket.clone(),
            metrics_address: self.metrics_address.clone(),
            ..Default::default()
        })
    }
}
