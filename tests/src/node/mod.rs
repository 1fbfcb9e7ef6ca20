//! A private containerd node: its own root/state/sockets under a temp dir, NRI enabled on a
//! private socket, a CNI bridge on a private /24, cgroups under `/nri-chaos-e2e-<node id>`,
//! and the test images imported. Nothing outside the node dir, its cgroups and its bridge is
//! touched, and teardown ends every process it started by PID.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cri::{Cri, CriContext};
use crate::images::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use crate::plugin::PluginProcess;
use crate::runtime::{ContainerdVersion, Runtime};
use crate::util;

mod config;
pub use config::SHIM_HANDLER;
mod teardown;

use teardown::{
    clean_node, owner_stamp, print_log_tails, reap_stale_nodes, sandbox_ids_on_disk, shim_sockets,
};

/// Prefix of each node's own top-level cgroup (`/<CGROUP_BASE>-<node id>/pod<uid>`). Not a
/// shared parent: a node's teardown removing an emptied shared parent raced another node's
/// runc creating its pod cgroup below it (runc: "mkdir ...: no such file or directory").
pub const CGROUP_BASE: &str = "nri-chaos-e2e";

/// The cgroup under which node `id` puts its pods.
pub(crate) fn node_cgroup(id: &str) -> String {
    format!("/{CGROUP_BASE}-{id}")
}
const DIR_PREFIX: &str = "nri-chaos-e2e-";

/// A private containerd node. Call [`Node::shutdown`] at the end of a test; `Drop` does a
/// best-effort synchronous teardown when a test panics.
#[derive(Debug)]
pub struct Node {
    version: ContainerdVersion,
    runtime: Runtime,
    id: String,
    dir: PathBuf,
    nri_sock: PathBuf,
    cri_sock: PathBuf,
    bridge: String,
    subnet: String,
    net_name: String,
    cgroup_root: String,
    containerd: Option<Child>,
    cri: Cri,
    torn_down: bool,
}

/// Base directory for node dirs: `$NRI_CHAOS_E2E_DIR`, else /tmp.
fn base_dir() -> PathBuf {
    match std::env::var_os("NRI_CHAOS_E2E_DIR") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/tmp"),
    }
}

/// Third octets of 10.213.X.0/24 in use: host routes plus other live node dirs.
fn used_subnets(base: &Path) -> Vec<u8> {
    let mut used = Vec::new();
    if let Ok(routes) = std::fs::read_to_string("/proc/net/route") {
        for line in routes.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(dest), Some(mask)) = (f.get(1), f.get(7)) else {
                continue;
            };
            let (Ok(d), Ok(m)) = (u32::from_str_radix(dest, 16), u32::from_str_radix(mask, 16))
            else {
                continue;
            };
            let d = d.to_le_bytes();
            let m = m.to_le_bytes();
            // A /24 (or narrower) route inside 10.213.0.0/16 takes its /24; broader routes
            // lose to the bridge's more specific one and do not matter.
            if d[0] == 10 && d[1] == 213 && m[2] == 0xff {
                used.push(d[2]);
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
                if let Ok(s) = std::fs::read_to_string(e.path().join("subnet")) {
                    if let Some(x) = s.trim().split('.').nth(2).and_then(|x| x.parse().ok()) {
                        used.push(x);
                    }
                }
            }
        }
    }
    used
}

fn pick_subnet(base: &Path) -> Result<String> {
    let used = used_subnets(base);
    let start = util::random_bytes::<1>()[0];
    for i in 0..=255u16 {
        let x = start.wrapping_add(i as u8);
        if x == 0 || x == 255 || used.contains(&x) {
            continue;
        }
        return Ok(format!("10.213.{x}.0/24"));
    }
    bail!("no free /24 left in 10.213.0.0/16 for a node bridge")
}

