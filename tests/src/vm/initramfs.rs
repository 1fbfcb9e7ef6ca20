//! The VM's initramfs: static busybox with its applet links, kernel modules (with the
//! dependencies named in each module's `.modinfo`), host binaries with their `ldd` libraries,
//! and an `/init` script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::cpio::CpioWriter;

/// An initramfs being assembled.
#[derive(Debug)]
pub struct Initramfs {
    cpio: CpioWriter,
    modules: Vec<String>,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::new()
    }
}

/// The shared libraries `ldd` lists for `binary` (the dynamic loader included); none for a
/// static binary.
pub fn ldd_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    ldd_libraries_in(binary, None)
}

/// [`ldd_libraries`] with `LD_LIBRARY_PATH` set to `libs` (libraries unpacked from packages).
pub fn ldd_libraries_in(binary: &Path, libs: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut ldd = Command::new("ldd");
    if let Some(libs) = libs {
        ldd.env("LD_LIBRARY_PATH", libs);
    }
    let out = ldd
        .arg(binary)
        .output()
        .with_context(|| format!("running ldd {}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), text.trim());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("ldd {}: {line}", binary.display());
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`
        let path = match line.split_once("=>") {
            Some((_, right)) => right.trim().split(' ').next().unwrap_or(""),
            None => line.split(' ').next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// The `depends=` list in a kernel module's `.modinfo` strings.
fn module_depends(ko: &[u8]) -> Vec<String> {
    let needle = b"depends=";
    ko.windows(needle.len())
        .position(|w| w == needle)
        .map(|at| {
            let rest = &ko[at + needle.len()..];
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Every module file under `dir`, by module name (`-` and `_` are the same to the kernel).
fn module_index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if let Some(stem) = name.strip_suffix(".ko") {
                    index.insert(stem.replace('-', "_"), path.clone());
                } else if name.ends_with(".ko.xz") || name.ends_with(".ko.zst") {
                    bail!(
                        "{}: compressed modules are not supported by this builder",
                        path.display()
                    );
                }
            }
        }
    }
    Ok(index)
}

impl Initramfs {
    /// An empty tree with the usual mount points.
    pub fn new() -> Self {
        let mut cpio = CpioWriter::new();
        for dir in [
            "proc", "sys", "dev", "run", "tmp", "etc", "root", "var", "mnt",
        ] {
            cpio.dir(dir, 0o755);
        }
        cpio.symlink("var/run", "../run");
        Initramfs {
            cpio,
            modules: Vec::new(),
        }
    }

    /// A host file copied to `dest` with `perm`.
    pub fn copy(&mut self, src: &Path, dest: &str, perm: u32) -> Result<()> {
        let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        self.cpio.file(dest, perm, &data);
        Ok(())
    }

    /// Literal file contents.
    pub fn write(&mut self, dest: &str, perm: u32, data: &[u8]) {
        self.cpio.file(dest, perm, data);
    }

    /// A host binary at `dest`, with every library `ldd` names at its own path.
    pub fn binary(&mut self, src: &Path, dest: &str) -> Result<()> {
        self.copy(src, dest, 0o755)?;
        self.libraries(ldd_libraries(src)?, None)
    }

    /// `libs` at their own paths, or at their paths inside `root` for those under it.
    fn libraries(&mut self, libs: Vec<PathBuf>, root: Option<&Path>) -> Result<()> {
        for lib in libs {
            let real = std::fs::canonicalize(&lib).unwrap_or(lib.clone());
            let inside = root.and_then(|r| lib.strip_prefix(r).ok());
            let dest = inside.unwrap_or(&lib).to_string_lossy().into_owned();
            if !self.cpio.contains(&dest) {
                self.copy(&real, &dest, 0o755)?;
            }
        }
        Ok(())
    }

    /// A binary unpacked under `root` (a `dpkg -x` tree) at its path `rel` in that tree, with
    /// its libraries: those `ldd` finds under `root/usr/lib/x86_64-linux-gnu` at their path in
    /// the tree, the host's at their own.
    pub fn binary_in_root(&mut self, root: &Path, rel: &str) -> Result<()> {
        let src = root.join(rel);
        self.copy(&src, rel, 0o755)?;
        let libs = root.join("usr/lib/x86_64-linux-gnu");
        self.libraries(ldd_libraries_in(&src, Some(&libs))?, Some(root))
    }

    /// Every regular file of directory `rel` under `root`, at `rel` (plugins such as the
    /// xtables extensions, which are loaded by path and so not named by `ldd`).
    pub fn dir_in_root(&mut self, root: &Path, rel: &str) -> Result<()> {
        let dir = root.join(rel);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(name) = path.file_name() else {
                continue;
            };
            if path.is_file() {
                let dest = format!("{rel}/{}", name.to_string_lossy());
                self.copy(&path, &dest, 0o644)?;
            }
        }
        Ok(())
    }

    /// Static busybox at `/bin/busybox` with a link for every applet (`--list-full`), except
    /// paths already present (add real tools such as `ip` first).
    pub fn busybox(&mut self, busybox: &Path) -> Result<()> {
        self.copy(busybox, "bin/busybox", 0o755)?;
        let out = Command::new(busybox)
            .arg("--list-full")
            .output()
            .with_context(|| format!("running {} --list-full", busybox.display()))?;
        if !out.status.success() {
            bail!("{} --list-full failed", busybox.display());
        }
        for applet in String::from_utf8_lossy(&out.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            let name = applet.rsplit('/').next().unwrap_or(applet);
            // Tools added from the host win over applets of the same name anywhere.
            if ["ip", "tc", "nsenter"].contains(&name) {
                continue;
            }
            self.cpio.symlink(applet, "/bin/busybox");
        }
        Ok(())
    }

    /// Kernel module `name` from `modules_dir` (`/lib/modules/<release>`) and, first, its
    /// dependencies; they are loaded by `/init` in that order from `/modules/`.
    pub fn module(&mut self, modules_dir: &Path, name: &str) -> Result<()> {
        let index = module_index(modules_dir)?;
        self.module_with(&index, name, 0)
    }

    fn module_with(
        &mut self,
        index: &BTreeMap<String, PathBuf>,
        name: &str,
        depth: usize,
    ) -> Result<()> {
        let key = name.replace('-', "_");
        if self.modules.contains(&key) {
            return Ok(());
        }
        if depth > 16 {
            bail!("module dependency loop at {name}");
        }
        let path = index
            .get(&key)
            .with_context(|| format!("no module {name} in the kernel's module tree"))?;
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for dep in module_depends(&data) {
            self.module_with(index, &dep, depth + 1)?;
        }
        self.cpio.file(&format!("modules/{key}.ko"), 0o644, &data);
        self.modules.push(key);
        Ok(())
    }

    /// The modules in load order.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }

    /// The archive, with `/init` running `suite` between the sentinels
    /// [`super::SUITE_START`] and [`super::SUITE_EXIT`]` rc=<code>`.
    pub fn finish(mut self, suite: &str) -> Vec<u8> {
        let init = self.init_script(suite, "");
        self.cpio.file("init", 0o755, init.as_bytes());
        self.cpio.finish()
    }

    /// Like [`Initramfs::finish`], but `/init` first copies the whole tree onto a tmpfs and
    /// `switch_root`s into it, where `/init2` runs the suite: runc cannot `pivot_root` out of
    /// an initramfs root, so a container node needs this. `env` lines (`export K=V`) are put
    /// before the suite.
    pub fn finish_switch_root(mut self, suite: &str, env: &str) -> Vec<u8> {
        let stage1 = "#!/bin/sh\n\
             export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
             mkdir -p /newroot\n\
             mount -t tmpfs -o size=1600m,mode=0755 tmpfs /newroot\n\
             for d in /*; do\n\
             \x20 case $d in\n\
             \x20   /newroot) ;;\n\
             \x20   /proc|/sys|/dev|/run|/tmp|/mnt) mkdir -p /newroot$d ;;\n\
             \x20   *) cp -a $d /newroot/ || echo 'ASSERT initramfs_copy fail cp '$d ;;\n\
             \x20 esac\n\
             done\n\
             exec switch_root /newroot /init2\n";
        self.cpio.dir("newroot", 0o755);
        let init = self.init_script(suite, env);
        self.cpio.file("init2", 0o755, init.as_bytes());
        self.cpio.file("init", 0o755, stage1.as_bytes());
        self.cpio.finish()
    }

    fn init_script(&self, suite: &str, env: &str) -> String {
        let mut init = String::from(
            "#!/bin/sh\n\
             export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sysfs /sys\n\
             mount -t devtmpfs devtmpfs /dev\n\
             mount -t tmpfs tmpfs /run\n\
             mount -t tmpfs tmpfs /tmp\n\
             mount -t cgroup2 cgroup2 /sys/fs/cgroup\n\
             ip link set lo up\n",
        );
        for m in &self.modules {
            init.push_str(&format!(
                "insmod /modules/{m}.ko || echo 'ASSERT insmod_{m} fail insmod failed'\n"
            ));
        }
        init.push_str(env);
        init.push_str(&format!(
            "echo {start}\n\
             {suite}\n\
             echo \"{exit} rc=$?\"\n\
             poweroff -f\n",
            start = super::SUITE_START,
            exit = super::SUITE_EXIT,
        ));
        init
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_depends_are_read() {
        let ko = b"\x7fELF....license=GPL\0depends=a,b-c\0intree=Y\0";
        assert_eq!(module_depends(ko), ["a", "b-c"]);
        assert!(module_depends(b"depends=\0").is_empty());
    }
}
