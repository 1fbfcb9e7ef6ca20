//! A CRI `runtime.v1` client acting as the kubelet: k8s-cri's generated clients over the node's
//! containerd unix socket.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerStatsRequest, ContainerStatusRequest,
    ContainerStatusResponse, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    ImageStatusRequest, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    RemoveContainerRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::images;

/// What a pod looks like to the kubelet side.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub annotations: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub attempt: u32,
    /// `shareProcessNamespace: true`: containers join the pod's PID namespace (the pause
    /// process is PID 1). Default false, as the kubelet: each container has its own.
    pub share_pid_namespace: bool,
    /// CRI runtime handler (`runtimeClassName`); empty = containerd's default (`runc`).
    pub runtime_handler: String,
}

impl PodSpec {
    /// A pod in namespace `default` with a random uid.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace: "default".to_string(),
            uid: crate::util::random_uuid(),
            annotations: HashMap::new(),
            labels: HashMap::new(),
            attempt: 0,
            share_pid_namespace: false,
            runtime_handler: String::new(),
        }
    }

    /// Runs the pod on runtime handler `handler` (e.g. [`crate::SHIM_HANDLER`]).
    pub fn runtime_handler(mut self, handler: &str) -> Self {
        self.runtime_handler = handler.to_string();
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Containers of this pod share one PID namespace (pod `shareProcessNamespace: true`).
    pub fn share_pid_namespace(mut self) -> Self {
        self.share_pid_namespace = true;
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    fn namespace_options(&self) -> NamespaceOption {
        let pid = if self.share_pid_namespace {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Container
        };
        NamespaceOption {
            network: NamespaceMode::Pod.into(),
            pid: pid.into(),
            ipc: NamespaceMode::Pod.into(),
            ..Default::default()
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }
}

/// A running pod sandbox.
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub spec: PodSpec,
    /// The CRI cgroup parent (cgroupfs style), e.g. `/nri-chaos-e2e-<node>/pod<uid>`.
    pub cgroup_parent: String,
    /// The pod log directory (container logs are `<log_dir>/<name>_<attempt>.log`).
    pub log_dir: PathBuf,
    config: PodSandboxConfig,
}

impl Pod {
    /// Host path of this pod's cgroup in a v1 controller hierarchy (`memory`, `freezer`, ...)
    /// or `unified`.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        crate::util::cgroup_path(controller, &self.cgroup_parent)
    }

    /// Host path of a container's cgroup (cgroupfs driver: `<pod cgroup>/<container id>`).
    pub fn container_cgroup_dir(&self, controller: &str, container_id: &str) -> PathBuf {
        self.cgroup_dir(controller).join(container_id)
    }

    /// Host path of a container's log file.
    pub fn container_log(&self, name: &str, attempt: u32) -> PathBuf {
        self.log_dir.join(format!("{name}_{attempt}.log"))
    }
}

/// A container the kubelet would create.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub command: Vec<String>,
    pub attempt: u32,
    pub memory_limit: Option<u64>,
    /// `(cpu_quota, cpu_period)` in microseconds.
    pub cpu_quota: Option<(i64, i64)>,
    pub env: Vec<(String, String)>,
    pub annotations: HashMap<String, String>,
}

impl ContainerSpec {
    pub fn new(name: &str, command: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            attempt: 0,
            memory_limit: None,
            cpu_quota: None,
            env: Vec::new(),
            annotations: HashMap::new(),
        }
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    pub fn cpu_quota(mut self, quota: i64, period: i64) -> Self {
        self.cpu_quota = Some((quota, period));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    fn from_wire(v: i32) -> Self {
        use k8s_cri::v1::ContainerState as Wire;
        match Wire::try_from(v) {
            Ok(Wire::ContainerCreated) => Self::Created,
            Ok(Wire::ContainerRunning) => Self::Running,
            Ok(Wire::ContainerExited) => Self::Exited,
            Ok(Wire::ContainerUnknown) | Err(_) => Self::Unknown,
        }
    }
}

/// The CRI ContainerStatus fields the tests look at. Times are unix nanoseconds (0 = unset).
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub state: ContainerState,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    pub log_path: String,
}

/// Output of `ExecSync`.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug)]
pub(crate) struct CriContext {
    /// Cgroup parent under which every pod of the node lives (`/nri-chaos-e2e-<node id>`).
    pub cgroup_root: String,
    /// Directory holding pod log directories.
    pub pods_dir: PathBuf,
    /// Every pod sandbox id this client created (for teardown of host-side leftovers).
    pub pod_ids: std::sync::Mutex<Vec<String>>,
}

/// CRI client of one node; cheap to clone. Errors are single-layer `anyhow` errors whose
/// plain `Display` already holds the gRPC code and status message (e.g. an NRI plugin's
/// refusal text), so `err.to_string()` and `{err:#}` both show it.
#[derive(Debug, Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
    ctx: Arc<CriContext>,
}

