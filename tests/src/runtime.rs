//! The runtime cache: containerd 1.7 and 2.x, runc, CNI plugins and busybox unpacked from
//! Debian packages by `tests/scripts/fetch-runtime.sh`, plus the locally built images.

use std::collections::HashMap;
use std::fmt;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::images;

/// The containerd lines the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerdVersion {
    V17,
    V2,
    /// containerd v2.3.4 (shim bootstrap protocol, NRI v0.12): not packaged by Debian, unpacked
    /// from `../shared/runtime/containerd-2.3.4` (see [`containerd_23_archive`]).
    V23,
}

impl ContainerdVersion {
    /// The two Debian-packaged lines every suite runs on (2.3 is opt-in per test).
    pub const ALL: [ContainerdVersion; 2] = [ContainerdVersion::V17, ContainerdVersion::V2];

    /// Folder of this version inside the runtime cache.
    fn dir_name(self) -> &'static str {
        match self {
            Self::V17 => "containerd-1.7",
            Self::V2 => "containerd-2",
            Self::V23 => CONTAINERD_23,
        }
    }

    /// Prefix the CRI `runtime_version` starts with.
    pub fn version_prefix(self) -> &'static str {
        match self {
            Self::V17 => "1.7.",
            Self::V2 => "2.",
            // Built with `-X version.Version=v2.3.4`.
            Self::V23 => "v2.3.",
        }
    }

    /// Short tag usable in names (`v17`, `v2`, `v23`).
    pub fn tag(self) -> &'static str {
        match self {
            Self::V17 => "v17",
            Self::V2 => "v2",
            Self::V23 => "v23",
        }
    }

    /// Whether this line reads a version 3 config (CRI plugin ids `io.containerd.cri.v1.*`).
    pub fn config_v3(self) -> bool {
        !matches!(self, Self::V17)
    }

    /// The version a driver's command-line argument names: `1.7`, `2` (or `2.x`, the
    /// default when absent) or `2.3`.
    pub fn from_arg(arg: Option<&str>) -> Result<ContainerdVersion> {
        match arg {
            None | Some("2") | Some("2.x") => Ok(Self::V2),
            Some("1.7") => Ok(Self::V17),
            Some("2.3") => Ok(Self::V23),
            Some(other) => bail!("unknown containerd version '{other}' (1.7, 2 or 2.3)"),
        }
    }
}

/// Name of the 2.3 release: its folder in `../shared/runtime` and in the cache.
const CONTAINERD_23: &str = "containerd-2.3.4";

/// The containerd 2.3.4 archive: `$NRI_CHAOS_CONTAINERD_23`, else
/// `<workspace>/../shared/runtime/containerd-2.3.4/containerd-2.3.4.tar.xz`.
pub fn containerd_23_archive() -> PathBuf {
    match std::env::var_os("NRI_CHAOS_CONTAINERD_23") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root()
            .parent()
            .unwrap_or(Path::new("/"))
            .join("shared/runtime")
            .join(CONTAINERD_23)
            .join(format!("{CONTAINERD_23}.tar.xz")),
    }
}

/// `None` when containerd 2.3.4 can run here, else why not (the archive is absent).
pub fn containerd_23_missing() -> Option<String> {
    let archive = containerd_23_archive();
    (!archive.is_file()).then(|| {
        format!(
            "containerd 2.3.4 binaries absent ({} not found; set NRI_CHAOS_CONTAINERD_23)",
            archive.display()
        )
    })
}

impl fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V17 => "containerd 1.7",
            Self::V2 => "containerd 2.x",
            Self::V23 => "containerd 2.3.4",
        })
    }
}

/// Package versions recorded in `versions.env` by the fetch script.
#[derive(Debug, Clone, Default)]
pub struct RuntimeVersions {
    pub containerd_17: String,
    pub containerd_2: String,
    pub runc: String,
    pub cni: String,
    pub busybox: String,
}

/// A resolved, complete runtime cache.
#[derive(Debug, Clone)]
pub struct Runtime {
    cache: PathBuf,
    root: PathBuf,
    pub versions: RuntimeVersions,
}

