//! The bundle's `config.json`: the container's annotations (where the plugin wrote the plan,
//! or where a standalone user put our fault annotations) and the hook's own `timeout`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use injector::hookplan::HookPoint;
use serde::Deserialize;

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

/// One OCI hook entry (`hooks.<point>[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HookEntry {
    /// Binary.
    #[serde(default)]
    pub path: String,
    /// argv, including argv\[0\].
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds before the runtime kills the hook.
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// What the hook reads from `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BundleConfig {
    /// `annotations`.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// `hooks`, by point name.
    #[serde(default)]
    pub hooks: HashMap<String, Vec<HookEntry>>,
}

impl BundleConfig {
    /// Parses `config.json` text; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<BundleConfig, BundleError> {
        serde_json::from_slice(bytes).map_err(|err| BundleError::Malformed {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })
    }

    /// Reads `<bundle>/config.json`.
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

    /// The `timeout` of this hook's own entry at `point` (an entry whose binary is named
    /// `nri-chaos-hook*` and whose args\[1\] is `point`), if it has one.
    pub fn own_timeout(&self, point: HookPoint) -> Option<Duration> {
        self.hooks
            .get(point.as_str())?
            .iter()
            .filter(|hook| {
                Path::new(&hook.path)
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("nri-chaos-hook"))
                    && hook.args.get(1).map(String::as_str) == Some(point.as_str())
            })
            .find_map(|hook| hook.timeout)
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
            "process": {"args": ["sh"]},
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
        assert_eq!(config.annotations.len(), 2);
        assert_eq!(
            config.own_timeout(HookPoint::CreateRuntime),
            Some(Duration::from_secs(8))
        );
        assert_eq!(config.own_timeout(HookPoint::Poststop), None);
        assert_eq!(config.own_timeout(HookPoint::StartContainer), None);
    }

    #[test]
    fn malformed_config_names_the_file() {
        let err = BundleConfig::parse(Path::new("/b/config.json"), b"{\"annotations\": 3}")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "bundle config /b/config.json: not a valid OCI runtime config: invalid type"
            ),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let err = BundleConfig::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json: No such file"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert_eq!(
            BundleConfig::read(dir.path()).unwrap(),
            BundleConfig::default()
        );
    }
}
