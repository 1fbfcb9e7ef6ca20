//! Which faults the hook executes: the plan the plugin wrote ([`PLAN_ANNOTATION`]), or, when
//! the hook is installed standalone (hooks.d, runc directly), our fault annotations on the
//! container, planned with the same grammar and the default policy.

use std::collections::HashMap;

use injector::hookplan::{hook_point, HookPlan, HookPlanError, PLAN_ANNOTATION};
use injector::{plan_container, FaultRequest, PodRef, Policy};

/// Container-name annotations, containerd CRI first, then CRI-O / kubelet.
const NAME_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.cri.container-name",
    "io.kubernetes.container.name",
];
/// Pod namespace annotations (the default policy refuses `kube-system`).
const NAMESPACE_ANNOTATIONS: &[&str] = &[
    "io.kubernetes.cri.sandbox-namespace",
    "io.kubernetes.pod.namespace",
];
/// Pod name annotations.
const POD_NAME_ANNOTATIONS: &[&str] = &["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"];

/// Where the faults came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The plugin's plan: policy, `count` and `probability` were already decided.
    Plugin,
    /// Our annotations read by the hook itself (default policy; `count` is not tracked, the
    /// hook draws `probability` itself).
    Standalone,
}

/// One fault to execute and the annotation it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct HookFault {
    /// The fault.
    pub request: FaultRequest,
    /// The annotation value, as written (for messages).
    pub value: String,
}

/// The faults for this container.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Plugin plan or standalone.
    pub source: Source,
    /// Faults the hook executes (some hook point).
    pub faults: Vec<HookFault>,
    /// Standalone: our annotations that were refused (printed as warnings; the container
    /// runs unharmed).
    pub warnings: Vec<String>,
}

fn first<'a>(annotations: &'a HashMap<String, String>, keys: &[&str]) -> &'a str {
    keys.iter()
        .find_map(|k| annotations.get(*k))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Resolves the faults of a container from its OCI annotations. `host_network`: the container
