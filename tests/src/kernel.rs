//! What the host kernel offers, probed directly (not through nri-chaos's own code), so a test
//! can tell "the kernel lacks it" from "nri-chaos broke it".

use std::process::Command;
use std::sync::OnceLock;

/// Why netem cannot be installed on this kernel, or `None` when it can. Probed once per
/// process with iproute2's `tc` in a throwaway network namespace; a probe that cannot run at
/// all, or fails for another reason, panics with what it saw.
pub fn sch_netem_missing() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let args = [
                "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
            ];
            let out = Command::new("unshare")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("probing sch_netem: cannot run unshare {args:?}: {e}"));
            if out.status.success() {
                return None;
            }
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            assert!(
                err.contains("qdisc kind is unknown"),
                "probing sch_netem: unshare {args:?} failed ({}) for another reason: {err}",
                out.status
            );
            Some(format!(
                "this kernel has no sch_netem (tc in a fresh netns: {err})"
            ))
        })
        .clone()
}
