//! The netem effect (pod scoped): a netem root qdisc on the pod's interfaces, installed by
//! netlink inside the pod's network namespace, removed at the end (a root qdisc that was
//! there before is put back). On a kernel without sch_netem the fault is reported as
//! unsupported with that reason and the pod is unaffected.

use std::path::PathBuf;
use std::sync::Arc;

use injector::faults::netem::NetemFault;
use injector::seams::netlink::netem_options::netem_options;
use injector::seams::netlink::{install_netem, target_links, NetlinkError, RouteSocket};
use injector::{FaultKind, Recovery};

use crate::engine::journal_ops::{entry, Journaled};
use crate::engine::runner::{Effect, FireError, FiringInfo, Holding, Target};
use crate::engine::Inner;

/// An armed netem fault of one pod.
#[derive(Debug)]
pub(in crate::engine) struct NetemEffect {
    pub netem: NetemFault,
    pub netns: PathBuf,
    pub hold: Option<std::time::Duration>,
}

fn failed(err: NetlinkError) -> FireError {
    match err {
        NetlinkError::Namespace { .. } => FireError::TargetGone(err.to_string()),
        other => FireError::Failed(other.to_string()),
    }
}

impl Effect for NetemEffect {
    fn kind(&self) -> FaultKind {
        FaultKind::Netem
    }

    async fn fire(
        &self,
        engine: &Arc<Inner>,
        target: &Target,
        firing: FiringInfo,
    ) -> Result<Option<Box<dyn Holding>>, FireError> {
        let (engine_c, target_c) = (engine.clone(), target.clone());
        let (netem, netns, hold) = (self.netem.clone(), self.netns.clone(), self.hold);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let mut socket = RouteSocket::open_in_netns(&netns).map_err(failed)?;
            let links = target_links(&mut socket, netem.interface.as_deref()).map_err(failed)?;
            if links.is_empty() {
                return Err(FireError::Failed(
                    "the pod's network namespace has no interface but loopback".into(),
                ));
            }
            // Journaled with the interfaces first (no saved qdiscs yet): a crash between the
            // record and the install leaves an entry whose recovery removes only qdiscs that
            // carry nri-chaos's handle.
            let mut journaled = entry(
                &target_c,
                FaultKind::Netem,
                hold,
                Recovery::RemoveNetem {
                    netns: netns.clone(),
                    interfaces: Vec::new(),
                },
            );
            engine_c
                .journal_record(&journaled)
                .map_err(FireError::Failed)?;
            let shaped = match install_netem(&mut socket, &links, &netem_options(&netem)) {
                Ok(shaped) => shaped,
                Err(err) => {
                    engine_c.journal_clear(&journaled.id);
                    return Err(failed(err));
                }
            };
            journaled.recovery = Recovery::RemoveNetem {
                netns,
                interfaces: shaped.clone(),
            };
            if let Err(err) = engine_c.journal_update(&journaled) {
                tracing::error!(error = %err, "journaling netem interfaces");
            }
            let names: Vec<&str> = shaped.iter().map(|s| s.name.as_str()).collect();
            tracing::info!(
                pod = %target_c.pod,
                fault = "netem",
                interfaces = %names.join(","),
                netem = %netem,
                ordinal = firing.ordinal,
                apply_us = started.elapsed().as_micros() as u64,
                "netem installed"
            );
            Ok(Some(Box::new(Journaled {
                journaled,
                done: "netem removed",
            }) as Box<dyn Holding>))
        })
        .await
        .map_err(|err| FireError::Failed(format!("netem task: {err}")))?
    }
}