/// shares the host's network (see [`crate::oci::network`]); standalone, the policy then
/// refuses `netem` with its reason, as the plugin's does for a hostNetwork pod. The plugin's
/// plan was already judged with the pod's real `hostNetwork`.
pub fn resolve(
    annotations: &HashMap<String, String>,
    host_network: bool,
) -> Result<Resolved, HookPlanError> {
    if let Some(text) = annotations.get(PLAN_ANNOTATION) {
        let faults = HookPlan::decode(text)?
            .into_iter()
            .map(|(request, value)| HookFault { request, value })
            .collect();
        return Ok(Resolved {
            source: Source::Plugin,
            faults,
            warnings: Vec::new(),
        });
    }
    let policy = Policy::default();
    let ours: HashMap<String, String> = annotations
        .iter()
        .filter(|(k, _)| k.as_str() != PLAN_ANNOTATION)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let pod = PodRef {
        namespace: first(annotations, NAMESPACE_ANNOTATIONS),
        name: first(annotations, POD_NAME_ANNOTATIONS),
        uid: "",
        annotations: &ours,
        host_network,
    };
    let plan = plan_container(&pod, first(annotations, NAME_ANNOTATIONS), None, &policy);
    let faults = plan
        .faults
        .into_iter()
        .filter(|f| hook_point(f).is_some())
        .map(|request| HookFault {
            value: ours.get(&request.key).cloned().unwrap_or_default(),
            request,
        })
        .collect();
    Ok(Resolved {
        source: Source::Standalone,
        faults,
        warnings: plan.rejections.iter().map(ToString::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use injector::FaultKind;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_plugin_plan_wins() {
        let plan = r#"{"version":1,"faults":[{"kind":"start","key":"start.nri-chaos.io/container.app","value":"{delay: 3s}"}]}"#;
        let resolved = resolve(
            &map(&[
                (PLAN_ANNOTATION, plan),
                ("start.nri-chaos.io", "{fail: {}}"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(resolved.source, Source::Plugin);
        assert_eq!(resolved.faults.len(), 1);
        assert_eq!(
            resolved.faults[0].request.key,
            "start.nri-chaos.io/container.app"
        );
        assert_eq!(resolved.faults[0].value, "{delay: 3s}");
    }

    #[test]
    fn a_broken_plan_is_an_error() {
        let err = resolve(&map(&[(PLAN_ANNOTATION, "garbage")]), false).unwrap_err();
        assert!(err.to_string().contains("not a nri-chaos plan"), "{err}");
    }

    #[test]
    fn standalone_reads_our_annotations() {
        let resolved = resolve(
            &map(&[
                ("start.nri-chaos.io/container.app", "{fail: {exit_code: 3}}"),
                ("start.nri-chaos.io", "{delay: 1s}"),
                ("oom.nri-chaos.io/pod", "{score: 700}"),
                ("kill.nri-chaos.io", "{after: 1s}"),
                ("io.kubernetes.cri.container-name", "app"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(resolved.source, Source::Standalone);
        let kinds: Vec<FaultKind> = resolved.faults.iter().map(|f| f.request.kind).collect();
        // kill is the plugin's business, not the hook's; container.app beats the bare key.
        assert_eq!(kinds, vec![FaultKind::Oom, FaultKind::Start]);
        assert_eq!(resolved.faults[1].value, "{fail: {exit_code: 3}}");
        assert!(resolved.warnings.is_empty());
    }

    #[test]
    fn standalone_without_a_container_name_uses_pod_and_bare_keys() {
        let resolved = resolve(
            &map(&[
                ("start.nri-chaos.io/container.app", "{fail: {}}"),
                ("start.nri-chaos.io", "{delay: 1s}"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(resolved.faults.len(), 1);
        assert_eq!(resolved.faults[0].value, "{delay: 1s}");
    }

    #[test]
    fn standalone_refusals_are_warnings_and_policy_applies() {
        let resolved = resolve(&map(&[("start.nri-chaos.io", "{delay: 1x}")]), false).unwrap();
        assert!(resolved.faults.is_empty());
        assert_eq!(resolved.warnings.len(), 1);
        assert!(
            resolved.warnings[0]
                .starts_with("annotation start.nri-chaos.io: \"{delay: 1x}\": delay"),
            "{:?}",
            resolved.warnings
        );
        let system = resolve(
            &map(&[
                ("start.nri-chaos.io", "{delay: 1s}"),
                ("io.kubernetes.cri.sandbox-namespace", "kube-system"),
            ]),
            false,
        )
        .unwrap();
        assert!(system.faults.is_empty());
        assert!(
            system.warnings[0].contains("kube-system"),
            "{:?}",
            system.warnings
        );
    }

    #[test]
    fn standalone_netem_on_the_host_network_is_refused_with_the_policy_reason() {
        let annotations = map(&[("netem.nri-chaos.io/pod", "{delay: 100ms}")]);
        let own = resolve(&annotations, false).unwrap();
        assert_eq!(own.faults.len(), 1);
        let host = resolve(&annotations, true).unwrap();
        assert!(host.faults.is_empty());
        assert_eq!(
            host.warnings,
            vec!["annotation netem.nri-chaos.io/pod: \"{delay: 100ms}\": netem on a hostNetwork pod would shape the node's own network; refused by policy (allow_netem_host_network = false)"]
        );
        // The plugin's plan was judged with the pod's real hostNetwork: it stands.
        let plan = r#"{"version":1,"faults":[{"kind":"netem","key":"netem.nri-chaos.io/pod","value":"{delay: 100ms}"}]}"#;
        let planned = resolve(&map(&[(PLAN_ANNOTATION, plan)]), true).unwrap();
        assert_eq!(planned.faults.len(), 1);
    }

    #[test]
    fn nothing_for_unannotated_containers() {
        let resolved =
            resolve(&map(&[("io.kubernetes.cri.container-name", "app")]), false).unwrap();
        assert!(resolved.faults.is_empty());
        assert!(resolved.warnings.is_empty());
    }
}