impl Node {
    /// Starts a private containerd of `version` and waits until CRI answers with both test
    /// images known.
    pub async fn start(version: ContainerdVersion) -> Result<Node> {
        if !util::is_root() {
            bail!(
                "the nri-chaos e2e harness needs root (it runs containerd, runc, CNI and \
                 cgroups for real); run the e2e tests as root"
            );
        }
        let runtime = tokio::task::spawn_blocking(Runtime::ensure)
            .await
            .context("runtime cache task")??;
        if version == ContainerdVersion::V23 {
            let rt = runtime.clone();
            tokio::task::spawn_blocking(move || rt.ensure_containerd_23())
                .await
                .context("containerd 2.3 unpack task")??;
        }
        let base = base_dir();
        std::fs::create_dir_all(&base)?;
        tokio::task::spawn_blocking({
            let base = base.clone();
            move || reap_stale_nodes(&base)
        })
        .await
        .context("reaping stale nodes")?;
        let id = util::random_hex(3);
        let dir = base.join(format!("{DIR_PREFIX}{}-{id}", version.tag()));
        let subnet = pick_subnet(&base)?;
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("subnet"), &subnet)?;
        if let Some(owner) = owner_stamp(std::process::id()) {
            std::fs::write(dir.join("owner"), owner)?;
        }
        let cgroup_root = node_cgroup(&id);
        let cri = Cri::connect(
            &dir.join("containerd.sock"),
            Arc::new(CriContext {
                cgroup_root: cgroup_root.clone(),
                pods_dir: dir.join("pods"),
                pod_ids: Default::default(),
            }),
        )?;
        let mut node = Node {
            version,
            runtime,
            bridge: format!("ncb{id}"),
            net_name: format!("nri-chaos-{id}"),
            id,
            nri_sock: dir.join("nri.sock"),
            cri_sock: dir.join("containerd.sock"),
            dir,
            subnet,
            cgroup_root,
            containerd: None,
            cri,
            torn_down: false,
        };
        // From here on, Drop cleans up whatever a failure leaves.
        node.write_config()?;
        node.start_containerd().await?;
        node.import_images().await?;
        Ok(node)
    }

    pub fn version(&self) -> ContainerdVersion {
        self.version
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Short random id of this node (also in its bridge and cgroup names).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn nri_socket(&self) -> &Path {
        &self.nri_sock
    }

    pub fn cri_socket(&self) -> &Path {
        &self.cri_sock
    }

    /// The pod's runc shim socket and the shim wrapper's socket next to it (whether they
    /// exist or not).
    pub fn shim_sockets(&self, pod_id: &str) -> Vec<PathBuf> {
        shim_sockets(&self.cri_sock, pod_id)
    }

    pub fn containerd_log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// Where `ctl inject` puts exec faults for the node's shim wrappers: the node's own
    /// (containerd, and so each wrapper, gets it as `NRI_CHAOS_EXEC_DIR`; the plugin as
    /// `--exec-dir`), never the host's `/run/nri-chaos/exec`.
    pub fn exec_dir(&self) -> PathBuf {
        self.dir.join("exec")
    }

    /// Log of plugins started with [`Node::start_plugin`].
    pub fn plugin_log(&self) -> PathBuf {
        self.dir.join("nri-chaos.log")
    }

    /// The node's CNI bridge name (exists once the first pod ran).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The node's pod subnet, e.g. `10.213.7.0/24`.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// Cgroup (cgroupfs path) under which all pods of the node live.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    pub fn containerd_pid(&self) -> Option<u32> {
        self.containerd.as_ref().map(|c| c.id())
    }

    pub async fn cri(&self) -> Result<Cri> {
        Ok(self.cri.clone())
    }

    /// Starts containerd on the node's dirs and waits until CRI answers.
    pub async fn start_containerd(&mut self) -> Result<()> {
        if self.containerd.is_some() {
            bail!("containerd of node {} is already running", self.id);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.containerd_log())?;
        let path = format!(
            "{}:{}:{}",
            self.runtime.bin_dir(self.version).display(),
            self.runtime
                .runc()
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let child = Command::new(self.runtime.containerd(self.version))
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .env("PATH", path)
            .env(injector::exec_inject::DIR_ENV, self.exec_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {}",
                    self.runtime.containerd(self.version).display()
                )
            })?;
        self.containerd = Some(child);
        self.wait_cri(Duration::from_secs(30)).await
    }

    async fn wait_cri(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_err = String::new();
        loop {
            if let Some(child) = self.containerd.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.containerd = None;
                    bail!(
                        "{} exited during start ({status}); log {}:\n{}",
                        self.version,
                        self.containerd_log().display(),
                        util::tail(&self.containerd_log(), 30)
                    );
                }
            }
            if self.cri_socket().exists() {
                match tokio::time::timeout(Duration::from_secs(2), self.cri.version()).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => last_err = format!("{e:#}"),
                    Err(_) => last_err = "Version timed out".into(),
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} CRI did not answer within {timeout:?} (last error: {last_err}); log {}:\n{}",
                    self.version,
                    self.containerd_log().display(),
                    util::tail(&self.containerd_log(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn import_images(&mut self) -> Result<()> {
        let archive = self.runtime.images_archive();
        let out = tokio::process::Command::new(self.runtime.ctr(self.version))
            .arg("--address")
            .arg(self.cri_socket())
            .args(["--namespace", "k8s.io", "images", "import", "--local"])
            .args(["--snapshotter", "overlayfs"])
            .arg(&archive)
            .stdin(Stdio::null())
            .output()
            .await
            .context("spawning ctr images import")?;
        if !out.status.success() {
            bail!(
                "ctr images import {} failed ({}): {}{}",
                archive.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for image in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
            loop {
                if self.cri.image_status(image).await?.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("CRI does not see image {image} after import");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// SIGTERM containerd and wait for it (SIGKILL after 10 s). Shims and containers keep
    /// running, as on a real node.
    pub async fn stop_containerd(&mut self) -> Result<()> {
        let Some(mut child) = self.containerd.take() else {
            return Ok(());
        };
        util::signal(child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() && status.code().is_none() {
                    // Killed by a signal other than our SIGTERM handling: worth a note.
                    eprintln!("[nri-chaos-tests] containerd exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("containerd did not exit within 10 s of SIGTERM (killed)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop containerd and start it again on the same dirs, waiting for CRI.
    pub async fn restart_containerd(&mut self) -> Result<()> {
        self.stop_containerd().await?;
        self.start_containerd().await
    }

    /// Spawns `<binary> run --nri-socket <node nri sock> --config <file> --state-dir
    /// <node dir>/nri-chaos-state --exec-dir <node dir>/exec`, stdout+stderr appended to `<node dir>/nri-chaos.log`.
    /// Unless `config_toml` sets `metrics_address`, the plugin listens for `/metrics` on a
    /// port of its own (`127.0.0.1:0`, the kernel picks a free one): nodes and tests running
    /// in parallel never fight over the default port; [`PluginProcess::metrics_address`] reads
    /// it back.
    pub fn start_plugin(&self, binary: &Path, config_toml: &str) -> Result<PluginProcess> {
        let config = self.dir.join("nri-chaos.toml");
        std::fs::write(&config, config_toml)
            .with_context(|| format!("writing {}", config.display()))?;
        let state = self.dir.join("nri-chaos-state");
        std::fs::create_dir_all(&state)?;
        let mut cmd = Command::new(binary);
        cmd.arg("run")
            .arg("--nri-socket")
            .arg(self.nri_socket())
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .arg("--exec-dir")
            .arg(self.exec_dir());
        if !config_toml.contains("metrics_address") {
            cmd.args(["--metrics-address", "127.0.0.1:0"]);
        }
        PluginProcess::spawn(&mut cmd, &self.plugin_log())
    }

    /// Explicit teardown: remove every pod through CRI, stop containerd, end the shims and
    /// anything else it started, unmount, remove cgroups and the bridge; errors list whatever
    /// was left behind.
    pub async fn shutdown(mut self) -> Result<()> {
        let mut problems = Vec::new();
        if self.containerd.is_some() {
            match self.cri.list_pod_ids().await {
                Ok(ids) => {
                    for id in ids {
                        if let Err(e) = self.cri.stop_pod_id(&id).await {
                            problems.push(format!("StopPodSandbox {id}: {e:#}"));
                        }
                        if let Err(e) = self.cri.remove_pod_id(&id).await {
                            problems.push(format!("RemovePodSandbox {id}: {e:#}"));
                        }
                    }
                }
                Err(e) => problems.push(format!("ListPodSandbox: {e:#}")),
            }
            if let Err(e) = self.stop_containerd().await {
                problems.push(format!("{e:#}"));
            }
        }
        // A few hundred ms of blocking work; keep other tasks running where possible.
        let multi_thread = tokio::runtime::Handle::try_current()
            .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        let left = if multi_thread {
            tokio::task::block_in_place(|| self.teardown_sync())
        } else {
            self.teardown_sync()
        };
        problems.extend(left);
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "node {} ({}) teardown left things behind:\n  {}",
                self.id,
                self.version,
                problems.join("\n  ")
            )
        }
    }

    /// Best-effort synchronous teardown; returns what could not be cleaned.
    fn teardown_sync(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        // containerd itself first, by PID.
        if let Some(mut child) = self.containerd.take() {
            util::signal(child.id() as i32, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut pod_ids = self.cri.known_pod_ids();
        pod_ids.extend(sandbox_ids_on_disk(&self.dir));
        pod_ids.sort();
        pod_ids.dedup();
        if std::thread::panicking() {
            print_log_tails(&self.dir, &format!("{} ({})", self.id, self.version));
        }
        clean_node(&self.dir, &self.id, &pod_ids)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        let left = self.teardown_sync();
        if !left.is_empty() {
            eprintln!(
                "[nri-chaos-tests] node {} teardown (drop) left:\n  {}",
                self.id,
                left.join("\n  ")
            );
        }
    }
}
