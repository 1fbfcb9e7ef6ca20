//! Finding and running the real `containerd-shim-runc-v2`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::ShimError;

/// The shim containerd runs for `io.containerd.runc.v2`.
pub const RUNC_SHIM: &str = "containerd-shim-runc-v2";
/// Overrides where the runc shim is taken from.
pub const RUNC_SHIM_ENV: &str = "NRI_CHAOS_RUNC_SHIM";

/// The value of Go-style flag `-name value` (or `--name value`, `-name=value`) in `args`.
pub fn flag_value(args: &[OsString], name: &str) -> Option<String> {
    let single = format!("-{name}");
    let double = format!("--{name}");
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = it.next() {
        if arg == single || arg == double {
            return it.next().map(|v| v.into_owned());
        }
        for prefix in [&single, &double] {
            if let Some(v) = arg
                .strip_prefix(prefix.as_str())
                .and_then(|r| r.strip_prefix('='))
            {
                return Some(v.to_string());
            }
        }
    }
    None
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `$NRI_CHAOS_RUNC_SHIM`, else `containerd-shim-runc-v2` on PATH, else next to the containerd
/// binary named by `-publish-binary` (where containerd itself looks after PATH).
pub fn locate(args: &[OsString]) -> Result<PathBuf, ShimError> {
    if let Some(p) = std::env::var_os(RUNC_SHIM_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|d| d.join(RUNC_SHIM))
        .find(|p| executable(p))
    {
        return Ok(found);
    }
    let beside = flag_value(args, "publish-binary")
        .and_then(|c| Path::new(&c).parent().map(|d| d.join(RUNC_SHIM)));
    match beside {
        Some(p) if executable(&p) => Ok(p),
        other => Err(ShimError::RuncShimNotFound {
            name: RUNC_SHIM,
            path: path.to_string_lossy().into_owned(),
            beside: other.map(|p| p.display().to_string()).unwrap_or_default(),
            env: RUNC_SHIM_ENV,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn go_flags_are_read_in_every_spelling() {
        let a = args(&[
            "-namespace",
            "k8s.io",
            "--id=abc",
            "-publish-binary",
            "/x/containerd",
            "start",
        ]);
        assert_eq!(flag_value(&a, "namespace").as_deref(), Some("k8s.io"));
        assert_eq!(flag_value(&a, "id").as_deref(), Some("abc"));
        assert_eq!(
            flag_value(&a, "publish-binary").as_deref(),
            Some("/x/containerd")
        );
        assert_eq!(flag_value(&a, "bundle"), None);
    }
}
