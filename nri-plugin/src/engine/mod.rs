//! The engine: turns NRI lifecycle events into planned faults and runs them.
//!
//! Handlers call in with plain data ([`PodInfo`], [`ContainerInfo`]); every verb only
//! plans, updates the state under a short lock, and spawns tasks — nothing waits on the
//! kernel or the disk. One file per verb: [`create`], [`start`], [`sync`], [`stop`],
//! [`inject`], [`recover`]; [`arm`] spawns a fault's task and [`state`] keys the armed faults
//! by their scope ([`injector::FaultKey`]). Faults run on tokio tasks owned by the engine
//! ([`runner`]); when their target goes, or the plugin shuts down, a stop signal makes each
//! task recover what it holds and end. Inside an NRI handler ([`crate::in_handler::run`]) a task's start and
//! a stop signal wait for the handler's reply ([`after_reply`]).

mod after_reply;
mod arm;
mod create;
mod effects;
pub mod error;
pub mod events;
mod exec_inject;
pub mod hooks;
mod inject;
pub mod introspect;
mod journal_ops;
pub mod kinds;
pub mod model;
mod recover;
mod runner;
mod screen;
pub mod seams;
mod start;
mod state;
mod stop;
mod sync;
mod timer;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use injector::seams::signal::Signaller;
use injector::{FaultKey, Policy};

pub use error::{EngineError, InjectError};
pub use model::{ContainerInfo, PodInfo};
pub use screen::screen;
pub use seams::Seams;

use state::State;

/// Shared engine internals (the kill tasks hold a reference).
pub(crate) struct Inner {
    policy: Policy,
    seams: Seams,
    /// The journal of active faults and the firing ledger.
    store: crate::store::Store,
    /// Where `ctl inject` of exec faults writes for the shim wrappers ([`injector::exec_inject`]).
    exec_dir: std::path::PathBuf,
    /// Why the OCI hook binary cannot be used (checked once at start: handlers never stat).
    hook_problem: Option<String>,
    state: Mutex<State>,
    next_fault_id: AtomicU64,
    /// What the operator sees (`ctl list`, metrics).
    registry: introspect::Registry,
    /// Task starts and stop signals left by NRI handlers for after their reply.
    after_reply: after_reply::AfterReply,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The fault engine of one plugin process (survives NRI reconnects).
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps inconsistent in a way
    // that matters more than stopping fault injection would; keep serving.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    /// Creates the engine; the firing ledger and the journal live in `state_dir`, the exec
    /// faults injected for the shim wrappers in `exec_dir`.
    pub fn new(
        policy: Policy,
        seams: Seams,
        state_dir: &std::path::Path,
        exec_dir: &std::path::Path,
    ) -> Result<Engine, EngineError> {
        let store = crate::store::Store::open(state_dir).map_err(|source| EngineError::Store {
            path: state_dir.display().to_string(),
            source,
        })?;
        exec_inject::clear_exec_injections(exec_dir);
        let hook_problem = hooks::hook_unusable(
            policy
                .hook_path
                .as_deref()
                .unwrap_or(hooks::DEFAULT_HOOK_PATH),
        );
        if let Some(problem) = &hook_problem {
            tracing::warn!(problem = %problem, "start faults are refused until nri-chaos is restarted with a usable OCI hook binary");
        }
        Ok(Engine {
            inner: Arc::new(Inner {
                policy,
                seams,
                store,
                exec_dir: exec_dir.to_path_buf(),
                hook_problem,
                state: Mutex::new(State::reserved()),
                next_fault_id: AtomicU64::new(1),
                registry: introspect::Registry::default(),
                after_reply: after_reply::AfterReply::default(),
            }),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// What the operator sees: faults, rejections, metrics.
    pub fn registry(&self) -> &introspect::Registry {
        &self.inner.registry
    }

    /// The Prometheus figures.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.inner.registry.metrics()
    }

    /// The /metrics text, with what is read at scrape time: the faults whose task still
    /// runs (armed, holding, or resumed from the journal) and the journal's entries.
    pub fn metrics_text(&self) -> String {
        let active = lock(&self.inner.state).active_by_kind();
        let observed = crate::metrics::Observed {
            active,
            journal_entries: i64::try_from(self.inner.store.journal_len()).unwrap_or(i64::MAX),
        };
        self.metrics().render(&observed)
    }

    /// A reply (or the connection's end) is written: starts the fault tasks and raises the
    /// stop signals that NRI handlers left for after their reply. Cheap when there are none;
    /// the NRI transport calls it after every frame it writes.
    pub fn after_reply(&self) {
        self.inner.after_reply.run();
    }

    /// Faults with a task (armed or holding).
    pub fn active_faults(&self) -> usize {
        lock(&self.inner.state).armed.values().map(Vec::len).sum()
    }
}

impl Inner {
    pub(crate) fn signaller(&self) -> &dyn Signaller {
        self.seams.signaller.as_ref()
    }

    /// A fault task ended by itself: forget it.
    pub(crate) fn disarm(&self, key: &FaultKey, fault_id: u64) {
        lock(&self.state).forget(key, fault_id);
    }
}

#[cfg(test)]
mod after_reply_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_scope;
