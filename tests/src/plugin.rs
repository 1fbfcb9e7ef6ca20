//! A running `nri-chaos` plugin process started by the harness.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util;

/// The plugin process; every method takes `&self`. `Drop` SIGKILLs it if it still runs.
#[derive(Debug)]
pub struct PluginProcess {
    child: Mutex<Child>,
    pid: u32,
    log: PathBuf,
    /// Length of the (shared, appended) log when this process started: log searches only
    /// look at what this process wrote.
    log_offset: u64,
}

impl PluginProcess {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let log_offset = file.metadata()?.len();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("spawning {cmd:?}"))?;
        Ok(Self {
            pid: child.id(),
            child: Mutex::new(child),
            log: log.to_path_buf(),
            log_offset,
        })
    }

    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The log file (shared by every plugin process of the node, appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What this process wrote to the log so far.
    pub fn log(&self) -> String {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return String::new();
        };
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.log_offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The address its `/metrics` listens on (the harness gives every plugin its own loopback
    /// port, see [`crate::Node::start_plugin`]), from its `metrics listening` log line.
    pub async fn metrics_address(&self) -> Result<SocketAddr> {
        let line = self
            .wait_log_contains("metrics listening", Duration::from_secs(10))
            .await?;
        let address = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("address="))
            .with_context(|| format!("no address= in {line:?}"))?;
        address
            .parse()
            .with_context(|| format!("metrics address {address:?} in {line:?}"))
    }

    /// `GET /metrics` of this plugin, parsed.
    pub async fn metrics(&self) -> Result<crate::metrics::Metrics> {
        crate::metrics::scrape(self.metrics_address().await?).await
    }

    /// Exit status if the process has exited (non-blocking; reaps it).
    pub fn try_status(&self) -> Result<Option<ExitStatus>> {
        Ok(self.child().try_wait()?)
    }

    /// SIGTERM, then wait up to 10 s for the exit status. A process that does not exit in
    /// time is SIGKILLed and reported as an error.
    pub async fn stop(&self) -> Result<ExitStatus> {
        if let Some(s) = self.try_status()? {
            return Ok(s);
        }
        util::signal(self.pid as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.try_status()? {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                bail!(
                    "nri-chaos (pid {}) did not exit within 10 s of SIGTERM; killed. Log:\n{}",
                    self.pid,
                    tail_str(&self.log(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL and reap; returns the exit status.
    pub fn kill(&self) -> Result<ExitStatus> {
        let mut child = self.child();
        if let Some(s) = child.try_wait()? {
            return Ok(s);
        }
        util::signal(self.pid as i32, libc::SIGKILL);
        Ok(child.wait()?)
    }

    /// Polls (every 20 ms) what this process logged until a line contains `needle`; returns
    /// that line. Fails early when the process exits without logging it.
    pub async fn wait_log_contains(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.try_status()? {
                // One last read: the line may have been written just before exit.
                let log = self.log();
                if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                    return Ok(line.to_string());
                }
                bail!(
                    "nri-chaos exited ({status}) without logging {needle:?}; log:\n{}",
                    tail_str(&log, 30)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "nri-chaos did not log {needle:?} within {timeout:?}; log:\n{}",
                    tail_str(&log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn tail_str(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
