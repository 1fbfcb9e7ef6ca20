//! What a fault acts on. [`FaultKey`] is the one key of the armed faults, the firing ledger
//! and the journal, so a pod-wide fault and a container fault can never be confused.

use serde::{Deserialize, Serialize};

use crate::annotations::FaultKind;

/// The target of a fault: a whole pod (its network namespace: `netem`) or one container.
///
/// Named by what survives restarts (the pod UID and the container name), never by runtime ids:
/// containerd gives a recreated sandbox or a restarted container a new id, and a fault (its
/// schedule, its `count`) belongs to the pod or container the user annotated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// The whole pod.
    Pod {
        /// The pod UID.
        pod_uid: String,
    },
    /// One container of a pod.
    Container {
        /// The pod UID.
        pod_uid: String,
        /// The container name (not its id, which changes on restart).
        container: String,
    },
}

impl Scope {
    /// The scope a fault of `kind` has on `container` of pod `pod_uid`: the pod for pod-wide
    /// kinds ([`FaultKind::is_pod_scoped`]), else the container.
    pub fn of(kind: FaultKind, pod_uid: &str, container: &str) -> Scope {
        if kind.is_pod_scoped() {
            Scope::Pod {
                pod_uid: pod_uid.to_string(),
            }
        } else {
            Scope::Container {
                pod_uid: pod_uid.to_string(),
                container: container.to_string(),
            }
        }
    }

    /// The pod UID.
    pub fn pod_uid(&self) -> &str {
        match self {
            Scope::Pod { pod_uid } | Scope::Container { pod_uid, .. } => pod_uid,
        }
    }

    /// The container name, for a container scope.
    pub fn container(&self) -> Option<&str> {
        match self {
            Scope::Pod { .. } => None,
            Scope::Container { container, .. } => Some(container),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Pod { pod_uid } => write!(f, "pod {pod_uid}"),
            Scope::Container { pod_uid, container } => {
                write!(f, "container {container} of pod {pod_uid}")
            }
        }
    }
}

/// One fault kind on one scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultKey {
    /// What it acts on.
    pub scope: Scope,
    /// The fault kind.
    pub kind: FaultKind,
}

impl FaultKey {
    /// The key of a fault of `kind` on `container` of pod `pod_uid` (see [`Scope::of`]).
    pub fn of(kind: FaultKind, pod_uid: &str, container: &str) -> FaultKey {
        FaultKey {
            scope: Scope::of(kind, pod_uid, container),
            kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_is_keyed_by_the_pod_and_kill_by_the_container() {
        let netem = FaultKey::of(FaultKind::Netem, "uid-1", "app");
        assert_eq!(
            netem.scope,
            Scope::Pod {
                pod_uid: "uid-1".into()
            }
        );
        assert_eq!(netem.scope.container(), None);
        let kill = FaultKey::of(FaultKind::Kill, "uid-1", "app");
        assert_eq!(kill.scope.container(), Some("app"));
        assert_eq!(kill.scope.pod_uid(), "uid-1");
        assert_ne!(
            FaultKey::of(FaultKind::Netem, "uid-1", "sidecar"),
            FaultKey::of(FaultKind::Kill, "uid-1", "sidecar")
        );
        assert_eq!(
            FaultKey::of(FaultKind::Netem, "uid-1", "app"),
            FaultKey::of(FaultKind::Netem, "uid-1", "sidecar"),
            "every container of a pod names the same pod-wide fault"
        );
    }

    #[test]
    fn scope_round_trips_through_json() {
        let scope = Scope::Container {
            pod_uid: "u".into(),
            container: "c".into(),
        };
        let text = serde_json::to_string(&scope).expect("encode");
        assert_eq!(
            text,
            r#"{"scope":"container","pod_uid":"u","container":"c"}"#
        );
        assert_eq!(serde_json::from_str::<Scope>(&text).expect("decode"), scope);
    }
}
