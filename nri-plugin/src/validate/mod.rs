//! `nri-chaos validate`: checks annotations in Kubernetes manifests, and a policy file,
//! offline, with the plugin's own grammar, policy and "supported by this build" screen, so a
//! CI job can lint manifests before they are applied. Each bad annotation is reported with
//! its file, object, key, value and the reason the plugin would log; exit 1 when anything is
//! bad.

mod manifest;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use injector::annotations::{named_container, rejection_text};
use injector::{plan_container, PodRef, Policy, Rejection};

use manifest::PodSpec;
use serde_json::{json, Value};

use crate::ctl::Output;

/// `nri-chaos validate` arguments.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The admin policy (TOML) to check the annotations against (default: the default
    /// policy). Given alone, only the policy file is checked.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Kubernetes manifests (YAML, several documents allowed): Pods, and the pod templates
    /// of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs. `-` reads
    /// standard input.
    pub files: Vec<PathBuf>,
    /// Output format: lines for people, or one JSON document (findings with file, object,
    /// document, key, value and reason).
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    /// The plugin would reject the annotation.
    Bad,
    /// Probably a mistake, but the plugin accepts it.
    Warning,
}

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    /// The file (`<stdin>` for `-`), or `policy <file>`.
    file: String,
    /// `Kind namespace/name` and its 1-based YAML document, for an object.
    object: Option<(String, usize)>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.object {
            None => f.write_str(&self.file),
            Some((object, document)) => {
                write!(f, "{}: {object} (document {document})", self.file)
            }
        }
    }
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    severity: Severity,
    place: Place,
    /// The annotation (key, value), when the finding is about one.
    annotation: Option<(String, String)>,
    /// Why, as the plugin words it.
    reason: String,
}

impl Finding {
    /// The text after the place: `annotation <key>: "<value>": <reason>` for a rejected
    /// annotation, exactly as the plugin logs it.
    fn message(&self) -> String {
        match &self.annotation {
            Some((key, value)) => rejection_text(key, value, &self.reason),
            None => self.reason.clone(),
        }
    }

    fn json(&self) -> Value {
        let (object, document) = match &self.place.object {
            Some((object, document)) => (Some(object.as_str()), Some(*document)),
            None => (None, None),
        };
        let (key, value) = match &self.annotation {
            Some((key, value)) => (Some(key.as_str()), Some(value.as_str())),
            None => (None, None),
        };
        json!({
            "severity": match self.severity { Severity::Bad => "bad", Severity::Warning => "warning" },
            "file": self.place.file,
            "object": object,
            "document": document,
            "key": key,
            "value": value,
            "reason": self.reason,
            "message": self.message(),
        })
    }
}

/// What one run found.
#[derive(Debug, Default)]
struct Report {
    findings: Vec<Finding>,
    files: usize,
    objects: usize,
    annotations: usize,
}

impl Report {
    fn push(
        &mut self,
        severity: Severity,
        place: &Place,
        annotation: Option<(&str, &str)>,
        reason: impl Into<String>,
    ) {
        self.findings.push(Finding {
            severity,
            place: place.clone(),
            annotation: annotation.map(|(key, value)| (key.to_string(), value.to_string())),
            reason: reason.into(),
        });
    }

