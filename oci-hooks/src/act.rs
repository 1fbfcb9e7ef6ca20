//! What the hook does at each hook point, over narrow seams (sleep, the process table,
//! randomness) so every path is unit-tested with fakes.
//!
//! At `createRuntime` (runc create: the init process and namespaces exist, the app has not
//! started), in this order: `oom` raises the init process's `oom_score_adj` (inherited by the
//! app); `start.delay` sleeps; `start.fail` prints the reason and exits with the requested
//! code, which makes runc fail the create and the CRI call report it. Every other hook point
//! has nothing to do today and exits 0.

use std::time::Duration;

use injector::faults::oom::raise_scores;
use injector::faults::{Fault, Kernel, NoUndoLog};
use injector::hookplan::{hook_point, HookPoint};
use injector::units::format_duration;
use injector::FaultSpec;

use crate::resolve::{HookFault, Resolved, Source};

/// Time kept free before the hook's own OCI `timeout`, so a clamped delay still exits first.
pub const TIMEOUT_RESERVE: Duration = Duration::from_secs(1);

/// What the hook needs from the outside world.
pub trait HookEnv {
    /// Blocks for `d`.
    fn sleep(&self, d: Duration);
    /// The kernel seams the faults act through (the same functions as the plugin's).
    fn kernel(&self) -> Kernel<'_>;
    /// A uniform draw in `[0, 1)` (standalone `probability`).
    fn draw(&self) -> f64;
}

/// The hook's result: an exit code and the lines for stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// 0, or the `start.fail` exit code.
    pub exit_code: u8,
    /// Lines for stderr (runc shows them when the hook fails).
    pub messages: Vec<String>,
}

fn origin(fault: &HookFault) -> String {
    format!(
        "{} fault from annotation {}: {:?}",
        fault.request.kind, fault.request.key, fault.value
    )
}

/// Executes the faults of `resolved` that belong to `point` for the container whose init
/// process is `pid`. `own_timeout` is the hook's OCI `timeout`, when known: a delay never runs
/// past it.
pub fn act(
    point: HookPoint,
    pid: Option<u32>,
    resolved: &Resolved,
    own_timeout: Option<Duration>,
    env: &dyn HookEnv,
) -> Outcome {
    let mut out = Outcome::default();
    for warning in &resolved.warnings {
        out.messages.push(format!(
            "nri-chaos: warning: {warning}; the container starts unharmed"
        ));
    }
    let mine: Vec<&HookFault> = resolved
        .faults
        .iter()
        .filter(|f| hook_point(&f.request) == Some(point))
        .filter(|f| {
            // The plugin already drew `probability`; standalone, the hook draws it.
            let p = f.request.timing.probability;
            let acts = resolved.source == Source::Plugin || p >= 1.0 || env.draw() < p;
            if !acts {
                out.messages.push(format!(
                    "nri-chaos: {}: probability draw says not this time",
                    origin(f)
                ));
            }
            acts
        })
        .collect();
    // Scores first: they must be in place before anything can run in the container.
    for fault in &mine {
        let FaultSpec::Oom(oom) = &fault.request.spec else {
            continue;
        };
        let Some(score) = oom.score else { continue };
        let Some(pid) = pid else {
            out.messages.push(format!(
                "nri-chaos: warning: {}: the OCI state has no pid; oom_score_adj not set",
                origin(fault)
            ));
            continue;
        };
        // No journal: the score lives and dies with the init process.
        if let Err(err) = raise_scores(env.kernel().procs, &[pid], i32::from(score), &mut NoUndoLog)
        {
            out.messages.push(format!(
                "nri-chaos: warning: {}: {err}; the container starts with its own score",
                origin(fault)
            ));
        }
    }
    // netem before the app's first packet; a kernel without sch_netem leaves the container
    // unharmed (the plugin reports it too).
    for fault in &mine {
        let FaultSpec::Netem(netem) = &fault.request.spec else {
            continue;
        };
        let Some(pid) = pid else {
            out.messages.push(format!(
                "nri-chaos: warning: {}: the OCI state has no pid; netem not installed",
                origin(fault)
            ));
            continue;
        };
        // The plugin's own apply; an interface whose root is already ours is left alone. No
        // journal: the plugin (or the namespace's end) removes it.
        let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
        if let Err(err) = netem.apply(&env.kernel(), &netns, &mut NoUndoLog) {
            out.messages.push(format!(
                "nri-chaos: warning: {}: {err}; the container starts without it",
                origin(fault)
            ));
        }
    }
    for fault in &mine {
        let FaultSpec::Start(start) = &fault.request.spec else {
            continue;
        };
        if let Some(delay) = start.delay {
            let limit = own_timeout.map(|t| t.saturating_sub(TIMEOUT_RESERVE));
            let delay = match limit {
                Some(limit) if delay > limit => {
                    out.messages.push(format!(
                        "nri-chaos: warning: {}: delay {} shortened to {} to end before this hook's timeout",
                        origin(fault),
                        format_duration(delay),
                        format_duration(limit)
                    ));
                    limit
                }
                _ => delay,
            };
            env.sleep(delay);
        }
        if let Some(code) = start.fail_exit_code {
            out.messages.push(format!(
                "nri-chaos: {}: failing the container start with exit code {code}",
                origin(fault)
            ));
            out.exit_code = code;
            return out;
        }
    }
    out
}

#[cfg(test)]
mod tests;
