//! Shared pieces of the end-to-end tests: a node with nri-chaos registered, and log helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use std::path::PathBuf;

use nri_chaos_tests::{
    plugin_binary, ContainerSpec, ContainerdVersion, Cri, Node, PluginProcess, Pod, PodSpec,
    SHIM_HANDLER,
};

/// The end-to-end suite drives a real containerd: it needs root. Fail loudly otherwise.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the end-to-end suite runs a private containerd, runc and CNI: run it as root (tests/run-all.sh)"
    );
}

/// A private node with nri-chaos registered under `config`.
pub struct ChaosNode {
    pub node: Node,
    pub plugin: PluginProcess,
}

impl ChaosNode {
    pub async fn start(version: ContainerdVersion, config: &str) -> Result<ChaosNode> {
        require_root();
        let node = Node::start(version).await?;
        ChaosNode::with_plugin(node, config).await
    }

    /// nri-chaos registered under `config` on `node`, which may run pods already.
    pub async fn with_plugin(node: Node, config: &str) -> Result<ChaosNode> {
        let plugin = node.start_plugin(&plugin_binary(), config)?;
        plugin
            .wait_log_contains("registered with the runtime", Duration::from_secs(15))
            .await
            .context("nri-chaos did not register")?;
        // Configure + Synchronize follow the registration; give them a moment to land.
        plugin
            .wait_log_contains("synchronized with the runtime", Duration::from_secs(10))
            .await
            .context("nri-chaos was not synchronized")?;
        Ok(ChaosNode { node, plugin })
    }

    pub fn log(&self) -> String {
        self.plugin.log()
    }

    /// Log lines containing every one of `needles`, once the log has settled: the plugin's
    /// writer thread writes lines logged inside an NRI handler up to 50 ms late (others at
    /// once, but a loaded machine may run that thread late), so the log is read when it has
    /// not grown for 150 ms (at most 2 s of waiting).
    pub fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut log = self.log();
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let again = self.log();
            let settled = again.len() == log.len();
            log = again;
            if settled || std::time::Instant::now() >= deadline {
                break;
            }
        }
        log.lines()
            .filter(|line| needles.iter().all(|needle| line.contains(needle)))
            .map(str::to_string)
            .collect()
    }

    /// Starts nri-chaos again on the same node and state dir (after a stop or a SIGKILL).
    pub async fn restart_plugin(&mut self, config: &str) -> Result<()> {
        let _ = self.plugin.kill();
        self.plugin = self.node.start_plugin(&plugin_binary(), config)?;
        self.plugin
            .wait_log_contains("nri-chaos starting", Duration::from_secs(10))
            .await
            .context("nri-chaos did not start again")?;
        Ok(())
    }

    pub async fn shutdown(self) -> Result<()> {
        let ChaosNode { node, plugin } = self;
        let status = plugin.stop().await?;
        if !status.success() {
            bail!("nri-chaos exited with {status} at SIGTERM");
        }
        node.shutdown().await
    }
}

/// Seconds between two CRI timestamps (unix ns).
pub fn secs_between(from_ns: i64, to_ns: i64) -> f64 {
    (to_ns - from_ns) as f64 / 1e9
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// Generates one `#[tokio::test]` per containerd version for an `async fn(ContainerdVersion)`.
#[macro_export]
macro_rules! on_both_containerd_versions {
    ($($scenario:ident),* $(,)?) => {
        mod containerd_1_7 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(nri_chaos_tests::ContainerdVersion::V17).await.unwrap();
                }
            )*
        }
        mod containerd_2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(nri_chaos_tests::ContainerdVersion::V2).await.unwrap();
                }
            )*
        }
    };
}

/// Marker of a test that could not run here; `tests/run-all.sh` counts these lines by name in
/// its closing line (`N skipped: a, b`) instead of counting them as passed.
pub const SKIPPED_MARKER: &str = "[nri-chaos-tests] SKIPPED";

/// True (after printing the [`SKIPPED_MARKER`] line naming `test`) when `missing` says why
/// `test` cannot run here; the test then returns without running and is counted as skipped.
pub fn skip_because(test: &str, missing: Option<String>) -> bool {
    match missing {
        Some(why) => {
            println!("{SKIPPED_MARKER} {test}: {why}");
            true
        }
        None => false,
    }
}

/// True (after printing the [`SKIPPED_MARKER`] line naming `test`) when containerd 2.3.4 is
/// absent here; the test then returns without running.
pub fn skip_without_containerd_23(test: &str) -> bool {
    skip_because(test, nri_chaos_tests::containerd_23_missing())
}

/// The module a scenario's test sits in for `version` (see the macros below), so a skipped
/// scenario is named as libtest names it: `<file>::<module>::<scenario>`.
pub fn version_module(version: ContainerdVersion) -> &'static str {
    match version {
        ContainerdVersion::V17 => "containerd_1_7",
        ContainerdVersion::V2 => "containerd_2",
        ContainerdVersion::V23 => "containerd_2_3",
    }
}

/// Generates one `#[tokio::test]` on containerd 2.3.4 per `async fn(ContainerdVersion)`, in
/// a module `containerd_2_3`; where 2.3.4 is absent each is reported skipped by name.
#[macro_export]
macro_rules! on_containerd_2_3 {
    ($($scenario:ident),* $(,)?) => {
        mod containerd_2_3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let name = concat!(module_path!(), "::", stringify!($scenario));
                    if super::common::skip_without_containerd_23(name) {
                        return;
                    }
                    super::$scenario(nri_chaos_tests::ContainerdVersion::V23).await.unwrap();
                }
            )*
        }
    };
}

/// `nri-chaos-hook`: `$NRI_CHAOS_HOOK_BIN`, else next to the plugin binary (same target dir).
pub fn hook_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NRI_CHAOS_HOOK_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let plugin = plugin_binary();
    let hook = plugin.with_file_name("nri-chaos-hook");
    assert!(
        hook.is_file(),
        "the OCI hook binary was not found at {} (next to the plugin {}); build it with cargo build -p nri-chaos-oci-hooks or set NRI_CHAOS_HOOK_BIN",
        hook.display(),
        plugin.display()
    );
    hook
}

/// A plugin config that points at the built hook binary.
pub fn hook_config() -> String {
    format!("hook_path = \"{}\"\n", hook_binary().display())
}

/// The OCI spec containerd handed to runc for a started container.
pub fn oci_spec(node: &ChaosNode, id: &str) -> Result<String> {
    let path = node
        .node
        .dir()
        .join("state/io.containerd.runtime.v2.task/k8s.io")
        .join(id)
        .join("config.json");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// A pod `name` on the shim wrapper's runtime handler, without annotations, running one
/// container `app` (`sleep 3600`): the pod and the container's id.
pub async fn wrapped_app(cri: &Cri, name: &str) -> Result<(Pod, String)> {
    let pod = cri
        .run_pod(&PodSpec::new(name).runtime_handler(SHIM_HANDLER))
        .await?;
    let app = cri
        .run_container(&pod, &ContainerSpec::new("app", &["sleep", "3600"]))
        .await?;
    Ok((pod, app))
}
