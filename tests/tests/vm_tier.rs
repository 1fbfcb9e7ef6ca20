//! The VM test tier: boots Debian's cloud kernel (which has sch_netem) under qemu `-accel tcg`
//! with an initramfs built here (busybox, sch_netem + veth modules, iproute2's `ip`/`tc`,
//! `nsenter`, and the `nri-chaos-vm-suite` binary), cgroup v2 only, runs the VM suite and
//! asserts every `ASSERT` line it prints on the serial console is ok.
//!
//! Needs root (it fetches into the project cache and the suite runs as root in the VM): without
//! it the test fails, never skips. First run fetches the kernel and qemu
//! (`tests/scripts/fetch-vm.sh`, about 90 s). `NRI_CHAOS_VM_SCENARIOS="netem cgroup"` limits the
//! scenarios; the console is kept in `target/.../vm-tier/console.log`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nri_chaos_tests::require_root;
use nri_chaos_tests::vm::initramfs::Initramfs;
use nri_chaos_tests::vm::{boot_and_check, VmCache};

const SUITE: &str = env!("CARGO_BIN_EXE_nri-chaos-vm-suite");
/// Hard limit for one boot (the suite takes about a minute under TCG).
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn busybox() -> Result<PathBuf> {
    let repo = nri_chaos_tests::workspace_root();
    let cache = std::env::var_os("NRI_CHAOS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".cache"));
    let busybox = cache.join("runtime/busybox/bin/busybox");
    if !busybox.is_file() {
        let script = repo.join("tests/scripts/fetch-runtime.sh");
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg(&cache)
            .status()
            .with_context(|| format!("running {}", script.display()))?;
        anyhow::ensure!(status.success(), "{} failed", script.display());
    }
    Ok(busybox)
}

fn build_initramfs(cache: &VmCache, out: &Path, scenarios: &str) -> Result<usize> {
    let mut fs = Initramfs::new();
    // Real tools first: busybox's applets of the same names are skipped.
    fs.binary(Path::new("/usr/sbin/ip"), "usr/sbin/ip")?;
    fs.binary(Path::new("/usr/sbin/tc"), "usr/sbin/tc")?;
    fs.binary(Path::new("/usr/bin/nsenter"), "usr/bin/nsenter")?;
    fs.binary(Path::new(SUITE), "usr/bin/nri-chaos-vm-suite")?;
    fs.busybox(&busybox()?)?;
    for module in ["veth", "sch_netem"] {
        fs.module(&cache.modules, module)?;
    }
    eprintln!("initramfs modules (load order): {:?}", fs.modules());
    let archive = fs.finish(&format!("/usr/bin/nri-chaos-vm-suite {scenarios}"));
    std::fs::write(out, &archive).with_context(|| format!("writing {}", out.display()))?;
    Ok(archive.len())
}

#[test]
fn vm_tier_netem_and_cgroup_v2() -> Result<()> {
    require_root()?;
    let t0 = Instant::now();
    let cache = VmCache::ensure()?;
    eprintln!(
        "vm cache ready: kernel {} ({:.1} s)",
        cache.release,
        t0.elapsed().as_secs_f64()
    );
    let work = Path::new(SUITE)
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("/tmp"))
        .join("vm-tier");
    std::fs::create_dir_all(&work)?;
    let initrd = work.join("initrd.cpio");
    let scenarios = std::env::var("NRI_CHAOS_VM_SCENARIOS").unwrap_or_default();
    let t = Instant::now();
    let size = build_initramfs(&cache, &initrd, &scenarios)?;
    eprintln!(
        "initramfs {} ({:.1} MiB, built in {:.2} s)",
        initrd.display(),
        size as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );

    let expected: &[&str] = if scenarios.trim().is_empty() {
        &[
            "netem_tc_delay_jitter",
            "netem_rtt_rise_100ms",
            "netem_loss_20pct",
            "netem_removed_qdisc_gone",
            "freeze_events_frozen_1",
            "stress_cpu_load_50pct",
            "stress_memory_64mib",
        ]
    } else {
        &[]
    };
    let log = work.join("console.log");
    let console = boot_and_check(&cache, &initrd, BOOT_TIMEOUT, &log, "VM suite", expected)?;
    eprintln!(
        "{} assertions ok; total test time {:.1} s",
        console.asserts.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
