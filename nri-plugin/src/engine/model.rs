//! The plugin's own view of pods and containers, taken from NRI messages.

use std::collections::HashMap;

/// A pod sandbox as the engine needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// Sandbox id (containerd's).
    pub id: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID (stable across sandbox and container restarts).
    pub uid: String,
    /// Pod annotations: where fault requests live.
    pub annotations: HashMap<String, String>,
    /// The pod shares the node's network namespace.
    pub host_network: bool,
    /// The pod's network namespace path (CNI bind mount), when NRI reports it.
    pub netns: Option<String>,
    /// The sandbox's PID (0 when NRI does not report it).
    pub pid: u32,
    /// The pod's runtime handler (`nri-chaos` for the shim wrapper; empty for the default).
    pub runtime_handler: String,
}

/// A container as the engine needs it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    /// Container id.
    pub id: String,
    /// Sandbox id of its pod.
    pub pod_sandbox_id: String,
    /// Container name within the pod.
    pub name: String,
    /// Host PID of the container's init process (0 before it was started).
    pub pid: u32,
    /// Memory limit in bytes, when the container has one.
    pub memory_limit: Option<u64>,
    /// The container is running (from Synchronize).
    pub running: bool,
}

impl PodInfo {
    /// The pod's network namespace: the path NRI reports, else `/proc/<sandbox pid>/ns/net`.
    pub fn netns_path(&self) -> Option<std::path::PathBuf> {
        match (&self.netns, self.pid) {
            (Some(path), _) if !path.is_empty() => Some(path.into()),
            (_, pid) if pid != 0 => Some(format!("/proc/{pid}/ns/net").into()),
            _ => None,
        }
    }

    /// `namespace/name` for logs.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
