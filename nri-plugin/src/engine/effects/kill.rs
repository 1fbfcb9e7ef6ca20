//! The kill effect: signal the container's init process through a pidfd taken at arm time,
//! so a recycled PID is never hit.

use std::sync::Arc;

use injector::faults::kill::{KillError, KillFault};
use injector::seams::signal::{ProcessHandle, SignalError};
use injector::FaultKind;

use crate::engine::runner::{Effect, FireError, FiringInfo, Holding, Target};
use crate::engine::Inner;

/// An armed kill fault.
#[derive(Debug)]
pub(in crate::engine) struct KillEffect {
    kill: KillFault,
    process: ProcessHandle,
}

impl KillEffect {
    /// Takes the handle on the container's init process.
    pub(in crate::engine) fn arm(
        engine: &Inner,
        kill: KillFault,
        pid: u32,
    ) -> Result<KillEffect, SignalError> {
        let process = engine.signaller().open(pid)?;
        Ok(KillEffect { kill, process })
    }
}

impl Effect for KillEffect {
    fn kind(&self) -> FaultKind {
        FaultKind::Kill
    }

    async fn fire(
        &self,
        engine: &Arc<Inner>,
        target: &Target,
        firing: FiringInfo,
    ) -> Result<Option<Box<dyn Holding>>, FireError> {
        match self.kill.execute(engine.signaller(), &self.process) {
            Ok(()) => {
                tracing::info!(
                    pod = %target.pod,
                    container = %target.container,
                    fault = "kill",
                    signal = %self.kill.signal,
                    pid = target.pid,
                    ordinal = firing.ordinal,
                    planned_after_ms = firing.offset.as_millis() as u64,
                    lateness_us = firing.lateness.as_micros() as u64,
                    "signal sent"
                );
                Ok(None)
            }
            Err(KillError::Signal(SignalError::Exited { .. })) => Err(FireError::TargetGone(
                "its init process has exited".to_string(),
            )),
            Err(err) => Err(FireError::Failed(err.to_string())),
        }
    }
}
