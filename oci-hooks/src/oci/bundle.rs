//! The bundle's `config.json`, read with `oci-spec`'s runtime types: the container's
//! annotations (where the plugin wrote the plan, or where a standalone user put our fault
//! annotations), the hooks, for the hook's own `timeout`, and `linux.namespaces`, to know
//! whether the container shares the host's network ([`super::network`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use injector::hookplan::HookPoint;
pub use oci_spec::runtime::{Hook, Hooks};
use serde::Deserialize;

use super::from_json;

/// Largest `config.json` read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Errors reading the bundle config.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file cannot be read.
    #[error("bundle config {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Larger than [`MAX_CONFIG_BYTES`].
    #[error("bundle config {}: larger than {MAX_CONFIG_BYTES} bytes", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Not an OCI config.
    #[error("bundle config {}: not a valid OCI runtime config: {reason}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        reason: String,
    },
}

/// The fields of `config.json` that nri-chaos reads, typed by `oci-spec`; the others are
/// ignored, as a runtime ignores what it does not know.
// Not `oci_spec::runtime::Spec` whole: its `process` deserialiser links `regex` (the release
// hook grew from 1.0 to 4.2 MB with it) and refuses configs runc runs (a `process` without
// `user`), which would fail container starts over fields the hook never reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BundleSpec {
    /// `annotations`.
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
    /// `hooks`.
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// `linux` (only its `namespaces`).
    #[serde(default)]
    pub linux: Option<super::network::Linux>,
}

/// The bundle's `config.json` and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleConfig {
    /// The file, for messages.
    pub path: PathBuf,
    /// What was read of it.
    pub spec: BundleSpec,
}

impl BundleConfig {
    /// Parses `config.json` text; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<BundleConfig, BundleError> {
        let spec = from_json(bytes).map_err(|reason| BundleError::Malformed {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(BundleConfig {
            path: path.to_path_buf(),
            spec,
        })
    }

    // Ours, not `Spec::load`: that reads without a size bound, and its error names no field.
    /// Reads `<bundle>/config.json` (at most [`MAX_CONFIG_BYTES`]).
    pub fn read(bundle: &Path) -> Result<BundleConfig, BundleError> {
        let path = bundle.join("config.json");
        let io = |source| BundleError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(BundleError::TooLarge { path });
        }
        BundleConfig::parse(&path, &bytes)
    }

    /// The container's OCI annotations (empty when `config.json` has none).
    pub fn annotations(&self) -> HashMap<String, String> {
        self.spec.annotations.clone().unwrap_or_default()
    }

    /// The hooks listed at `point`.
    pub fn hooks_at(&self, point: HookPoint) -> &[Hook] {
        let Some(hooks) = &self.spec.hooks else {
            return &[];
        };
        let list = match point {
            HookPoint::CreateRuntime => hooks.create_runtime(),
            HookPoint::CreateContainer => hooks.create_container(),
            HookPoint::StartContainer => hooks.start_container(),
            HookPoint::Poststart => hooks.poststart(),
            HookPoint::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }

    /// The `timeout` of this hook's own entry at `point` (an entry whose binary is named
    /// `nri-chaos-hook*` and whose args\[1\] is `point`), if it has one.
    pub fn own_timeout(&self, point: HookPoint) -> Option<Duration> {
        self.hooks_at(point)
            .iter()
            .filter(|hook| {
                hook.path()
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("nri-chaos-hook"))
                    && hook
                        .args()
                        .as_ref()
                        .and_then(|args| args.get(1))
                        .map(String::as_str)
                        == Some(point.as_str())
            })
            .find_map(Hook::timeout)
            .and_then(|secs| u64::try_from(secs).ok())
            .map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_annotations_and_own_timeout() {
        let text = br#"{
            "ociVersion": "1.1.0",
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "annotations": {"nri-chaos.io/plan": "{}", "other": "x"},
            "hooks": {
                "createRuntime": [
                    {"path": "/usr/bin/other-hook", "args": ["other-hook", "createRuntime"], "timeout": 1},
                    {"path": "/opt/nri-chaos/bin/nri-chaos-hook", "args": ["/opt/nri-chaos/bin/nri-chaos-hook", "createRuntime"], "timeout": 8}
                ],
                "poststop": [{"path": "/opt/nri-chaos/bin/nri-chaos-hook", "args": ["x", "poststop"]}]
            }
        }"#;
        let config = BundleConfig::parse(Path::new("/b/config.json"), text).unwrap();
        assert_eq!(config.annotations().len(), 2);
        assert_eq!(
            config.own_timeout(HookPoint::CreateRuntime),
            Some(Duration::from_secs(8))
        );
        assert_eq!(config.own_timeout(HookPoint::Poststop), None);
        assert_eq!(config.own_timeout(HookPoint::StartContainer), None);
    }

