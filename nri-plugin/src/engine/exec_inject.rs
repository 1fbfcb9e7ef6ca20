//! `exec` faults injected by `ctl inject` into running containers of wrapped pods: each
//! container's injected plan is a file `<exec dir>/<container id>.json` that its shim wrapper
//! looks for ([`injector::exec_inject`]: the directory is known to both sides, so a container
//! without a fault gets no plan annotation at its creation).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use injector::hookplan::{HookPlan, PlannedFault, PLAN_VERSION};
use injector::FaultKind;

use super::runner::Target;
use super::state::ArmedFault;
use super::{introspect, Inner};

/// At start: injected exec faults of a previous run end with it, as its other injected
/// faults do (the wrappers see their files go). Only the containers' files are removed, never
/// the directory (a node setting may name a shared one); it is made here, so a directory
/// nri-chaos cannot write is logged at start rather than at the first `ctl inject`.
pub(crate) fn clear_exec_injections(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if injector::exec_inject::is_inject_file(&entry.file_name()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if let Err(err) = std::fs::create_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %err, "the directory for exec faults injected with ctl inject cannot be made; ctl inject of an exec fault will fail");
    }
}

/// `ctl inject` of an `exec` fault into a running container of a wrapped pod: its plan is
/// written to the file the container's wrapper looks for; the fault holds until it is stopped (`ctl recover`, the
/// container's end), which removes the file. Runs on the control socket, not in an NRI
/// handler.
pub(super) fn inject_exec(
    inner: &Arc<Inner>,
    target: &Target,
    key: &str,
    value: &str,
) -> Result<ArmedFault, String> {
    let path = injector::exec_inject::file(&inner.exec_dir, &target.container_id)
        .ok_or_else(|| format!("container id {:?} is not a file name", target.container_id))?;
    let plan = HookPlan {
        version: PLAN_VERSION,
        faults: vec![PlannedFault {
            kind: FaultKind::Exec.as_str().to_string(),
            key: key.to_string(),
            value: value.to_string(),
        }],
    };
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, plan.encode())?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|err| {
        format!(
            "writing the exec plan for the shim wrapper to {}: {err}",
            path.display()
        )
    })?;
    let id = inner.next_fault_id.fetch_add(1, Ordering::Relaxed);
    let record = introspect::NewFault {
        id,
        pod: &target.pod,
        container: &target.container,
        container_id: &target.container_id,
        kind: FaultKind::Exec,
        value,
        source: "ctl",
        holds: true,
    };
    Ok(inner.handed_to_shim(record, target, Some(path)))
}
