//! `nri-chaos-hook`: the OCI runtime hook of nri-chaos.
//!
//! `nri-chaos-hook <hook-point>` (`createRuntime`, `createContainer`, `startContainer`,
//! `poststart`, `poststop`; the OCI `args` carry argv\[0\] first) reads the OCI state from
//! stdin and the bundle's `config.json` ([`oci`]), finds the faults to execute
//! ([`resolve`]: the plan the NRI plugin wrote, or our annotations when installed standalone)
//! and acts at that hook point ([`act`]). It is small and fast, needs no daemon, and exits
//! within its hook timeout on every path: malformed input is a clear error on stderr and a
//! non-zero exit, never a hang.

pub mod act;
pub mod oci;
pub mod resolve;

use std::io::Read;
use std::time::Duration;

use injector::hookplan::{HookPlanError, HookPoint, UnknownHookPoint};

pub use act::{act, HookEnv, Outcome};

/// Exit code for usage errors and malformed input (a `start.fail` uses its own code).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Why the hook could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// No hook point argument.
    #[error("usage: nri-chaos-hook <createRuntime|createContainer|startContainer|poststart|poststop> (the OCI state JSON on stdin)")]
    Usage,
    /// Unknown hook point.
    #[error("{0}")]
    Point(#[from] UnknownHookPoint),
    /// The state on stdin.
    #[error(transparent)]
    State(#[from] oci::StateError),
    /// The bundle config.
    #[error(transparent)]
    Bundle(#[from] oci::BundleError),
    /// The plan annotation.
    #[error(transparent)]
    Plan(#[from] HookPlanError),
}

/// The whole hook: `args` is argv (argv\[0\] first), `stdin` carries the state.
pub fn run<R: Read + Send + 'static>(
    args: &[String],
    stdin: R,
    stdin_timeout: Duration,
    env: &dyn HookEnv,
) -> Result<Outcome, HookError> {
    let point: HookPoint = args.get(1).ok_or(HookError::Usage)?.parse()?;
    let state = oci::read_state(stdin, stdin_timeout)?;
    let config = oci::BundleConfig::read(state.bundle())?;
    // config.json is the source of truth; the state's copy fills in what it lacks.
    let mut annotations = state.annotations().clone().unwrap_or_default();
    annotations.extend(config.annotations());
    let host_network = oci::host_network(&config, std::path::Path::new(oci::HOST_NETNS));
    let resolved = resolve::resolve(&annotations, host_network.is_some())?;
    Ok(act(
        point,
        oci::live_pid(&state),
        &resolved,
        config.own_timeout(point),
        env,
    ))
}
