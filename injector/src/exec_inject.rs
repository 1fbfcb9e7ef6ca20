//! Where `nri-chaos ctl inject` hands an `exec` fault to the shim wrapper of a running
//! container: one directory the node knows ([`DEFAULT_DIR`], moved for both sides by the one
//! setting [`DIR_ENV`]), one file per container named by its container id ([`file`]), holding
//! a plan in the format of the [`crate::hookplan::PLAN_ANNOTATION`] annotation. The plugin
//! writes and removes the files; each wrapper looks for its containers' files. Neither tells
//! the other where they are, so a container without a fault needs no NRI adjustment.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The directory when [`DIR_ENV`] (or the plugin's `--exec-dir`) does not name another.
pub const DEFAULT_DIR: &str = "/run/nri-chaos/exec";

/// The environment variable naming the directory, read by the plugin (unless `--exec-dir`
/// is given) and by the shim wrapper (containerd starts shims with its own environment).
pub const DIR_ENV: &str = "NRI_CHAOS_EXEC_DIR";

/// A setting for the directory that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecDirError {
    /// The directory must be absolute: the plugin and the shims run in different working
    /// directories.
    #[error(
        "{setting} {value:?}: the directory for injected exec faults must be an absolute path"
    )]
    NotAbsolute {
        /// Which setting gave it (`NRI_CHAOS_EXEC_DIR`, `--exec-dir`).
        setting: String,
        /// The value given.
        value: String,
    },
}

/// The directory from `value`, the value of `setting` (the flag or [`DIR_ENV`]): unset or
/// empty means [`DEFAULT_DIR`].
pub fn resolve(setting: &str, value: Option<&OsStr>) -> Result<PathBuf, ExecDirError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(PathBuf::from(DEFAULT_DIR));
    };
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(ExecDirError::NotAbsolute {
            setting: setting.to_string(),
            value: value.to_string_lossy().into_owned(),
        });
    }
    Ok(path)
}

/// The directory from [`DIR_ENV`] in this process's environment.
pub fn from_env() -> Result<PathBuf, ExecDirError> {
    resolve(DIR_ENV, std::env::var_os(DIR_ENV).as_deref())
}

/// The file of container `container_id` in `dir`; `None` for an id that is not a plain file
/// name (containerd's ids are letters, digits, `.`, `_` and `-`).
pub fn file(dir: &Path, container_id: &str) -> Option<PathBuf> {
    let plain = !container_id.is_empty()
        && !container_id.starts_with('.')
        && container_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    plain.then(|| dir.join(format!("{container_id}.json")))
}

/// Whether `name` (a file name in the directory) is a container's file or one being written
/// (`<id>.json.tmp`), i.e. one the plugin may remove.
pub fn is_inject_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with(".json") || name.ends_with(".json.tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_defaults_and_must_be_absolute() {
        let default = PathBuf::from(DEFAULT_DIR);
        assert_eq!(resolve(DIR_ENV, None), Ok(default.clone()));
        assert_eq!(resolve(DIR_ENV, Some(OsStr::new(""))), Ok(default));
        assert_eq!(
            resolve(DIR_ENV, Some(OsStr::new("/srv/chaos/exec"))),
            Ok(PathBuf::from("/srv/chaos/exec"))
        );
        let err = resolve("--exec-dir", Some(OsStr::new("run/exec"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--exec-dir \"run/exec\": the directory for injected exec faults must be an absolute path"
        );
    }

    #[test]
    fn a_container_file_is_named_by_its_id() {
        let dir = Path::new("/run/nri-chaos/exec");
        assert_eq!(
            file(dir, "3f2a-c_1.x"),
            Some(PathBuf::from("/run/nri-chaos/exec/3f2a-c_1.x.json"))
        );
        for bad in ["", "..", ".hidden", "a/b", "../etc/passwd", "a b"] {
            assert_eq!(file(dir, bad), None, "{bad:?}");
        }
        assert!(is_inject_file(OsStr::new("abc.json")));
        assert!(is_inject_file(OsStr::new("abc.json.tmp")));
        assert!(!is_inject_file(OsStr::new("store.log")));
    }
}