/// The workspace root (parent of this crate's folder).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Holds an exclusive flock on a directory for its lifetime.
struct DirLock(std::fs::File);

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self> {
        let f = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
        loop {
            // SAFETY: flock on a file descriptor owned by `f`, which outlives the call.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Self(f));
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("flock {}", dir.display()));
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor we own; closing it would unlock as well.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl Runtime {
    /// The cache directory: `$NRI_CHAOS_CACHE`, else `<workspace>/.cache`.
    pub fn cache_dir() -> PathBuf {
        match std::env::var_os("NRI_CHAOS_CACHE") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => workspace_root().join(".cache"),
        }
    }

    /// Resolves the runtime cache, running `tests/scripts/fetch-runtime.sh` when it is not
    /// complete and building the test images when missing. Serialised across processes with
    /// a flock on the cache directory. Blocking (may download for a minute on a clean clone).
    pub fn ensure() -> Result<Runtime> {
        let cache = Self::cache_dir();
        std::fs::create_dir_all(&cache)
            .with_context(|| format!("creating runtime cache {}", cache.display()))?;
        let _lock = DirLock::acquire(&cache)?;
        let root = cache.join("runtime");
        if !root.join(".complete-v1").exists() {
            let script = workspace_root().join("tests/scripts/fetch-runtime.sh");
            eprintln!(
                "[nri-chaos-tests] runtime cache incomplete, running {} {}",
                script.display(),
                cache.display()
            );
            let status = std::process::Command::new("bash")
                .arg(&script)
                .arg(&cache)
                .stdout(std::process::Stdio::inherit())
                .stderr(std::process::Stdio::inherit())
                .status()
                .with_context(|| format!("running {}", script.display()))?;
            if !status.success() {
                bail!("{} {} failed: {status}", script.display(), cache.display());
            }
            if !root.join(".complete-v1").exists() {
                bail!(
                    "{} finished but {} is not complete",
                    script.display(),
                    root.display()
                );
            }
        }
        let versions = read_versions(&root.join("versions.env"))?;
        let rt = Runtime {
            cache,
            root,
            versions,
        };
        for (what, p) in [
            ("containerd 1.7", rt.containerd(ContainerdVersion::V17)),
            ("containerd 2.x", rt.containerd(ContainerdVersion::V2)),
            ("runc", rt.runc()),
            ("busybox", rt.busybox()),
            ("CNI bridge", rt.cni_dir().join("bridge")),
        ] {
            if !p.is_file() {
                bail!(
                    "runtime cache {}: {what} missing at {} (delete the cache and rerun)",
                    rt.root.display(),
                    p.display()
                );
            }
        }
        images::ensure_images(&rt)?;
        Ok(rt)
    }

    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// `<cache>/runtime`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `usr/bin` of a containerd version (containerd, ctr, containerd-shim-runc-v2).
    pub fn bin_dir(&self, v: ContainerdVersion) -> PathBuf {
        match v {
            // The 2.3 archive holds the three binaries flat.
            ContainerdVersion::V23 => self.root.join(v.dir_name()),
            _ => self.root.join(v.dir_name()).join("usr/bin"),
        }
    }

    /// Unpacks containerd 2.3.4 into the cache (once, under the cache flock) and checks the
    /// binaries against the archive's `SHA256SUMS`. Fails loudly when the archive is absent.
    pub fn ensure_containerd_23(&self) -> Result<()> {
        let dir = self.bin_dir(ContainerdVersion::V23);
        if dir.join(".complete").exists() {
            return Ok(());
        }
        if let Some(why) = containerd_23_missing() {
            bail!("{why}");
        }
        let _lock = DirLock::acquire(&self.cache)?;
        if dir.join(".complete").exists() {
            return Ok(());
        }
        let archive = containerd_23_archive();
        let tmp = self.root.join(format!(".{CONTAINERD_23}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        run_checked(
            std::process::Command::new("tar")
                .arg("-xJf")
                .arg(&archive)
                .arg("-C")
                .arg(&tmp),
        )?;
        if let Some(sums) = archive.parent().map(|d| d.join("SHA256SUMS")) {
            if sums.is_file() {
                run_checked(
                    std::process::Command::new("sha256sum")
                        .arg("--check")
                        .arg("--quiet")
                        .arg(&sums)
                        .current_dir(&tmp),
                )?;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("moving {} to {}", tmp.display(), dir.display()))?;
        std::fs::write(dir.join(".complete"), archive.display().to_string())?;
        Ok(())
    }

    pub fn containerd(&self, v: ContainerdVersion) -> PathBuf {
        self.bin_dir(v).join("containerd")
    }

    pub fn ctr(&self, v: ContainerdVersion) -> PathBuf {
        self.bin_dir(v).join("ctr")
    }

    pub fn shim(&self, v: ContainerdVersion) -> PathBuf {
        self.bin_dir(v).join("containerd-shim-runc-v2")
    }

    pub fn runc(&self) -> PathBuf {
        self.root.join("runc/usr/sbin/runc")
    }

    /// Directory of the CNI plugin binaries (bridge, host-local, loopback, ...).
    pub fn cni_dir(&self) -> PathBuf {
        self.root.join("cni/usr/lib/cni")
    }

    /// The static busybox binary.
    pub fn busybox(&self) -> PathBuf {
        self.root.join("busybox/bin/busybox")
    }

    /// Package version of a containerd line.
    pub fn containerd_version(&self, v: ContainerdVersion) -> &str {
        match v {
            ContainerdVersion::V17 => &self.versions.containerd_17,
            ContainerdVersion::V2 => &self.versions.containerd_2,
            ContainerdVersion::V23 => "2.3.4",
        }
    }

    /// The OCI archive holding the busybox workload image and the pause image.
    pub fn images_archive(&self) -> PathBuf {
        images::archive_path(self)
    }
}

/// Runs `cmd`, failing with its output when it does not succeed.
pub fn run_checked(cmd: &mut std::process::Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("spawning {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

fn read_versions(path: &Path) -> Result<RuntimeVersions> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let map: HashMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |k: &str| map.get(k).map(|s| s.to_string()).unwrap_or_default();
    Ok(RuntimeVersions {
        containerd_17: get("CONTAINERD_17_VERSION"),
        containerd_2: get("CONTAINERD_2_VERSION"),
        runc: get("RUNC_VERSION"),
        cni: get("CNI_VERSION"),
        busybox: get("BUSYBOX_VERSION"),
    })
}

/// The resolved node environment, for test logs.
#[derive(Debug, Clone)]
pub struct NodeEnv {
    pub cache: PathBuf,
    pub versions: RuntimeVersions,
    pub kernel: String,
}

impl NodeEnv {
    pub fn from_runtime(rt: &Runtime) -> Self {
        Self {
            cache: rt.root.clone(),
            versions: rt.versions.clone(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }

    /// Resolves the runtime (see [`Runtime::ensure`]) and prints the environment.
    pub fn print() -> Result<NodeEnv> {
        let env = Self::from_runtime(&Runtime::ensure()?);
        eprintln!("{env}");
        Ok(env)
    }
}

impl fmt::Display for NodeEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "[nri-chaos-tests] node environment ({})",
            self.cache.display()
        )?;
        writeln!(f, "  containerd 1.7 : {}", self.versions.containerd_17)?;
        writeln!(f, "  containerd 2.x : {}", self.versions.containerd_2)?;
        writeln!(f, "  runc           : {}", self.versions.runc)?;
        writeln!(f, "  CNI plugins    : {}", self.versions.cni)?;
        writeln!(f, "  busybox        : {}", self.versions.busybox)?;
        write!(f, "  kernel         : {}", self.kernel)
    }
}

/// The `nri-chaos` plugin binary: `$NRI_CHAOS_BIN`, else the newest of
/// `<target>/{debug,release}/nri-chaos`.
pub fn try_plugin_binary() -> Result<PathBuf> {
    built_binary("nri-chaos", "NRI_CHAOS_BIN", "nri-chaos-plugin")
}

/// The shim wrapper `containerd-shim-nri-chaos-v2`: `$NRI_CHAOS_SHIM_BIN`, else the newest of
/// `<target>/{debug,release}/containerd-shim-nri-chaos-v2`.
pub fn try_shim_wrapper_binary() -> Result<PathBuf> {
    built_binary(
        SHIM_WRAPPER_BIN,
        "NRI_CHAOS_SHIM_BIN",
        "nri-chaos-shim-wrapper",
    )
}

/// File name of the shim wrapper binary.
pub const SHIM_WRAPPER_BIN: &str = "containerd-shim-nri-chaos-v2";

/// Binary `name` of workspace package `package`: `$<env>`, else the newest of
/// `<target>/{debug,release}/<name>`.
fn built_binary(name: &str, env: &str, package: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{env}={} does not exist", p.display());
        }
        return Ok(p);
    }
    let mut targets = vec![workspace_root().join("target")];
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR").filter(|p| !p.is_empty()) {
        targets.insert(0, PathBuf::from(t));
    }
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = targets
        .iter()
        .flat_map(|t| ["debug", "release"].map(|p| t.join(p).join(name)))
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?.modified().ok()?;
            Some((m, p))
        })
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some((_, p)) => Ok(p),
        None => bail!(
            "the {name} binary was not found (looked in {}/{{debug,release}}/{name}; \
             set {env} to override): build it with cargo build -p {package}",
            targets
                .iter()
                .map(|t| t.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Like [`try_plugin_binary`] but panics with the "build it with cargo build -p
/// nri-chaos-plugin" message when there is none.
pub fn plugin_binary() -> PathBuf {
    match try_plugin_binary() {
        Ok(p) => p,
        Err(e) => panic!("{e:#}"),
    }
}
