//! End-to-end harness for nri-chaos: a private real containerd node (1.7, 2.x, 2.3.4) with runc,
//! CNI and locally built images ([`Node`]), a CRI client acting as the kubelet ([`Cri`]), and
//! the plugin process under test ([`PluginProcess`]) with its own metrics address, read back
//! through [`metrics`].
//!
//! Everything needs root. The runtime cache is fetched on first use
//! (`tests/scripts/fetch-runtime.sh`, see [`Runtime::ensure`]).
//!
//! Cleanup: [`Node::shutdown`] tears a node down and returns an error listing anything left
//! behind; `Drop` does the same best-effort when a test panics; and [`Node::start`] reaps node
//! dirs whose owning test process died without either (timeout, SIGKILL).
//!
//! Environment: `NRI_CHAOS_CACHE` (runtime cache dir), `NRI_CHAOS_E2E_DIR` (base of node
//! dirs, default /tmp), `NRI_CHAOS_E2E_KEEP=1` (keep node dirs for inspection),
//! `NRI_CHAOS_BIN` (plugin binary).

pub mod bench;
pub mod crash;
pub mod cri;
pub mod images;
pub mod kernel;
pub mod load;
pub mod malformed;
pub mod metrics;
pub mod node;
pub mod nri_driver;
pub mod plugin;
pub mod runtime;
pub mod timeline;
mod util;
pub mod vm;

pub use cri::{ContainerSpec, ContainerState, ContainerStatus, Cri, ExecOutput, Pod, PodSpec};
pub use images::{BUSYBOX_IMAGE, PAUSE_IMAGE};
pub use node::{Node, SHIM_HANDLER};
pub use plugin::PluginProcess;
pub use runtime::{
    containerd_23_missing, plugin_binary, try_plugin_binary, try_shim_wrapper_binary,
    workspace_root, ContainerdVersion, NodeEnv, Runtime, RuntimeVersions, SHIM_WRAPPER_BIN,
};

/// Fails with a clear message unless running as root (e2e tests need it; they fail rather
/// than skip so CI cannot silently pass).
pub fn require_root() -> anyhow::Result<()> {
    if util::is_root() {
        Ok(())
    } else {
        anyhow::bail!(
            "nri-chaos e2e tests need root (real containerd, runc, CNI, cgroups); \
             run them as root, e.g. sudo -E cargo test -p nri-chaos-tests"
        )
    }
}
