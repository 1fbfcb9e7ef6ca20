//! Cgroups: find a container's cgroup and act on it (freezer, accounting, process placement).
//!
//! [`CgroupFs`] is a cgroup filesystem root ([`CgroupFs::host`] is `/sys/fs/cgroup`; tests use
//! a tempdir tree). [`CgroupFs::layout`] tells the three layouts apart from the tree itself:
//! pure v2 (the root holds `cgroup.controllers`), v1 (one directory per controller hierarchy:
//! `cpu`, `cpuacct` or a combined `cpu,cpuacct`, `memory`, `freezer`, `pids`, ...) and hybrid
//! (v1 plus a v2 hierarchy mounted at `unified`).
//!
//! A [`ContainerCgroup`] holds the container's directory in every hierarchy it is in; it comes
//! from a running process ([`resolve_from_proc`], reading `/proc/<pid>/cgroup`) or from NRI's
//! `LinuxContainer.cgroups_path` before the container exists ([`resolve_from_nri`], cgroupfs form
//! `/kubepods/burstable/pod<uid>/<id>` or systemd form `<slice>:<prefix>:<name>`). It reads the
//! accounting (memory limit and usage, CPU time, member processes) and names every
//! `cgroup.procs` file a process must join to be fully inside the container
//! ([`ContainerCgroup::procs_files`]).
//!
//! The freezer is a seam ([`freezer::Freezer`]): [`freezer::KernelFreezer`] writes the kernel
//! files (v1 `freezer.state`, v2 `cgroup.freeze` + `cgroup.events`; on hybrid hosts the v1
//! freezer is preferred), [`freezer::RecordingFreezer`] is the fake. Where the freezer is lives
//! in a serializable [`FreezerLocation`], so a thaw can be replayed from the journal alone.

pub mod freezer;
mod resolve;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use freezer::{FreezeReport, Freezer, FreezerState, KernelFreezer, RecordingFreezer};
pub use resolve::{resolve_from_nri, resolve_from_proc, systemd_slice_path};

/// v1 memory limits at or above this mean "no limit" (the kernel reports `PAGE_COUNTER_MAX`
/// pages, about 2^63 bytes rounded down to the page size).
pub const V1_UNLIMITED: u64 = 1 << 62;