    /// A problem with a whole file (or the policy).
    fn bad_file(&mut self, file: &str, reason: impl Into<String>) {
        let place = Place {
            file: file.to_string(),
            object: None,
        };
        self.push(Severity::Bad, &place, None, reason);
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    fn render(&self, policy_only: bool, json: bool) -> String {
        let (bad, warnings) = (self.count(Severity::Bad), self.count(Severity::Warning));
        if json {
            let value = json!({
                "ok": bad == 0,
                "files": self.files,
                "objects": self.objects,
                "annotations": self.annotations,
                "bad": bad,
                "warnings": warnings,
                "findings": self.findings.iter().map(Finding::json).collect::<Vec<_>>(),
            });
            return format!("{value:#}\n");
        }
        let mut out = String::new();
        for finding in &self.findings {
            let tag = match finding.severity {
                Severity::Bad => "",
                Severity::Warning => "warning: ",
            };
            let _ = writeln!(out, "{}: {tag}{}", finding.place, finding.message());
        }
        let verdict = if bad == 0 { "ok" } else { "FAILED" };
        if policy_only {
            let _ = writeln!(out, "{verdict}: policy checked, {bad} problem(s)");
        } else {
            let _ = writeln!(
                out,
                "{verdict}: {} file(s), {} object(s) with a pod spec, {} nri-chaos annotation(s): {bad} bad, {warnings} warning(s)",
                self.files, self.objects, self.annotations
            );
        }
        out
    }
}

/// Checks one pod spec: every container gets the plugin's plan (grammar, policy, and what
/// this build executes); each rejected key is reported once.
fn check_pod(spec: &PodSpec, policy: &Policy, place: &Place, report: &mut Report) {
    report.objects += 1;
    let ours = |key: &str| {
        key.split('/').next().is_some_and(|prefix| {
            prefix == policy.domain || prefix.ends_with(&format!(".{}", policy.domain))
        })
    };
    report.annotations += spec.annotations.keys().filter(|key| ours(key)).count();
    for (key, found) in &spec.non_string {
        if ours(key) {
            report.annotations += 1;
            report.push(
                Severity::Bad,
                place,
                None,
                format!("annotation {key}: the value is {found}; Kubernetes annotation values are strings (quote it: '{{...}}')"),
            );
        }
    }
    let pod = PodRef {
        namespace: &spec.namespace,
        name: &spec.name,
        uid: "",
        annotations: &spec.annotations,
        host_network: spec.host_network,
    };
    let unnamed = [manifest::Container {
        name: String::new(),
        memory_limit: None,
    }];
    let containers = if spec.containers.is_empty() {
        &unnamed[..]
    } else {
        &spec.containers[..]
    };
    let mut rejected: BTreeMap<String, Rejection> = BTreeMap::new();
    for container in containers {
        let plan = plan_container(&pod, &container.name, container.memory_limit, policy);
        // No node here, so no OCI hook binary to check; the RuntimeClass of deploy/ has the
        // name of its handler.
        let (_, rejections) = crate::engine::screen(plan, &spec.annotations, |fault| {
            crate::engine::hooks::runtime_problem(None, &spec.runtime_class, fault)
        });
        for rejection in rejections {
            rejected.entry(rejection.key.clone()).or_insert(rejection);
        }
    }
    for rejection in rejected.values() {
        let annotation = (rejection.key.as_str(), rejection.value.as_str());
        report.push(Severity::Bad, place, Some(annotation), &rejection.reason);
    }
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let mut keys: Vec<&String> = spec.annotations.keys().collect();
    keys.sort();
    for key in keys {
        if let Some(name) = named_container(key, &policy.domain) {
            if !names.contains(&name) && !rejected.contains_key(key) {
                let value = spec.annotations.get(key).map_or("", String::as_str);
                report.push(
                    Severity::Warning,
                    place,
                    Some((key, value)),
                    format!(
                        "no container \"{name}\" in the pod spec (containers: {}); it applies to nothing",
                        names.join(", ")
                    ),
                );
            }
        }
    }
}

fn read(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    }
}

/// Checks `text`, the manifest `name`.
fn check_manifest(name: &str, text: &str, policy: &Policy, report: &mut Report) {
    report.files += 1;
    match manifest::pod_specs(text) {
        Err(err) => report.bad_file(name, err.to_string()),
        Ok(specs) => {
            for spec in specs {
                let place = Place {
                    file: name.to_string(),
                    object: Some((spec.object.clone(), spec.document)),
                };
                check_pod(&spec, policy, &place, report);
            }
        }
    }
}

