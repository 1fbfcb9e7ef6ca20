//! Finding a container's cgroup directories: from `/proc/<pid>/cgroup` of a running process,
//! or from NRI's `cgroups_path` (cgroupfs or systemd form) before the container runs.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::{CgroupError, CgroupFs, CgroupLayout, ContainerCgroup};

fn malformed(what: &str, value: &str, reason: impl Into<String>) -> CgroupError {
    CgroupError::Malformed {
        what: what.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Checks an absolute cgroup path (`/kubepods/pod1/abc`) and returns it relative (no leading
/// `/`), refusing `..` and `.` components.
fn relative(what: &str, path: &str) -> Result<PathBuf, CgroupError> {
    if !path.starts_with('/') {
        return Err(malformed(what, path, "not an absolute cgroup path"));
    }
    let mut rel = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::RootDir => {}
            Component::Normal(part) => rel.push(part),
            _ => return Err(malformed(what, path, "has a '.' or '..' component")),
        }
    }
    Ok(rel)
}

/// Expands a systemd slice name into its cgroup path the way systemd does:
/// `kubepods-burstable-pod1.slice` -> `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`;
/// `-.slice` is the root `/`.
pub fn systemd_slice_path(slice: &str) -> Result<String, CgroupError> {
    let what = "systemd slice";
    let Some(name) = slice.strip_suffix(".slice") else {
        return Err(malformed(what, slice, "does not end in .slice"));
    };
    if name.is_empty() || slice.contains('/') {
        return Err(malformed(what, slice, "is not a slice unit name"));
    }
    if name == "-" {
        return Ok("/".to_string());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(malformed(
                what,
                slice,
                "has an empty component (leading, trailing or doubled '-')",
            ));
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

/// Turns NRI's `cgroups_path` into an absolute cgroup path: cgroupfs form is taken as is,
/// systemd form `<slice>:<prefix>:<name>` becomes `<expanded slice>/<prefix>-<name>.scope`.
fn cgroup_path_of(cgroups_path: &str) -> Result<String, CgroupError> {
    let what = "cgroups path";
    if cgroups_path.starts_with('/') {
        return Ok(cgroups_path.to_string());
    }
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else {
        return Err(malformed(
            what,
            cgroups_path,
            "is neither a cgroupfs path (/kubepods/...) nor systemd form <slice>:<prefix>:<name>",
        ));
    };
    if name.is_empty() {
        return Err(malformed(
            what,
            cgroups_path,
            "systemd form has an empty name",
        ));
    }
    // runc's default parent for the systemd driver.
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let parent = systemd_slice_path(slice)?;
    let unit = if name.ends_with(".slice") {
        (*name).to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    if unit.contains('/') {
        return Err(malformed(what, cgroups_path, "unit name contains '/'"));
    }
    Ok(format!("{}/{unit}", parent.trim_end_matches('/')))
}

/// The container's cgroups from NRI's `LinuxContainer.cgroups_path` (computed, not checked:
/// at CreateContainer the directories do not exist yet). On v1 and hybrid hosts the container
/// is placed in every mounted v1 controller hierarchy (as runc does); on hybrid and v2 hosts
/// also in the v2 hierarchy.
pub fn resolve_from_nri(fs: &CgroupFs, cgroups_path: &str) -> Result<ContainerCgroup, CgroupError> {
    let path = cgroup_path_of(cgroups_path)?;
    let rel = relative("cgroups path", &path)?;
    let layout = fs.layout()?;
    let v1 = match layout {
        CgroupLayout::V2 => BTreeMap::new(),
        CgroupLayout::V1 | CgroupLayout::Hybrid => fs
            .v1_hierarchies()?
            .into_iter()
            .map(|(controller, dir)| (controller, dir.join(&rel)))
            .collect(),
    };
    let unified = fs.unified_root(layout).map(|root| root.join(&rel));
    Ok(ContainerCgroup {
        layout,
        v1,
        unified,
    })
}

/// The cgroups of running process `pid`, from `<proc_root>/<pid>/cgroup`
/// (`hierarchy-id:controller-list:path` lines; `0::path` is the v2 hierarchy; named
/// hierarchies such as `name=systemd` and controllers not mounted under the root are ignored).
pub fn resolve_from_proc(
    fs: &CgroupFs,
    proc_root: &Path,
    pid: u32,
) -> Result<ContainerCgroup, CgroupError> {
    let file = proc_root.join(pid.to_string()).join("cgroup");
    let text = std::fs::read_to_string(&file).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
            CgroupError::ProcessGone {
                pid,
                path: file.clone(),
            }
        } else {
            CgroupError::Io {
                op: "read",
                path: file.clone(),
                source,
            }
        }
    })?;
    let layout = fs.layout()?;
    let hierarchies = match layout {
        CgroupLayout::V2 => BTreeMap::new(),
        _ => fs.v1_hierarchies()?,
    };
    let what = format!("{} line", file.display());
    let mut v1 = BTreeMap::new();
    let mut unified = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(malformed(
                &what,
                line,
                "expected hierarchy-id:controllers:path",
            ));
        };
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if id.parse::<u32>().is_err() {
            return Err(malformed(&what, line, "hierarchy id is not a number"));
        }
        let rel = relative(&what, path)?;
        if controllers.is_empty() {
            if id == "0" {
                unified = fs.unified_root(layout).map(|root| root.join(&rel));
            }
            continue;
        }
        for controller in controllers.split(',') {
            if controller.starts_with("name=") {
                continue;
            }
            if let Some(dir) = hierarchies.get(controller) {
                v1.insert(controller.to_string(), dir.join(&rel));
            }
        }
    }
    if v1.is_empty() && unified.is_none() {
        return Err(malformed(
            &file.display().to_string(),
            text.trim(),
            format!("names no hierarchy mounted under {}", fs.root().display()),
        ));
    }
    Ok(ContainerCgroup {
        layout,
        v1,
        unified,
    })
}
