//! What the engine does with each fault kind: the one table its lists read (what `screen`
//! accepts, what needs the OCI hook binary, what `arm` gives a task on the scheduler, what
//! holds until recovered). Kinds themselves, their names and metric labels come from
//! [`FaultKind::ALL`].

use injector::FaultKind;

/// Who executes a fault kind on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// The engine, on its scheduler (the OCI hook may apply it early as well: `after: 0`).
    Engine,
    /// Only the OCI hook `nri-chaos-hook`, in the container's start path.
    Hook,
    /// The shim wrapper `containerd-shim-nri-chaos-v2`, per exec (pods on its runtime
    /// handler only).
    Shim,
}

/// Who executes `kind`.
pub const fn executor(kind: FaultKind) -> Executor {
    match kind {
        FaultKind::Kill
        | FaultKind::Freeze
        | FaultKind::Netem
        | FaultKind::Partition
        | FaultKind::Bandwidth
        | FaultKind::Stress
        | FaultKind::Oom => Executor::Engine,
        FaultKind::Start => Executor::Hook,
        FaultKind::Exec => Executor::Shim,
    }
}

/// Whether a fault of `kind` holds until it is recovered (every kind but the instantaneous
/// `kill`).
pub const fn holds(kind: FaultKind) -> bool {
    !matches!(kind, FaultKind::Kill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_executor() {
        let engine: Vec<&str> = FaultKind::ALL
            .into_iter()
            .filter(|k| executor(*k) == Executor::Engine)
            .map(FaultKind::as_str)
            .collect();
        assert_eq!(
            engine,
            [
                "kill",
                "freeze",
                "netem",
                "stress",
                "oom",
                "partition",
                "bandwidth"
            ]
        );
        assert_eq!(executor(FaultKind::Start), Executor::Hook);
        assert!(!holds(FaultKind::Kill) && holds(FaultKind::Freeze));
    }
}
