//! A container's exec faults, read at the task Create from the bundle's `config.json`: the
//! plugin resolved the pod's `exec` annotation (grammar, policy, runtime handler) and wrote it
//! into the OCI annotation `nri-chaos.io/plan`, the plan the OCI hook reads too
//! (`injector::hookplan`). The file is read with the hook's bounded reader
//! (`oci_hooks::oci::BundleConfig`, at most 16 MiB), on tokio's blocking pool (`planning`), off
//! the request path.

use std::path::Path;
use std::time::Instant;

use injector::faults::exec::ExecWindow;
use injector::hookplan::{HookPlan, PLAN_ANNOTATION};
use injector::FaultSpec;
use oci_hooks::oci::BundleConfig;

use crate::execs::Window;

/// The container-name annotation containerd's CRI puts on every container.
const NAME_ANNOTATION: &str = "io.kubernetes.cri.container-name";

/// The exec part of a container's plan.
#[derive(Debug, Clone, Default)]
pub struct ExecPlan {
    /// The container name (the task id when CRI gave none).
    pub name: String,
    /// Its exec faults.
    pub windows: Vec<Window>,
}

/// Errors reading the plan (the container then runs without exec faults).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `config.json` is missing, too large or malformed.
    #[error(transparent)]
    Bundle(#[from] oci_hooks::oci::BundleError),
    /// The plan annotation does not decode.
    #[error(transparent)]
    Plan(#[from] injector::hookplan::HookPlanError),
}

impl ExecPlan {
    /// The exec plan of the container whose bundle is `bundle` (task `id`).
    pub fn read(id: &str, bundle: &Path) -> Result<ExecPlan, PlanError> {
        let config = BundleConfig::read(bundle)?;
        let annotations = config.spec.annotations.unwrap_or_default();
        let name = annotations
            .get(NAME_ANNOTATION)
            .cloned()
            .unwrap_or_else(|| id.to_string());
        let Some(text) = annotations.get(PLAN_ANNOTATION) else {
            return Ok(ExecPlan {
                name,
                ..ExecPlan::default()
            });
        };
        let plan = HookPlan::read(text)?;
        Ok(ExecPlan {
            name,
            windows: exec_windows(&plan, None)?,
        })
    }
}

/// The exec faults of `plan` as windows; `since`: what `after` counts from (`None`: the
/// container's start).
pub fn exec_windows(
    plan: &HookPlan,
    since: Option<Instant>,
) -> Result<Vec<Window>, injector::hookplan::HookPlanError> {
    Ok(plan
        .requests()?
        .into_iter()
        .filter_map(|(req, value)| match req.spec {
            FaultSpec::Exec(fault) => Some(Window {
                origin: format!("{}: {value:?}", req.key),
                since,
                window: ExecWindow::new(fault, req.timing),
            }),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(annotations: serde_json::Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({"ociVersion": "1.0.2", "annotations": annotations});
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        dir
    }

    #[test]
    fn reads_the_exec_faults_of_the_plan() {
        let plan = r#"{"version":1,"faults":[{"kind":"start","key":"start.nri-chaos.io","value":"{delay: 1s}"},{"kind":"exec","key":"exec.nri-chaos.io/container.app","value":"{hang: true, match: healthz}"}]}"#;
        let dir = bundle(serde_json::json!({
            "io.kubernetes.cri.container-name": "app",
            "nri-chaos.io/plan": plan,
        }));
        let p = ExecPlan::read("c1", dir.path()).unwrap();
        assert_eq!(p.name, "app");
        assert_eq!(p.windows.len(), 1);
        assert_eq!(
            p.windows[0].origin,
            "exec.nri-chaos.io/container.app: \"{hang: true, match: healthz}\""
        );
        let none = bundle(serde_json::json!({}));
        let p = ExecPlan::read("c2", none.path()).unwrap();
        assert_eq!((p.name.as_str(), p.windows.len()), ("c2", 0));
    }

    #[test]
    fn bad_plans_and_bundles_are_named() {
        let dir = bundle(serde_json::json!({"nri-chaos.io/plan": "v9;exec"}));
        let err = ExecPlan::read("c1", dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("annotation nri-chaos.io/plan: \"v9;exec\": not a nri-chaos plan"),
            "{err}"
        );
        let missing = tempfile::tempdir().unwrap();
        let err = ExecPlan::read("c1", missing.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
    }
}
