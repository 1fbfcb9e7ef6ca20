//! Test images built locally (no registry is reachable): one OCI archive with two images
//! sharing one uncompressed layer (static busybox + applet links):
//! - the busybox workload image ([`BUSYBOX_IMAGE`], default command `sh`);
//! - the pause image ([`PAUSE_IMAGE`]) running a shell that exits at once on SIGTERM/SIGINT
//!   (SIGKILL ends it anyway).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::runtime::Runtime;
use crate::util::run;

pub const BUSYBOX_IMAGE: &str = "docker.io/nri-chaos/busybox:e2e";
pub const PAUSE_IMAGE: &str = "docker.io/nri-chaos/pause:e2e";

/// Bump when the image content changes.
const IMAGES_VERSION: &str = "v1";

const PAUSE_SCRIPT: &str = "trap 'exit 0' TERM INT; sleep 2147483647 & wait";

pub(crate) fn archive_path(rt: &Runtime) -> PathBuf {
    rt.cache()
        .join("images")
        .join(format!("nri-chaos-images-{IMAGES_VERSION}.tar"))
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_list(items: &[&str]) -> String {
    let v: Vec<String> = items.iter().map(|s| json_str(s)).collect();
    format!("[{}]", v.join(","))
}

fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Writes `data` as a content-addressed blob; returns (digest, size).
fn put_blob(blobs: &Path, data: &[u8]) -> Result<(String, usize)> {
    let tmp = blobs.join("incoming");
    std::fs::write(&tmp, data)?;
    let hex = sha256_file(&tmp)?;
    std::fs::rename(&tmp, blobs.join(&hex))?;
    Ok((format!("sha256:{hex}"), data.len()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let out = run(Command::new("sha256sum").arg(path))?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .with_context(|| format!("sha256sum {}: no output", path.display()))
}

/// Builds the images archive into the cache if missing. Called with the cache lock held.
pub(crate) fn ensure_images(rt: &Runtime) -> Result<()> {
    let archive = archive_path(rt);
    if archive.is_file() {
        return Ok(());
    }
    let dir = rt.cache().join("images");
    let work = dir.join(format!("build-{IMAGES_VERSION}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    build(rt, &work).with_context(|| format!("building test images in {}", work.display()))?;
    let tmp = dir.join(format!("nri-chaos-images-{IMAGES_VERSION}.tar.partial"));
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&tmp)
        .arg("-C")
        .arg(work.join("layout"))
        .args(["oci-layout", "index.json", "blobs"]))?;
    std::fs::rename(&tmp, &archive)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn build(rt: &Runtime, work: &Path) -> Result<()> {
    // Root filesystem: /bin/busybox plus a symlink per applet.
    let rootfs = work.join("rootfs");
    for d in [
        "bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run",
    ] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy(rt.busybox(), rootfs.join("bin/busybox"))?;
    let list = run(Command::new(rt.busybox()).arg("--list"))?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    let layer = work.join("layer.tar");
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "--mtime=@0",
            "-cf",
        ])
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs)
        .arg("."))?;

    let layout = work.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let layer_hex = sha256_file(&layer)?;
    let layer_size = std::fs::metadata(&layer)?.len();
    std::fs::rename(&layer, blobs.join(&layer_hex))?;
    let layer_digest = format!("sha256:{layer_hex}");

    let arch = goarch();
    let mut manifests = Vec::new();
    for (name, cmd) in [
        (BUSYBOX_IMAGE, vec!["sh"]),
        (PAUSE_IMAGE, vec!["sh", "-c", PAUSE_SCRIPT]),
    ] {
        let config = format!(
            concat!(
                r#"{{"architecture":"{arch}","os":"linux","#,
                r#""config":{{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":{cmd},"WorkingDir":"/"}},"#,
                r#""rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
            ),
            arch = arch,
            cmd = json_list(&cmd),
            diff = layer_digest
        );
        let (config_digest, config_size) = put_blob(&blobs, config.as_bytes())?;
        let manifest = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"#,
                r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls}}}]}}"#
            ),
            cd = config_digest,
            cs = config_size,
            ld = layer_digest,
            ls = layer_size
        );
        let (md, ms) = put_blob(&blobs, manifest.as_bytes())?;
        let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
        manifests.push(format!(
            concat!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{ms},"#,
                r#""platform":{{"architecture":"{arch}","os":"linux"}},"#,
                r#""annotations":{{"io.containerd.image.name":{name},"org.opencontainers.image.ref.name":{tag}}}}}"#
            ),
            md = md,
            ms = ms,
            arch = arch,
            name = json_str(name),
            tag = json_str(tag)
        ));
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
        manifests.join(",")
    );
    std::fs::write(layout.join("index.json"), index)?;
    Ok(())
}