    #[test]
    fn malformed_config_names_the_file_and_field() {
        let cases: [(&[u8], &str); 4] = [
            (
                br#"{"annotations": 3}"#,
                "annotations: invalid type: integer `3`, expected a map",
            ),
            (
                br#"{"hooks": {"poststop": [{"path": "/h", "timeout": "5s"}]}}"#,
                "hooks.poststop[0].timeout: invalid type: string \"5s\", expected i64",
            ),
            (
                br#"{"hooks": {"createRuntime": [{"args": ["x", "createRuntime"]}]}}"#,
                "hooks.createRuntime[0]: missing field `path`",
            ),
            (b"{} {}", "trailing characters"),
        ];
        for (text, want) in cases {
            let err = BundleConfig::parse(Path::new("/b/config.json"), text)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("bundle config /b/config.json: not a valid OCI runtime config: ")
                    && err.contains(want),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let err = BundleConfig::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json: No such file"), "{err}");
    }

    #[test]
    fn fields_the_hook_does_not_read_are_not_judged() {
        // runc runs this: no `process.user`, a capability newer than any list, fields of a
        // later runtime-spec.
        let text = br#"{
            "ociVersion": "1.3.0",
            "process": {"args": ["sh"], "capabilities": {"bounding": ["CAP_FROM_THE_FUTURE"]}},
            "linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"}],
                      "futureField": {"x": 1}},
            "futureTopLevel": [1, 2],
            "annotations": {"start.nri-chaos.io": "{delay: 1s}"},
            "hooks": {"createRuntime": [{"path": "/opt/nri-chaos/bin/nri-chaos-hook",
                      "args": ["nri-chaos-hook", "createRuntime"], "timeout": 6,
                      "env": ["A=b"]}]}
        }"#;
        let config = BundleConfig::parse(Path::new("/b/config.json"), text).unwrap();
        assert_eq!(
            config
                .annotations()
                .get("start.nri-chaos.io")
                .map(String::as_str),
            Some("{delay: 1s}")
        );
        assert_eq!(
            config.own_timeout(HookPoint::CreateRuntime),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn an_empty_config_has_no_annotations_and_no_hooks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let config = BundleConfig::read(dir.path()).unwrap();
        assert_eq!(config.path, dir.path().join("config.json"));
        assert!(config.annotations().is_empty());
        for point in HookPoint::ALL {
            assert!(config.hooks_at(point).is_empty());
            assert_eq!(config.own_timeout(point), None);
        }
    }

    #[test]
    fn larger_than_the_bound_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = format!(
            "{{\"hostname\": \"{}\"}}",
            "x".repeat(MAX_CONFIG_BYTES as usize)
        );
        std::fs::write(dir.path().join("config.json"), big).unwrap();
        let err = BundleConfig::read(dir.path()).unwrap_err().to_string();
        assert!(
            err.ends_with("config.json: larger than 16777216 bytes"),
            "{err}"
        );
    }
}
