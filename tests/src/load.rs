//! Helpers of the load tests (tests/tests/e2e_load.rs): the plugin binary driven over its
//! real NRI socket, its handler figures and limits, memory in MiB, and the flood's file limit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{ensure, Result};

use crate::metrics::{max_bound, quantile, Metrics};
use crate::nri_driver::{self, NriDriver};
use crate::{plugin_binary, PluginProcess};

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// containerd drops a plugin whose handler passes 2 s; none may come near.
pub const HANDLER_LIMIT: Duration = Duration::from_secs(1);

/// Prints the handler time per NRI event from the plugin's histograms (calls, p99, and the
/// bucket bound every call was under), then fails when any call passed [`HANDLER_LIMIT`].
pub fn check_handlers(label: &str, metrics: &Metrics) -> Result<()> {
    let mut over = Vec::new();
    for (event, buckets) in metrics.histograms("nri_chaos_handler_seconds", "event") {
        let count = buckets.last().map_or(0.0, |b| b.1);
        let max = max_bound(&buckets);
        println!(
            "load: {label}: handler {event}: {count} calls, p99 {:.0} us, max <= {:.0} us",
            quantile(0.99, &buckets) * 1e6,
            max * 1e6
        );
        if max > HANDLER_LIMIT.as_secs_f64() {
            over.push(format!("{event}: {buckets:?}"));
        }
    }
    ensure!(
        over.is_empty(),
        "{label}: handler calls above {HANDLER_LIMIT:?}: {over:?}"
    );
    Ok(())
}

/// A throwaway process the driver's containers point at; killed on drop.
#[derive(Debug)]
pub struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The plugin binary against the driver's NRI socket in `dir`.
pub async fn driven_plugin(dir: &Path) -> Result<(PluginProcess, NriDriver)> {
    let socket = dir.join("nri.sock");
    let listener = nri_driver::listen(&socket)?;
    let config = dir.join("config.toml");
    std::fs::write(&config, "")?;
    let mut cmd = Command::new(plugin_binary());
    cmd.arg("run")
        .arg("--nri-socket")
        .arg(&socket)
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--exec-dir")
        .arg(dir.join("exec"))
        .args(["--metrics-address", "127.0.0.1:0"])
        .env("RUST_LOG", "warn,nri_chaos=info");
    let plugin = PluginProcess::spawn(&mut cmd, &dir.join("nri-chaos.log"))?;
    let (driver, name) = NriDriver::accept(&listener, "2.1.0", Duration::from_secs(15)).await?;
    ensure!(name.ends_with("nri-chaos"), "registered as {name}");
    Ok((plugin, driver))
}

impl Sleeper {
    /// Starts `sleep 600`.
    pub fn start() -> Result<Sleeper> {
        Ok(Sleeper(Command::new("sleep").arg("600").spawn()?))
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// A fresh directory under the system temp dir for one test, removed when dropped (declare it
/// before the plugin that uses it, so the plugin is stopped first).
pub fn tempfile_dir(name: &str) -> Result<TestDir> {
    let dir = std::env::temp_dir().join(format!("nri-chaos-load-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(TestDir(dir))
}

/// See [`tempfile_dir`].
#[derive(Debug)]
pub struct TestDir(PathBuf);

impl std::ops::Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sum of `nri_chaos_faults_active` over kinds.
pub fn active_faults(metrics: &Metrics) -> f64 {
    let family = "nri_chaos_faults_active";
    metrics
        .label_values(family, "kind")
        .iter()
        .filter_map(|kind| metrics.value(family, &[("kind", kind)]).ok())
        .sum()
}

/// Raises this process's open-file limit to `n` (the flood holds 4,000 sockets).
pub fn raise_nofile(n: u64) -> Result<()> {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit reads one valid rlimit struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    ensure!(
        rc == 0,
        "setrlimit(NOFILE, {n}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
