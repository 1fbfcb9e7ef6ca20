//! Whether a container shares the host's network, from its `config.json`'s
//! `linux.namespaces`.
//!
//! The runtime-spec says a namespace type that is not listed is shared with the runtime: a
//! config without a `network` entry runs in the runtime's network namespace, which on a node
//! is the host's. That is how containerd, CRI-O and Podman write a `hostNetwork` (or
//! `--network host`) container. A `network` entry with a `path` joins that namespace: CRI
//! runtimes write the pod sandbox's namespace there for every ordinary pod, so a path alone
//! says nothing; it is the host's network only when it is the same namespace as the
//! runtime's (same nsfs device and inode, whatever the path: `/proc/1/ns/net`, a bind mount).
//! An entry without a path is a new, private namespace.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::BundleConfig;

/// The runtime's own network namespace: the hook runs in it (runc runs hooks in the runtime
/// namespace), and a container without a `network` entry inherits it.
pub const HOST_NETNS: &str = "/proc/self/ns/net";

/// `linux` of `config.json`, only `namespaces`.
// Ours, not oci-spec's `Linux`: its namespace type is a closed enum, so a namespace type of a
// later runtime-spec would fail every container start over a field the hook does not judge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Linux {
    /// `namespaces`.
    #[serde(default)]
    pub namespaces: Option<Vec<Namespace>>,
}

/// One `linux.namespaces` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Namespace {
    /// `type`: `network`, `pid`, ...
    #[serde(rename = "type")]
    pub typ: String,
    /// `path`: a namespace to join.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

fn same_namespace(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Why the container shares the host's network (`host_netns`: the runtime's namespace), or
/// None when it has a network namespace of its own.
pub fn host_network(config: &BundleConfig, host_netns: &Path) -> Option<String> {
    let namespaces = config
        .spec
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_deref())
        .unwrap_or_default();
    match namespaces.iter().find(|n| n.typ == "network") {
        None => Some(format!(
            "{}: linux.namespaces has no network namespace, so the container shares the host's network",
            config.path.display()
        )),
        Some(Namespace {
            path: Some(path), ..
        }) if same_namespace(path, host_netns) => Some(format!(
            "{}: the network namespace {} is the host's",
            config.path.display(),
            path.display()
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(linux: &str) -> BundleConfig {
        let text = format!(r#"{{"ociVersion": "1.1.0"{linux}}}"#);
        BundleConfig::parse(Path::new("/b/config.json"), text.as_bytes()).unwrap()
    }

    #[test]
    fn no_network_entry_is_the_host_network() {
        for linux in [
            "",
            r#", "linux": {}"#,
            r#", "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}"#,
        ] {
            let why = host_network(&config(linux), Path::new(HOST_NETNS));
            assert_eq!(
                why.as_deref(),
                Some("/b/config.json: linux.namespaces has no network namespace, so the container shares the host's network"),
                "{linux}"
            );
        }
    }

    #[test]
    fn a_path_is_the_host_network_only_when_it_is_the_same_namespace() {
        let host =
            r#", "linux": {"namespaces": [{"type": "network", "path": "/proc/self/ns/net"}]}"#;
        let why = host_network(&config(host), Path::new("/proc/thread-self/ns/net")).unwrap();
        assert!(
            why.ends_with("the network namespace /proc/self/ns/net is the host's"),
            "{why}"
        );
        let pod =
            r#", "linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"}]}"#;
        assert_eq!(host_network(&config(pod), Path::new(HOST_NETNS)), None);
        let private =
            r#", "linux": {"namespaces": [{"type": "network"}, {"type": "timens-of-2030"}]}"#;
        assert_eq!(host_network(&config(private), Path::new(HOST_NETNS)), None);
    }
}