/// v1 controllers we recognise as hierarchy directory names (alone or comma-combined).
pub const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// Errors of the cgroup seam.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup filesystem recognised under the root.
    #[error("{}: no cgroup filesystem found (neither cgroup.controllers nor v1 controller directories)", .root.display())]
    NotMounted {
        /// The cgroup root.
        root: PathBuf,
    },
    /// The container is not in a hierarchy that has the controller.
    #[error("cgroup {}: the container is in no hierarchy with the {controller} controller", .cgroup)]
    NoController {
        /// The controller (`memory`, `freezer`, `cpuacct`).
        controller: &'static str,
        /// The container cgroup (display form).
        cgroup: String,
    },
    /// The process is gone (its `/proc/<pid>/cgroup` does not exist).
    #[error("process {pid}: {} does not exist (the process has exited)", .path.display())]
    ProcessGone {
        /// The process.
        pid: u32,
        /// The file read.
        path: PathBuf,
    },
    /// A cgroups path or a cgroup file has a shape we do not understand.
    #[error("{what} {}: {reason}", crate::annotations::quote(.value))]
    Malformed {
        /// What was parsed (`cgroups path`, `/proc/1/cgroup line`, `memory.max`).
        what: String,
        /// The offending text.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The cgroup directory disappeared (the container is gone).
    #[error("cgroup {}: no longer exists", .path.display())]
    Vanished {
        /// The file or directory that was missing.
        path: PathBuf,
    },
    /// The freezer did not reach the wanted state in time.
    #[error("cgroup {}: {file} stayed {state} after {elapsed:?} ({attempts} attempts to reach {wanted}){tasks}", .dir.display())]
    Timeout {
        /// The cgroup directory.
        dir: PathBuf,
        /// The file polled (`freezer.state`, `cgroup.events`).
        file: &'static str,
        /// The last state seen.
        state: &'static str,
        /// The wanted state.
        wanted: &'static str,
        /// Time spent.
        elapsed: Duration,
        /// Writes of the wanted state.
        attempts: u32,
        /// `; tasks: <tid> <comm> <state> <wchan>, ...` (what the cgroup's threads were doing,
        /// so that a stuck task is named), or empty.
        tasks: Box<str>,
    },
    /// A failure injected into [`RecordingFreezer`].
    #[error("cgroup {}: injected failure of {op}", .dir.display())]
    Injected {
        /// The operation (`freeze`, `thaw`, `state`).
        op: &'static str,
        /// The cgroup directory.
        dir: PathBuf,
    },
    /// Any other I/O failure.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// `read`, `write`, `list`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl CgroupError {
    /// Whether this error means the cgroup is gone (the container no longer exists).
    pub fn is_vanished(&self) -> bool {
        matches!(self, CgroupError::Vanished { .. })
    }

    /// Whether this error is the freezer not reaching the wanted state in time (transient:
    /// a task in uninterruptible sleep holds the cgroup in `FREEZING`).
    pub fn is_timeout(&self) -> bool {
        matches!(self, CgroupError::Timeout { .. })
    }
}

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupLayout {
    /// Only v1 controller hierarchies.
    V1,
    /// v1 controller hierarchies plus a v2 hierarchy at `<root>/unified`.
    Hybrid,
    /// Pure v2 (unified) at the root.
    V2,
}

/// A cgroup filesystem root (`/sys/fs/cgroup` on a host, a tempdir in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFs {
    root: PathBuf,
}

impl CgroupFs {
    /// The cgroup filesystem rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupFs { root: root.into() }
    }

    /// The host's `/sys/fs/cgroup`.
    pub fn host() -> Self {
        CgroupFs::new("/sys/fs/cgroup")
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Detects the layout from the tree.
    pub fn layout(&self) -> Result<CgroupLayout, CgroupError> {
        if self.root.join("cgroup.controllers").is_file() {
            return Ok(CgroupLayout::V2);
        }
        if self.v1_hierarchies()?.is_empty() {
            return Err(CgroupError::NotMounted {
                root: self.root.clone(),
            });
        }
        if self.root.join("unified/cgroup.controllers").is_file() {
            Ok(CgroupLayout::Hybrid)
        } else {
            Ok(CgroupLayout::V1)
        }
    }

    /// The root of the v2 hierarchy for `layout` (none for pure v1).
    pub fn unified_root(&self, layout: CgroupLayout) -> Option<PathBuf> {
        match layout {
            CgroupLayout::V2 => Some(self.root.clone()),
            CgroupLayout::Hybrid => Some(self.root.join("unified")),
            CgroupLayout::V1 => None,
        }
    }

    /// Every v1 controller mounted, mapped to its hierarchy directory (a combined hierarchy
    /// `cpu,cpuacct` maps both `cpu` and `cpuacct` to that directory; the `cpu` and `cpuacct`
    /// symlinks distributions add are resolved to it). Named hierarchies (`systemd`) and
    /// `unified` are not controllers.
    pub fn v1_hierarchies(&self) -> Result<BTreeMap<String, PathBuf>, CgroupError> {
        let entries = std::fs::read_dir(&self.root).map_err(|source| CgroupError::Io {
            op: "list",
            path: self.root.clone(),
            source,
        })?;
        let mut map = BTreeMap::new();
        let mut links = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let controllers: Vec<&str> = name.split(',').collect();
            if !controllers.iter().all(|c| V1_CONTROLLERS.contains(c)) {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_symlink() {
                links.push(name);
            } else if kind.is_dir() {
                for c in controllers {
                    map.insert(c.to_string(), entry.path());
                }
            }
        }
        // Symlinks (`cpu -> cpu,cpuacct`) only fill controllers no real directory named.
        for name in links {
            let link = self.root.join(&name);
            map.entry(name)
                .or_insert_with(|| std::fs::canonicalize(&link).unwrap_or(link));
        }
        Ok(map)
    }
}