/// Runs `nri-chaos validate`: what to print, and whether everything is fine.
pub fn run(args: &ValidateArgs) -> (String, bool) {
    let json = args.output == Some(Output::Json);
    let mut report = Report::default();
    let policy = match &args.policy {
        None => Policy::default(),
        Some(path) => {
            let loaded = read(path)
                .map_err(|err| format!("cannot read the policy: {err}"))
                .and_then(|text| Policy::from_toml_str(&text).map_err(|err| err.to_string()));
            match loaded {
                Ok(policy) => policy,
                Err(reason) => {
                    report.bad_file(&format!("policy {}", display(path)), reason);
                    return (report.render(true, json), false);
                }
            }
        }
    };
    if args.files.is_empty() {
        if args.policy.is_none() {
            return (
                "nothing to check: give manifest files (or - for stdin) and/or --policy FILE\n"
                    .to_string(),
                false,
            );
        }
        return (report.render(true, json), true);
    }
    for path in &args.files {
        let name = display(path);
        match read(path) {
            Ok(text) => check_manifest(&name, &text, &policy, &mut report),
            Err(err) => {
                report.files += 1;
                report.bad_file(&name, format!("cannot read: {err}"));
            }
        }
    }
    let ok = report.count(Severity::Bad) == 0;
    (report.render(false, json), ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    kill.nri-chaos.io/container.app: "{after: 2x}"
    freeze.nri-chaos.io/container.app: "{duration: 5s}"
    freeze.nri-chaos.io/container.db: "{duration: 5s}"
    exec.nri-chaos.io: "{fail: {}}"
    kil.nri-chaos.io: "{}"
    example.com/other: "whatever"
spec:
  containers:
  - name: app
"#;

    fn check(text: &str, policy: &Policy) -> Report {
        let mut report = Report::default();
        check_manifest("pod.yaml", text, policy, &mut report);
        report
    }

    #[test]
    fn each_bad_annotation_is_reported_with_key_value_and_the_plugins_reason() {
        let report = check(POD, &Policy::default());
        let text = report.render(false, false);
        let bad: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Bad)
            .collect();
        assert_eq!(bad.len(), 3, "{text}");
        assert!(bad
            .iter()
            .all(|f| f.place.to_string() == "pod.yaml: Pod default/web (document 1)"));
        assert!(text.contains("annotation kill.nri-chaos.io/container.app: \"{after: 2x}\": after: \"2x\" is not a duration"), "{text}");
        assert!(text.contains("annotation exec.nri-chaos.io: \"{fail: {}}\": fault 'exec' is executed by the shim wrapper, and this pod runs on the default runtime handler, not on \"nri-chaos\""), "{text}");
        let on_handler = POD.replace(
            "  containers:",
            "  runtimeClassName: nri-chaos\n  containers:",
        );
        let wrapped = check(&on_handler, &Policy::default()).render(false, false);
        assert!(!wrapped.contains("exec.nri-chaos.io"), "{wrapped}");
        assert!(
            text.contains("annotation kil.nri-chaos.io: \"{}\": unknown fault kind \"kil\""),
            "{text}"
        );
        assert_eq!(report.count(Severity::Warning), 1, "{text}");
        assert!(
            text.contains(
                "warning: annotation freeze.nri-chaos.io/container.db: \"{duration: 5s}\": no container \"db\""
            ),
            "{text}"
        );
        assert!(text.contains("FAILED: 1 file(s), 1 object(s) with a pod spec, 5 nri-chaos annotation(s): 3 bad, 1 warning(s)"), "{text}");
        let json: Value = serde_json::from_str(&report.render(false, true)).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(
            (json["bad"].as_u64(), json["warnings"].as_u64()),
            (Some(3), Some(1))
        );
        let kill = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == "kill.nri-chaos.io/container.app")
            .unwrap();
        assert_eq!(kill["severity"], "bad");
        assert_eq!(kill["file"], "pod.yaml");
        assert_eq!(kill["object"], "Pod default/web");
        assert_eq!(kill["document"], 1);
        assert_eq!(kill["value"], "{after: 2x}");
        assert!(kill["reason"]
            .as_str()
            .unwrap()
            .starts_with("after: \"2x\" is not a duration"));
    }

    #[test]
    fn the_policy_applies() {
        let deny = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: kube-system\n  annotations:\n    kill.nri-chaos.io: \"{}\"\nspec:\n  containers: [{name: app}]\n";
        let report = check(deny, &Policy::default());
        assert_eq!(report.count(Severity::Bad), 1);
        assert!(report.render(false, false).contains("kube-system"));
        let policy =
            Policy::from_toml_str("allowed_faults = [\"freeze\"]\n[namespaces]\ndeny = []\n")
                .unwrap();
        let report = check(deny, &policy);
        assert!(
            report.render(false, false).contains("policy"),
            "{}",
            report.render(false, false)
        );
        let clean = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    kill.nri-chaos.io/container.app: \"{after: 1s}\"\nspec:\n  containers: [{name: app}]\n";
        let report = check(clean, &Policy::default());
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert!(report
            .render(false, false)
            .starts_with("ok: 1 file(s), 1 object(s)"));
    }

    #[test]
    fn an_oom_kill_needs_the_manifests_memory_limit() {
        let pod = |limits: &str| {
            format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    oom.nri-chaos.io: \"{{kill: true}}\"\nspec:\n  containers:\n  - name: app\n{limits}")
        };
        let refused = check(&pod(""), &Policy::default());
        assert_eq!(
            refused.count(Severity::Bad),
            1,
            "{}",
            refused.render(false, false)
        );
        let fine = check(
            &pod("    resources: {limits: {memory: 64Mi}}\n"),
            &Policy::default(),
        );
        assert_eq!(
            fine.count(Severity::Bad),
            0,
            "{}",
            fine.render(false, false)
        );
    }

    #[test]
    fn non_string_values_and_broken_yaml_are_bad() {
        let report = check("kind: Pod\nmetadata:\n  name: p\n  annotations:\n    kill.nri-chaos.io: {after: 1s}\nspec:\n  containers: [{name: a}]\n", &Policy::default());
        assert!(
            report
                .render(false, false)
                .contains("the value is a mapping"),
            "{}",
            report.render(false, false)
        );
        let report = check("kind: Pod\n  metadata: [", &Policy::default());
        assert!(report
            .render(false, false)
            .contains("pod.yaml: not valid YAML"));
        assert_eq!(report.count(Severity::Bad), 1);
    }

    #[test]
    fn a_policy_alone_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "strict = true\n").unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "strcit = true\n").unwrap();
        let args = |policy: &Path| ValidateArgs {
            policy: Some(policy.to_path_buf()),
            files: Vec::new(),
            output: None,
        };
        let (text, ok) = run(&args(&good));
        assert!(ok, "{text}");
        let (text, ok) = run(&args(&bad));
        assert!(!ok);
        assert!(text.contains("strcit"), "{text}");
    }
}
