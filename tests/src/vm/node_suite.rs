//! One VM node suite in one VM boot: the initramfs (a whole containerd 1.7 node: containerd,
//! its shim, ctr, runc, the CNI bridge/host-local/loopback plugins from the runtime cache, the
//! test images, nri-chaos, nri-chaos-hook at the plugin's default hook path, and the
//! `nri-chaos-vm-node` binary, which drives the node with the harness's `Node` and `Cri`), the
//! boot, and the check of the suite's `ASSERT` lines. `/init` copies the tree onto a tmpfs and
//! `switch_root`s first (runc cannot pivot_root out of an initramfs).
//!
//! The plugin binary is found like the host e2e tests find it (`NRI_CHAOS_BIN`, else the newest
//! `nri-chaos` in `$CARGO_TARGET_DIR` or `<workspace>/target`); the hook is
//! `NRI_CHAOS_HOOK_BIN`, else `nri-chaos-hook` next to the plugin. Debug info is stripped on the
//! way into the initramfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::initramfs::Initramfs;
use super::{boot_and_check, Console, VmCache};
use crate::{plugin_binary, ContainerdVersion, Runtime};

/// Where the runtime cache sits inside the VM (`NRI_CHAOS_CACHE`).
const VM_CACHE: &str = "cache";

fn hook_binary(plugin: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("NRI_CHAOS_HOOK_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let hook = plugin.with_file_name("nri-chaos-hook");
    anyhow::ensure!(
        hook.is_file(),
        "nri-chaos-hook not found next to {} (cargo build -p nri-chaos-oci-hooks, or set \
         NRI_CHAOS_HOOK_BIN)",
        plugin.display()
    );
    Ok(hook)
}

/// `src` without debug info, written under `work` (debug builds are mostly DWARF).
fn stripped(src: &Path, work: &Path) -> Result<PathBuf> {
    let name = src.file_name().context("binary has no file name")?;
    let out = work.join(name);
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(src)
        .arg(&out)
        .status()
        .context("running objcopy")?;
    anyhow::ensure!(status.success(), "objcopy --strip-debug {}", src.display());
    Ok(out)
}

fn build_initramfs(
    run: &NodeSuite<'_>,
    cache: &VmCache,
    rt: &Runtime,
    work: &Path,
    out: &Path,
) -> Result<usize> {
    let v = ContainerdVersion::V17;
    let mut fs = Initramfs::new();
    fs.binary(Path::new("/usr/sbin/ip"), "usr/sbin/ip")?;
    fs.binary(Path::new("/usr/sbin/tc"), "usr/sbin/tc")?;
    fs.binary(Path::new("/usr/bin/nsenter"), "usr/bin/nsenter")?;
    let plugin = plugin_binary();
    let hook = hook_binary(&plugin)?;
    fs.binary(
        &stripped(run.node_binary, work)?,
        "usr/bin/nri-chaos-vm-node",
    )?;
    fs.binary(&stripped(&plugin, work)?, "opt/nri-chaos/bin/nri-chaos")?;
    fs.binary(&stripped(&hook, work)?, "opt/nri-chaos/bin/nri-chaos-hook")?;
    fs.busybox(&rt.busybox())?;
    // The runtime cache, at the same layout the harness expects under NRI_CHAOS_CACHE.
    let c = format!("{VM_CACHE}/runtime");
    for (src, name) in [
        (rt.containerd(v), "containerd"),
        (rt.ctr(v), "ctr"),
        (rt.shim(v), "containerd-shim-runc-v2"),
    ] {
        fs.binary(&src, &format!("{c}/containerd-1.7/usr/bin/{name}"))?;
    }
    // Runtime::ensure checks both containerd lines exist; only 1.7 travels into the VM.
    fs.write(
        &format!("{c}/containerd-2/usr/bin/containerd"),
        0o755,
        b"#!/bin/sh\necho 'containerd 2.x is not carried into the VM' >&2\nexit 1\n",
    );
    fs.binary(&rt.runc(), &format!("{c}/runc/usr/sbin/runc"))?;
    for plugin in ["bridge", "host-local", "loopback"] {
        fs.binary(
            &rt.cni_dir().join(plugin),
            &format!("{c}/cni/usr/lib/cni/{plugin}"),
        )?;
    }
    fs.copy(&rt.busybox(), &format!("{c}/busybox/bin/busybox"), 0o755)?;
    fs.copy(
        &rt.root().join("versions.env"),
        &format!("{c}/versions.env"),
        0o644,
    )?;
    fs.write(&format!("{c}/.complete-v1"), 0o644, b"");
    let images = rt.images_archive();
    let images_name = images
        .file_name()
        .context("images archive name")?
        .to_string_lossy()
        .into_owned();
    fs.copy(&images, &format!("{VM_CACHE}/images/{images_name}"), 0o644)?;
    // containerd copies these into every sandbox.
    fs.write("etc/resolv.conf", 0o644, b"");
    fs.write("etc/hosts", 0o644, b"127.0.0.1 localhost\n");
    fs.write("etc/hostname", 0o644, b"nri-chaos-vm\n");
    fs.write("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    fs.write("etc/group", 0o644, b"root:x:0:\n");
    if run.iptables {
        // Only the figures' baseline uses them: `xtables-legacy-multi iptables ...`, `ipset`.
        let root = super::iptables_root()?;
        fs.binary_in_root(&root, "usr/sbin/xtables-legacy-multi")?;
        fs.binary_in_root(&root, "usr/sbin/ipset")?;
        fs.dir_in_root(&root, "usr/lib/x86_64-linux-gnu/xtables")?;
    }
    for module in ["veth", "sch_netem", "bridge", "overlay"]
        .iter()
        .chain(run.extra_modules)
    {
        fs.module(&cache.modules, module)?;
    }
    eprintln!("initramfs modules (load order): {:?}", fs.modules());
    // Crash round replay (`NRI_CHAOS_CRASH_SEED`, `_ROUND`, `_ROUNDS`) reaches the suite.
    let replay: String = [
        "NRI_CHAOS_CRASH_SEED",
        "NRI_CHAOS_CRASH_ROUND",
        "NRI_CHAOS_CRASH_ROUNDS",
    ]
    .iter()
    .filter_map(|name| {
        let v = std::env::var(name).ok()?;
        v.chars()
            .all(|c| c.is_ascii_digit())
            .then(|| format!("export {name}={v}\n"))
    })
    .collect();
    let env = format!(
        "mkdir -p /dev/pts /dev/shm /var/lib\n\
         mount -t devpts devpts /dev/pts\n\
         mount -t tmpfs tmpfs /dev/shm\n\
         hostname nri-chaos-vm\n\
         export NRI_CHAOS_CACHE=/{VM_CACHE}\n\
         export NRI_CHAOS_BIN=/opt/nri-chaos/bin/nri-chaos\n\
         export NRI_CHAOS_E2E_DIR=/tmp\n\
         export HOME=/root\n\
         export NRI_CHAOS_VM_SUITE={}\n{replay}",
        run.suite
    );
    let archive = fs.finish_switch_root("/usr/bin/nri-chaos-vm-node", &env);
    std::fs::write(out, &archive).with_context(|| format!("writing {}", out.display()))?;
    Ok(archive.len())
}

/// One suite of the `nri-chaos-vm-node` binary, booted in its own VM.
#[derive(Debug)]
pub struct NodeSuite<'a> {
    /// The `nri-chaos-vm-node` binary (`env!("CARGO_BIN_EXE_nri-chaos-vm-node")`).
    pub node_binary: &'a Path,
    /// The suite's name, passed as `NRI_CHAOS_VM_SUITE`.
    pub suite: &'a str,
    /// Kernel modules the suite needs beyond veth, sch_netem, bridge and overlay.
    pub extra_modules: &'a [&'a str],
    /// Whether the VM carries bookworm's iptables (legacy) and ipset ([`super::iptables_root`]).
    pub iptables: bool,
    /// Every assertion the suite must print (ok).
    pub expected: &'a [&'a str],
    /// Hard limit for the boot.
    pub timeout: Duration,
}