/// Where a container's freezer is; serializable so a thaw can be replayed from the journal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "snake_case")]
pub enum FreezerLocation {
    /// v1: the container's `freezer.state` file.
    V1 {
        /// `<root>/freezer/<path>/freezer.state`.
        state_file: PathBuf,
    },
    /// v2: the container's cgroup directory (holding `cgroup.freeze` and `cgroup.events`).
    V2 {
        /// `<unified root>/<path>`.
        dir: PathBuf,
    },
}

impl FreezerLocation {
    /// The cgroup directory of the freezer.
    pub fn dir(&self) -> &Path {
        match self {
            FreezerLocation::V1 { state_file } => state_file.parent().unwrap_or(state_file),
            FreezerLocation::V2 { dir } => dir,
        }
    }
}

/// A container's cgroups: its directory in every hierarchy it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCgroup {
    /// The host layout.
    pub layout: CgroupLayout,
    /// v1 controller -> the container's directory in that controller's hierarchy.
    pub v1: BTreeMap<String, PathBuf>,
    /// The container's directory in the v2 hierarchy (pure v2, or `unified` on hybrid hosts).
    pub unified: Option<PathBuf>,
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| io_error("read", path, source))
}

/// Maps an I/O error on `path`: a missing file or directory means the cgroup vanished.
pub(crate) fn io_error(op: &'static str, path: &Path, source: io::Error) -> CgroupError {
    if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ENODEV) {
        CgroupError::Vanished {
            path: path.to_path_buf(),
        }
    } else {
        CgroupError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    text.trim()
        .parse::<u64>()
        .map_err(|e| CgroupError::Malformed {
            what: path.display().to_string(),
            value: text.trim().to_string(),
            reason: format!("not an unsigned integer ({e})"),
        })
}

impl ContainerCgroup {
    /// A cgroup that only knows its freezer (rebuilt from a journal entry for a thaw).
    pub fn from_freezer(location: &FreezerLocation) -> Self {
        match location {
            FreezerLocation::V1 { .. } => ContainerCgroup {
                layout: CgroupLayout::V1,
                v1: BTreeMap::from([("freezer".to_string(), location.dir().to_path_buf())]),
                unified: None,
            },
            FreezerLocation::V2 { dir } => ContainerCgroup {
                layout: CgroupLayout::V2,
                v1: BTreeMap::new(),
                unified: Some(dir.clone()),
            },
        }
    }

    /// A short name for messages: the freezer, memory or unified directory.
    pub fn describe(&self) -> String {
        let dir = self
            .v1
            .get("freezer")
            .or_else(|| self.v1.get("memory"))
            .or(self.unified.as_ref())
            .or_else(|| self.v1.values().next());
        match dir {
            Some(d) => d.display().to_string(),
            None => "(no cgroup directories)".to_string(),
        }
    }

    fn missing(&self, controller: &'static str) -> CgroupError {
        CgroupError::NoController {
            controller,
            cgroup: self.describe(),
        }
    }

    /// The directory holding v2 controller files: the unified directory on pure v2 only (the
    /// hybrid `unified` hierarchy has no controllers).
    fn v2_controller_dir(&self) -> Option<&Path> {
        match self.layout {
            CgroupLayout::V2 => self.unified.as_deref(),
            _ => None,
        }
    }

