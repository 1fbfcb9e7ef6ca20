//! Kubernetes manifests to pod specs: every object of a (multi-document) YAML file that
//! carries a pod spec — a Pod, the pod template of a Deployment, StatefulSet, DaemonSet,
//! ReplicaSet, ReplicationController or Job, a CronJob's job template, and the items of a
//! `List` — with what the annotation grammar and the policy need from it.
//
// Hand-walked with yaml-rust2 (already the grammar's YAML parser): reading a handful of
// fields does not justify the whole typed Kubernetes API (k8s-openapi) in the daemon.

use std::collections::HashMap;

use injector::units::{parse_size, Size};
use yaml_rust2::{Yaml, YamlLoader};

/// Why a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(String),
}

/// One container of a pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Its name.
    pub name: String,
    /// `resources.limits.memory` in bytes, when it has one that parses.
    pub memory_limit: Option<u64>,
}

/// One pod spec found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// `Kind namespace/name`, e.g. `Deployment default/web`.
    pub object: String,
    /// 1-based YAML document number in its file.
    pub document: usize,
    /// The object's namespace (`default` when the manifest does not say).
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The pod annotations whose values are strings.
    pub annotations: HashMap<String, String>,
    /// Annotations whose value is not a string (the apiserver refuses them): key, YAML type.
    pub non_string: Vec<(String, &'static str)>,
    /// `containers` and `initContainers`.
    pub containers: Vec<Container>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// `spec.runtimeClassName` (empty when absent).
    pub runtime_class: String,
}

/// The pod template of `object`, by kind; None for kinds without one.
fn template(object: &Yaml) -> Option<(&Yaml, &Yaml)> {
    let kind = object["kind"].as_str()?;
    let (metadata, spec) = match kind {
        "Pod" => (&object["metadata"], &object["spec"]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => {
            let template = &object["spec"]["template"];
            (&template["metadata"], &template["spec"])
        }
        "CronJob" => {
            let template = &object["spec"]["jobTemplate"]["spec"]["template"];
            (&template["metadata"], &template["spec"])
        }
        _ => return None,
    };
    Some((metadata, spec))
}

fn yaml_type(value: &Yaml) -> &'static str {
    match value {
        Yaml::Hash(_) => "a mapping",
        Yaml::Array(_) => "a sequence",
        Yaml::Integer(_) | Yaml::Real(_) => "a number",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Null => "null",
        _ => "not a string",
    }
}

fn containers(spec: &Yaml) -> Vec<Container> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|field| spec[*field].as_vec())
        .flatten()
        .filter_map(|container| {
            let name = container["name"].as_str()?.to_string();
            let memory_limit = match &container["resources"]["limits"]["memory"] {
                Yaml::String(text) => parse_size(text).ok(),
                Yaml::Integer(bytes) => u64::try_from(*bytes).ok().map(Size::Bytes),
                _ => None,
            }
            .and_then(|size| size.resolve(None));
            Some(Container { name, memory_limit })
        })
        .collect()
}

fn pod_spec(object: &Yaml, document: usize) -> Option<PodSpec> {
    let (metadata, spec) = template(object)?;
    let kind = object["kind"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("<unnamed>")
        .to_string();
    let mut annotations = HashMap::new();
    let mut non_string = Vec::new();
    if let Some(map) = metadata["annotations"].as_hash() {
        for (key, value) in map {
            let Some(key) = key.as_str() else { continue };
            match value.as_str() {
                Some(text) => {
                    annotations.insert(key.to_string(), text.to_string());
                }
                None => non_string.push((key.to_string(), yaml_type(value))),
            }
        }
    }
    non_string.sort();
    Some(PodSpec {
        object: format!("{kind} {namespace}/{name}"),
        document,
        namespace,
        name,
        annotations,
        non_string,
        containers: containers(spec),
        host_network: spec["hostNetwork"].as_bool().unwrap_or(false),
        runtime_class: spec["runtimeClassName"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    })
}

fn walk(object: &Yaml, document: usize, out: &mut Vec<PodSpec>) {
    if object["kind"].as_str() == Some("List") {
        for item in object["items"].as_vec().into_iter().flatten() {
            walk(item, document, out);
        }
    } else if let Some(spec) = pod_spec(object, document) {
        out.push(spec);
    }
}

/// Every pod spec in `text` (one or more YAML documents), in order.
pub fn pod_specs(text: &str) -> Result<Vec<PodSpec>, ManifestError> {
    let documents =
        YamlLoader::load_from_str(text).map_err(|err| ManifestError::Yaml(err.to_string()))?;
    let mut out = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        walk(document, index + 1, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKLOADS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  annotations:
    kill.nri-chaos.io/container.app: "{after: 2s}"
spec:
  hostNetwork: true
  initContainers:
  - name: setup
    image: busybox
  containers:
  - name: app
    image: busybox
    resources:
      limits:
        memory: 256Mi
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: ignored
data:
  kill.nri-chaos.io: "{}"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: shop
spec:
  template:
    metadata:
      annotations:
        freeze.nri-chaos.io: "{duration: 5s}"
        stress.nri-chaos.io: {duration: 1m}
    spec:
      containers:
      - name: api
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            oom.nri-chaos.io: "{kill: true}"
        spec:
          containers:
          - name: job
            resources: {limits: {memory: 1048576}}
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: StatefulSet
  metadata: {name: db}
  spec:
    template:
      spec:
        containers: [{name: db}]
- apiVersion: apps/v1
  kind: DaemonSet
  metadata: {name: agent}
  spec:
    template:
      metadata: {annotations: {"kill.nri-chaos.io/pod": "{}"}}
      spec:
        containers: [{name: agent}]
"#;

    #[test]
    fn pods_and_the_templates_of_workloads_are_found() {
        let specs = pod_specs(WORKLOADS).unwrap();
        let objects: Vec<(&str, usize)> = specs
            .iter()
            .map(|s| (s.object.as_str(), s.document))
            .collect();
        assert_eq!(
            objects,
            vec![
                ("Pod default/web", 1),
                ("Deployment shop/api", 3),
                ("CronJob default/nightly", 4),
                ("StatefulSet default/db", 5),
                ("DaemonSet default/agent", 5),
            ]
        );
        let pod = &specs[0];
        assert!(pod.host_network);
        assert_eq!(
            pod.annotations.get("kill.nri-chaos.io/container.app"),
            Some(&"{after: 2s}".to_string())
        );
        assert_eq!(
            pod.containers,
            vec![
                Container {
                    name: "setup".into(),
                    memory_limit: None
                },
                Container {
                    name: "app".into(),
                    memory_limit: Some(256 << 20)
                },
            ]
        );
        let api = &specs[1];
        assert_eq!(api.namespace, "shop");
        assert_eq!(api.annotations.len(), 1);
        assert_eq!(
            api.non_string,
            vec![("stress.nri-chaos.io".to_string(), "a mapping")]
        );
        assert_eq!(specs[2].containers[0].memory_limit, Some(1_048_576));
        assert!(specs[3].annotations.is_empty());
        assert_eq!(specs[4].annotations.len(), 1);
    }

    #[test]
    fn broken_yaml_is_an_error_and_empty_input_has_no_pods() {
        assert!(matches!(
            pod_specs("kind: Pod\n  metadata: [").unwrap_err(),
            ManifestError::Yaml(_)
        ));
        assert!(pod_specs("").unwrap().is_empty());
        assert!(pod_specs("---\n---\n").unwrap().is_empty());
    }
}