impl NodeSuite<'_> {
    /// Builds the initramfs under `<target>/vm-node-<suite>/`, boots it and checks the suite's
    /// assertions (see [`boot_and_check`]). The console is kept in that dir's `console.log`.
    ///
    /// One suite boots at a time in a test process: two TCG VMs on a 2-core host slow each
    /// other's vCPUs behind their guest clocks, and the suites' figures (CPU load, RTT,
    /// deadlines) would measure the host's contention instead of the node.
    pub fn run(&self) -> Result<Console> {
        static ONE_VM_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _turn = ONE_VM_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let t0 = Instant::now();
        let cache = VmCache::ensure()?;
        let rt = Runtime::ensure()?;
        let work = self
            .node_binary
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/tmp"))
            .join(format!("vm-node-{}", self.suite));
        std::fs::create_dir_all(&work)?;
        let initrd = work.join("initrd.cpio");
        let t = Instant::now();
        let size = build_initramfs(self, &cache, &rt, &work, &initrd)?;
        eprintln!(
            "initramfs {} ({:.1} MiB, built in {:.2} s)",
            initrd.display(),
            size as f64 / (1 << 20) as f64,
            t.elapsed().as_secs_f64()
        );
        let console = boot_and_check(
            &cache,
            &initrd,
            self.timeout,
            &work.join("console.log"),
            &format!("VM node suite `{}`", self.suite),
            self.expected,
        )?;
        eprintln!(
            "suite `{}`: {} assertions ok; total test time {:.1} s",
            self.suite,
            console.asserts.len(),
            t0.elapsed().as_secs_f64()
        );
        Ok(console)
    }
}