/// Awaits one unary CRI call; a failure becomes `CRI <method> failed: <code>: <message>`.
async fn reply<T>(
    method: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match call.await {
        Ok(resp) => Ok(resp.into_inner()),
        Err(status) => bail!(
            "CRI {method} failed: {:?}: {}",
            status.code(),
            status.message()
        ),
    }
}

impl Cri {
    /// A lazily connecting client; every call dials the socket again if needed, so it keeps
    /// working across containerd restarts.
    pub(crate) fn connect(socket: &Path, ctx: Arc<CriContext>) -> Result<Self> {
        let socket = socket.to_path_buf();
        // The URI is never used: the connector always dials the unix socket.
        let endpoint = Endpoint::try_from("http://localhost")?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60));
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }));
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
            ctx,
        })
    }

    /// The runtime service client (a clone shares the channel; calls take `&mut`).
    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    /// `(runtime_name, runtime_version)`, e.g. `("containerd", "1.7.24~ds1")`.
    pub async fn version(&self) -> Result<(String, String)> {
        let r = reply(
            "Version",
            self.runtime().version(VersionRequest {
                version: "v1".into(),
            }),
        )
        .await?;
        Ok((r.runtime_name, r.runtime_version))
    }

    /// The image id of `image` as the CRI image service sees it, None when it does not know it.
    pub async fn image_status(&self, image: &str) -> Result<Option<String>> {
        let r = reply(
            "ImageStatus",
            self.image.clone().image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            }),
        )
        .await?;
        Ok(r.image.map(|i| i.id).filter(|id| !id.is_empty()))
    }

    fn sandbox_config(&self, spec: &PodSpec) -> (PodSandboxConfig, String, PathBuf) {
        let cgroup_parent = format!("{}/pod{}", self.ctx.cgroup_root, spec.uid);
        let log_dir = self
            .ctx
            .pods_dir
            .join(format!("{}_{}_{}", spec.namespace, spec.name, spec.uid));
        let mut labels = spec.labels.clone();
        labels.insert("io.kubernetes.pod.name".into(), spec.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), spec.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), spec.uid.clone());
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.clone(),
                uid: spec.uid.clone(),
                namespace: spec.namespace.clone(),
                attempt: spec.attempt,
            }),
            hostname: spec.name.clone(),
            log_directory: log_dir.display().to_string(),
            labels,
            annotations: spec.annotations.clone(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(spec.namespace_options()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        (config, cgroup_parent, log_dir)
    }

    /// RunPodSandbox with the spec's metadata, annotations, a cgroup parent under the node's
    /// private cgroup root, a log directory and the pod name as hostname.
    pub async fn run_pod(&self, spec: &PodSpec) -> Result<Pod> {
        let (config, cgroup_parent, log_dir) = self.sandbox_config(spec);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating pod log dir {}", log_dir.display()))?;
        let r = reply(
            "RunPodSandbox",
            self.runtime().run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: spec.runtime_handler.clone(),
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("pod {}/{}: {e:#}", spec.namespace, spec.name))?;
        if let Ok(mut ids) = self.ctx.pod_ids.lock() {
            ids.push(r.pod_sandbox_id.clone());
        }
        Ok(Pod {
            id: r.pod_sandbox_id,
            spec: spec.clone(),
            cgroup_parent,
            log_dir,
            config,
        })
    }

    /// CreateContainer from the busybox image, like the kubelet would (labels, log path,
    /// resources). Returns the container id. A refusal carries the runtime's (or an NRI
    /// plugin's) message.
    pub async fn create_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let mut labels = HashMap::new();
        labels.insert("io.kubernetes.pod.name".into(), pod.spec.name.clone());
        labels.insert(
            "io.kubernetes.pod.namespace".into(),
            pod.spec.namespace.clone(),
        );
        labels.insert("io.kubernetes.pod.uid".into(), pod.spec.uid.clone());
        labels.insert("io.kubernetes.container.name".into(), spec.name.clone());
        let mut annotations = spec.annotations.clone();
        annotations
            .entry("io.kubernetes.container.restartCount".into())
            .or_insert_with(|| spec.attempt.to_string());
        let (cpu_quota, cpu_period) = spec.cpu_quota.unwrap_or((0, 0));
        let memory = match spec.memory_limit {
            Some(m) => i64::try_from(m).context("memory limit too large")?,
            None => 0,
        };
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: spec.name.clone(),
                attempt: spec.attempt,
            }),
            image: Some(ImageSpec {
                image: images::BUSYBOX_IMAGE.into(),
                ..Default::default()
            }),
            command: spec.command.clone(),
            envs: spec
                .env
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            labels,
            annotations,
            log_path: format!("{}_{}.log", spec.name, spec.attempt),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period,
                    cpu_quota,
                    cpu_shares: 2,
                    memory_limit_in_bytes: memory,
                    oom_score_adj: 0,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(pod.spec.namespace_options()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let r = reply(
            "CreateContainer",
            self.runtime().create_container(CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!("container {} in pod {}: {e:#}", spec.name, pod.spec.name))?;
        Ok(r.container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        reply(
            "StartContainer",
            self.runtime().start_container(StartContainerRequest {
                container_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    /// create + start; returns the container id.
    pub async fn run_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let id = self.create_container(pod, spec).await?;
        self.start_container(&id)
            .await
            .map_err(|e| anyhow::anyhow!("container {} ({id}): {e:#}", spec.name))?;
        Ok(id)
    }

    /// The raw ContainerStatus reply; `verbose` adds the runtime's `info` map.
    async fn status_reply(&self, id: &str, verbose: bool) -> Result<ContainerStatusResponse> {
        reply(
            "ContainerStatus",
            self.runtime().container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose,
            }),
        )
        .await
    }

    pub async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let s = self
            .status_reply(id, false)
            .await?
            .status
            .with_context(|| format!("ContainerStatus of {id}: no status in reply"))?;
        let meta = s.metadata.unwrap_or_default();
        Ok(ContainerStatus {
            id: s.id,
            name: meta.name,
            attempt: meta.attempt,
            state: ContainerState::from_wire(s.state),
            exit_code: s.exit_code,
            reason: s.reason,
            message: s.message,
            created_at: s.created_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
            labels: s.labels,
            annotations: s.annotations,
            log_path: s.log_path,
        })
    }

    /// Host PID of the container's init process, from containerd's verbose ContainerStatus
    /// info (not part of the CRI status proper). None when it is not running.
    pub async fn container_pid(&self, id: &str) -> Result<Option<u32>> {
        let r = self.status_reply(id, true).await?;
        let info = r.info.get("info").map(String::as_str).unwrap_or_default();
        let pid = info.find("\"pid\":").and_then(|i| {
            let digits: String = info[i + 6..]
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u32>().ok()
        });
        Ok(pid.filter(|p| *p > 0))
    }

    /// Polls ContainerStatus every 20 ms until the container has exited.
    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id).await?;
            if status.state == ContainerState::Exited {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("container {id} did not exit within {timeout:?}; last status {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls ContainerStatus every 20 ms until the container runs.
    pub async fn wait_running(&self, id: &str, timeout: Duration) -> Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id).await?;
            match status.state {
                ContainerState::Running => return Ok(status),
                ContainerState::Exited => bail!("container {id} exited: {status:?}"),
                _ => {}
            }
            if Instant::now() >= deadline {
                bail!("container {id} not running within {timeout:?}; last status {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<()> {
        reply(
            "StopContainer",
            self.runtime().stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_s,
            }),
        )
        .await?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        reply(
            "RemoveContainer",
            self.runtime().remove_container(RemoveContainerRequest {
                container_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    /// ExecSync in a running container (timeout in seconds, 0 = none).
    pub async fn exec_sync(&self, id: &str, cmd: &[&str], timeout_s: i64) -> Result<ExecOutput> {
        let r = reply(
            "ExecSync",
            self.runtime().exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: timeout_s,
            }),
        )
        .await?;
        Ok(ExecOutput {
            exit_code: r.exit_code,
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        })
    }

    /// ContainerStats: `(cpu usage ns, memory working set bytes)`.
    pub async fn container_stats(&self, id: &str) -> Result<(u64, u64)> {
        let r = reply(
            "ContainerStats",
            self.runtime().container_stats(ContainerStatsRequest {
                container_id: id.into(),
            }),
        )
        .await?;
        let stats = r
            .stats
            .with_context(|| format!("ContainerStats of {id}: no stats"))?;
        let cpu = stats
            .cpu
            .and_then(|c| c.usage_core_nano_seconds)
            .map(|v| v.value)
            .unwrap_or_default();
        let mem = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map(|v| v.value)
            .unwrap_or_default();
        Ok((cpu, mem))
    }

    pub async fn stop_pod(&self, pod: &Pod) -> Result<()> {
        self.stop_pod_id(&pod.id).await
    }

    pub async fn remove_pod(&self, pod: &Pod) -> Result<()> {
        self.remove_pod_id(&pod.id).await
    }

    pub async fn stop_pod_id(&self, id: &str) -> Result<()> {
        reply(
            "StopPodSandbox",
            self.runtime().stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    pub async fn remove_pod_id(&self, id: &str) -> Result<()> {
        reply(
            "RemovePodSandbox",
            self.runtime().remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    /// Ids of every pod sandbox created through this node's clients.
    pub(crate) fn known_pod_ids(&self) -> Vec<String> {
        self.ctx
            .pod_ids
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_default()
    }

    /// Ids of every pod sandbox the runtime knows.
    pub async fn list_pod_ids(&self) -> Result<Vec<String>> {
        let r = reply(
            "ListPodSandbox",
            self.runtime()
                .list_pod_sandbox(ListPodSandboxRequest { filter: None }),
        )
        .await?;
        Ok(r.items.into_iter().map(|p| p.id).collect())
    }
}
