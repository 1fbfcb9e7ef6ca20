//! A later container of a pod whose wrapper runs: answered without running the runc shim.
//!
//! containerd 1.7 runs the shim's `start` for every container; for a container of a group
//! (a CRI pod) whose shim lives, the runc shim's `start` only finds that shim's socket,
//! writes it to `<bundle>/address` and prints it. The wrapper knows that answer already: it
//! gave it for the group's first container (its sandbox), whose bundle is the sibling
//! directory named by the group id, and it saved it there ([`ANSWER_FILE`]). So when that
//! wrapper is alive, the same answer is given again and the same files are written, and the
//! runc shim process (about 10 ms here) is not run. Otherwise `start` runs it as always.

use std::path::{Path, PathBuf};

use oci_hooks::oci::BundleConfig;

use crate::answer::StartAnswer;
use crate::start::{alive, socket_path, ADDRESS_FILE};

/// The answer the wrapper gave for a bundle's container, saved in that bundle.
pub const ANSWER_FILE: &str = "nri-chaos-shim.answer";

/// The annotations the runc shim groups containers by, in its order.
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The answer for the container of `bundle` (task `id`) when its group's wrapper is alive;
/// the bundle's files are written as the runc shim's `start` and the wrapper's would.
pub fn answer(bundle: &Path, id: &str) -> Option<Vec<u8>> {
    let group_bundle = group_bundle(bundle, id)?;
    let saved = std::fs::read(group_bundle.join(ANSWER_FILE)).ok()?;
    let address = StartAnswer::parse(&saved).ok()?.address().to_string();
    if !alive(&socket_path(&address).ok()?) {
        return None;
    }
    std::fs::write(bundle.join(ADDRESS_FILE), &address).ok()?;
    // Where containerd keeps `<bundle>/address` (1.7), the group's names the wrapper.
    let group_address = std::fs::read_to_string(group_bundle.join("address"));
    if group_address.is_ok_and(|a| a.trim() == address) {
        std::fs::write(bundle.join("address"), &address).ok()?;
    }
    Some(saved)
}

/// The bundle of the first container of the group `bundle`'s container belongs to: its
/// sibling named by the group id (containerd's `<state>/<namespace>/<id>` layout).
fn group_bundle(bundle: &Path, id: &str) -> Option<PathBuf> {
    let config = BundleConfig::read(bundle).ok()?;
    let annotations = config.spec.annotations?;
    let group = GROUP_ANNOTATIONS.iter().find_map(|k| annotations.get(*k))?;
    let plain = !group.is_empty() && group != "." && group != ".." && !group.contains('/');
    if !plain || group == id {
        return None;
    }
    let parent = std::path::absolute(bundle).ok()?.parent()?.to_path_buf();
    Some(parent.join(group))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_in(state: &Path, id: &str, annotations: serde_json::Value) -> PathBuf {
        let dir = state.join(id);
        std::fs::create_dir(&dir).unwrap();
        let config = serde_json::json!({"ociVersion": "1.0.2", "annotations": annotations});
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        dir
    }

    #[test]
    fn a_live_group_wrapper_answers_for_its_later_containers() {
        let state = tempfile::tempdir().unwrap();
        let socket = state.path().join("s.nri-chaos");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let address = format!("unix://{}", socket.display());
        let sandbox = bundle_in(state.path(), "pod1", serde_json::json!({}));
        std::fs::write(sandbox.join(ANSWER_FILE), &address).unwrap();
        std::fs::write(sandbox.join("address"), &address).unwrap();
        let sandbox_id = serde_json::json!({"io.kubernetes.cri.sandbox-id": "pod1"});
        let c1 = bundle_in(state.path(), "c1", sandbox_id.clone());
        assert_eq!(answer(&c1, "c1").unwrap(), address.as_bytes());
        assert_eq!(
            std::fs::read_to_string(c1.join(ADDRESS_FILE)).unwrap(),
            address
        );
        assert_eq!(
            std::fs::read_to_string(c1.join("address")).unwrap(),
            address
        );
        // The sandbox itself, a container of no group, or a group without a saved answer:
        // the runc shim's `start` runs.
        assert_eq!(answer(&sandbox, "pod1"), None);
        let alone = bundle_in(state.path(), "c2", serde_json::json!({}));
        assert_eq!(answer(&alone, "c2"), None);
        let other = bundle_in(
            state.path(),
            "c3",
            serde_json::json!({"io.kubernetes.cri.sandbox-id": "pod2"}),
        );
        assert_eq!(answer(&other, "c3"), None);
        let escape = bundle_in(
            state.path(),
            "c4",
            serde_json::json!({"io.kubernetes.cri.sandbox-id": ".."}),
        );
        assert_eq!(answer(&escape, "c4"), None);
        // The group's wrapper gone: the runc shim's `start` runs.
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
        let c5 = bundle_in(state.path(), "c5", sandbox_id);
        assert_eq!(answer(&c5, "c5"), None);
        assert!(!c5.join(ADDRESS_FILE).exists());
    }
}