    /// The freezer: the v1 freezer when the container is in a v1 freezer hierarchy (preferred
    /// on hybrid hosts), otherwise the v2 directory.
    pub fn freezer(&self) -> Result<FreezerLocation, CgroupError> {
        if let Some(dir) = self.v1.get("freezer") {
            return Ok(FreezerLocation::V1 {
                state_file: dir.join("freezer.state"),
            });
        }
        match &self.unified {
            Some(dir) => Ok(FreezerLocation::V2 { dir: dir.clone() }),
            None => Err(self.missing("freezer")),
        }
    }

    /// The memory controller directory (v1 `memory` hierarchy, or the v2 directory).
    pub fn memory_dir(&self) -> Result<&Path, CgroupError> {
        self.v1
            .get("memory")
            .map(PathBuf::as_path)
            .or_else(|| self.v2_controller_dir())
            .ok_or_else(|| self.missing("memory"))
    }

    /// The memory limit in bytes, `None` when unlimited (v1 `memory.limit_in_bytes` at or above
    /// 2^62, v2 `memory.max` = `max`).
    pub fn memory_limit_bytes(&self) -> Result<Option<u64>, CgroupError> {
        if let Some(dir) = self.v1.get("memory") {
            let path = dir.join("memory.limit_in_bytes");
            let value = parse_u64(&path, &read_file(&path)?)?;
            return Ok((value < V1_UNLIMITED).then_some(value));
        }
        let dir = self.memory_dir()?;
        let path = dir.join("memory.max");
        let text = read_file(&path)?;
        if text.trim() == "max" {
            return Ok(None);
        }
        parse_u64(&path, &text).map(Some)
    }

    /// Memory in use, in bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub fn memory_usage_bytes(&self) -> Result<u64, CgroupError> {
        let path = match self.v1.get("memory") {
            Some(dir) => dir.join("memory.usage_in_bytes"),
            None => self.memory_dir()?.join("memory.current"),
        };
        parse_u64(&path, &read_file(&path)?)
    }

    /// CPU time consumed by the cgroup (v1 `cpuacct.usage` in ns, otherwise `usage_usec` of the
    /// v2 `cpu.stat`, which the controller-less hybrid `unified` hierarchy also has).
    pub fn cpu_usage(&self) -> Result<Duration, CgroupError> {
        if let Some(dir) = self.v1.get("cpuacct") {
            let path = dir.join("cpuacct.usage");
            return Ok(Duration::from_nanos(parse_u64(&path, &read_file(&path)?)?));
        }
        let dir = self
            .unified
            .as_ref()
            .ok_or_else(|| self.missing("cpuacct"))?;
        let path = dir.join("cpu.stat");
        let text = read_file(&path)?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .ok_or_else(|| CgroupError::Malformed {
                what: path.display().to_string(),
                value: text.clone(),
                reason: "no usage_usec line".to_string(),
            })?;
        Ok(Duration::from_micros(parse_u64(&path, value)?))
    }

    /// The processes in the cgroup (`cgroup.procs` of the memory hierarchy, else the freezer
    /// hierarchy, else the v2 directory).
    pub fn pids(&self) -> Result<Vec<u32>, CgroupError> {
        let dir = self
            .v1
            .get("memory")
            .or_else(|| self.v1.get("freezer"))
            .or(self.unified.as_ref())
            .or_else(|| self.v1.values().next())
            .ok_or_else(|| self.missing("memory"))?;
        let path = dir.join("cgroup.procs");
        let text = read_file(&path)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim().parse::<u32>().map_err(|e| CgroupError::Malformed {
                    what: path.display().to_string(),
                    value: l.to_string(),
                    reason: format!("not a pid ({e})"),
                })
            })
            .collect()
    }

    /// Every `cgroup.procs` file a process must be written into to be fully inside the
    /// container's cgroups: one per v1 hierarchy the container is in (a combined `cpu,cpuacct`
    /// hierarchy once), plus the v2 directory. Sorted, without duplicates.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .v1
            .values()
            .chain(self.unified.iter())
            .map(|d| d.join("cgroup.procs"))
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

#[cfg(test)]
mod tests;
