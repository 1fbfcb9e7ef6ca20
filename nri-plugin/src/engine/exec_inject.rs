//! `exec` faults injected by `ctl inject` into running containers of wrapped pods: each
//! container's injected plan is a file under `<state dir>/exec/` that its shim wrapper
//! watches (named in the container's plan annotation at creation, see [`super::hooks`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use injector::hookplan::{HookPlan, PlannedFault, PLAN_VERSION};
use injector::FaultKind;

use super::runner::Target;
use super::state::ArmedFault;
use super::{introspect, Inner};

/// Where `ctl inject` puts a container's injected exec faults for its shim wrapper:
/// `<state dir>/exec/<container id>.json` (the state dir holds the ledger).
pub(super) fn exec_inject_path(inner: &Inner, container_id: &str) -> PathBuf {
    inner
        .state_dir
        .join("exec")
        .join(format!("{container_id}.json"))
}

/// At start: injected exec faults of a previous run end with it, as its other injected
/// faults do (the wrappers see their files go).
pub(crate) fn clear_exec_injections(state_dir: &Path) {
    let _ = std::fs::remove_dir_all(state_dir.join("exec"));
}

/// `ctl inject` of an `exec` fault into a running container of a wrapped pod: its plan is
/// written to the file the container's wrapper watches (named in the container's plan
/// annotation at creation); the fault holds until it is stopped (`ctl recover`, the
/// container's end), which removes the file. Runs on the control socket, not in an NRI
/// handler.
pub(super) fn inject_exec(
    inner: &Arc<Inner>,
    target: &Target,
    key: &str,
    value: &str,
) -> Result<ArmedFault, String> {
    let path = exec_inject_path(inner, &target.container_id);
    let plan = HookPlan {
        version: PLAN_VERSION,
        faults: vec![PlannedFault {
            kind: FaultKind::Exec.as_str().to_string(),
            key: key.to_string(),
            value: value.to_string(),
        }],
        inject: None,
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
