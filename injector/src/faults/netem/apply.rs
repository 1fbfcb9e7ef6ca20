//! The netem fault's apply and recovery over the netlink seam (see the module doc).

use crate::annotations::FaultKind;
use std::path::{Path, PathBuf};

use crate::faults::undo::clear_logged;
use crate::faults::{Fault, Kernel, Undo, UndoLog, UndoLogError};
use crate::journal::Recovery;
use crate::seams::netlink::netem_options::netem_options;
use crate::seams::netlink::{
    select_links, Link, Netlink, NetlinkError, NoLink, QdiscOps, SavedQdisc, ShapedInterface,
    NRI_CHAOS_HANDLE,
};

use super::NetemFault;

/// Errors of the netem fault.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    /// A netlink operation failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// `interface` selects nothing.
    #[error(transparent)]
    NoLink(#[from] NoLink),
    /// Our targeted-fault tree holds the interface.
    #[error("interface {interface}: targeted network faults of nri-chaos hold it ({kind} root); an untargeted netem cannot join them")]
    Targeted {
        /// The interface.
        interface: String,
        /// The root qdisc's kind.
        kind: String,
    },
    /// The recovery could not be journaled, so netem was not installed.
    #[error("not applied: {0}")]
    Log(#[from] UndoLogError),
    /// An install failed, and putting back the interfaces shaped before it failed too.
    #[error("{error}; putting back the interfaces already shaped failed too (kept in the journal): {undo}")]
    NotUndone {
        /// Why the install failed.
        error: NetlinkError,
        /// Why the put-back failed.
        undo: Box<NetemError>,
    },
    /// Putting back the root qdisc of some interfaces failed (every interface was tried).
    #[error("putting back the root qdisc in {}: {}", .netns.display(), .failures.join("; "))]
    Remove {
        /// The namespace.
        netns: PathBuf,
        /// `interface <name>: <error>` per failure.
        failures: Vec<String>,
    },
}

/// What a netem firing must undo: the interfaces it shaped in a namespace, and their saved
/// root qdiscs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetemUndo {
    /// The pod's network namespace.
    pub netns: PathBuf,
    /// The interfaces (an empty list, as an older journal may hold: every interface whose
    /// root qdisc is ours).
    pub interfaces: Vec<ShapedInterface>,
}

impl Undo for NetemUndo {
    fn recovery(&self) -> Option<Recovery> {
        Some(Recovery::RemoveNetem {
            netns: self.netns.clone(),
            interfaces: self.interfaces.clone(),
        })
    }
}

/// The interfaces `interface` selects in the namespace: that one, or every non-loopback one.
fn target_links(ops: &mut dyn QdiscOps, interface: Option<&str>) -> Result<Vec<Link>, NetemError> {
    Ok(select_links(ops.links()?, interface)?)
}

/// Puts back what was there before nri-chaos on every interface whose root qdisc is still
/// ours: the saved qdisc, or the kernel's default. Every interface is tried.
fn put_back(
    ops: &mut dyn QdiscOps,
    netns: &Path,
    interfaces: &[ShapedInterface],
) -> Result<(), NetemError> {
    let mut failures = Vec::new();
    for shaped in interfaces {
        let done = ops.root_qdisc(shaped.index).and_then(|root| {
            if !root.is_some_and(|q| q.is_ours()) {
                return Ok(());
            }
            match &shaped.saved {
                Some(saved) => ops.restore_root_qdisc(shaped.index, saved),
                None => ops.delete_root_qdisc(shaped.index),
            }
        });
        if let Err(err) = done {
            failures.push(format!("interface {}: {err}", shaped.name));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(NetemError::Remove {
            netns: netns.to_path_buf(),
            failures,
        })
    }
}

impl NetemFault {
    /// [`Fault::apply`] with any root qdisc `kind` and `options` (the same path, testable
    /// with `pfifo` on kernels without sch_netem). An interface whose root qdisc is already
    /// ours (the OCI hook was first) is left as it is, and still removed at the end.
    pub fn shape(
        netlink: &dyn Netlink,
        netns: &Path,
        interface: Option<&str>,
        (kind, options): (&str, &[u8]),
        log: &mut dyn UndoLog,
    ) -> Result<NetemUndo, NetemError> {
        let mut ops = netlink.open(netns)?;
        let mut plan = Vec::new();
        for link in target_links(ops.as_mut(), interface)? {
            let root = ops.root_qdisc(link.index)?;
            let ours = root.as_ref().is_some_and(|q| q.is_ours());
            if let Some(q) = root.as_ref().filter(|q| q.is_ours() && q.kind != kind) {
                return Err(NetemError::Targeted {
                    interface: link.name,
                    kind: q.kind.clone(),
                });
            }
            let saved = root
                .filter(|q| !q.is_default() && !q.is_ours())
                .map(|q| SavedQdisc {
                    kind: q.kind,
                    handle: q.handle,
                    options: q.options,
                });
            let shaped = ShapedInterface {
                index: link.index,
                name: link.name,
                saved,
            };
            plan.push((shaped, ours));
        }
        let undo = NetemUndo {
            netns: netns.to_path_buf(),
            interfaces: plan.iter().map(|(s, _)| s.clone()).collect(),
        };
        let slot = log.record(Recovery::RemoveNetem {
            netns: undo.netns.clone(),
            interfaces: undo.interfaces.clone(),
        })?;
        let mut installed = Vec::new();
        for (shaped, ours) in &plan {
            if *ours {
                continue;
            }
            let done = ops.replace_root_qdisc(shaped.index, kind, NRI_CHAOS_HANDLE, options);
            if let Err(error) = done {
                return Err(match put_back(ops.as_mut(), netns, &installed) {
                    Ok(()) => {
                        clear_logged(log, slot);
                        error.into()
                    }
                    Err(undo) => NetemError::NotUndone {
                        error,
                        undo: Box::new(undo),
                    },
                });
            }
            installed.push(shaped.clone());
        }
        Ok(undo)
    }
}

impl Fault for NetemFault {
    const KIND: FaultKind = FaultKind::Netem;
    const RECOVERED: &'static str = "netem removed";
    const JOURNALS_FIRST: bool = true;
    /// The pod's network namespace file.
    type Target = PathBuf;
    type Undo = NetemUndo;
    type Error = NetemError;

    fn apply(
        &self,
        kernel: &Kernel<'_>,
        netns: &PathBuf,
        log: &mut dyn UndoLog,
    ) -> Result<NetemUndo, NetemError> {
        let started = std::time::Instant::now();
        let options = netem_options(self);
        let undo = NetemFault::shape(
            kernel.netlink,
            netns,
            self.interface.as_deref(),
            ("netem", &options),
            log,
        )?;
        let names: Vec<&str> = undo.interfaces.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(
            interfaces = %names.join(","),
            netem = %self,
            apply_us = started.elapsed().as_micros() as u64,
            "netem installed"
        );
        Ok(undo)
    }

    /// Puts back every interface of `undo` whose root qdisc is still ours. A namespace that
    /// no longer exists (the pod is gone, and its qdiscs with it) is done.
    fn recover(kernel: &Kernel<'_>, undo: NetemUndo) -> Result<(), NetemError> {
        let mut ops = match kernel.netlink.open(&undo.netns) {
            Ok(ops) => ops,
            Err(err) if err.is_namespace_gone() => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        if undo.interfaces.is_empty() {
            let every: Vec<ShapedInterface> = ops
                .links()?
                .into_iter()
                .map(|l| ShapedInterface {
                    index: l.index,
                    name: l.name,
                    saved: None,
                })
                .collect();
            return put_back(ops.as_mut(), &undo.netns, &every);
        }
        put_back(ops.as_mut(), &undo.netns, &undo.interfaces)
    }

    fn target_gone(err: &NetemError) -> bool {
        matches!(err, NetemError::Netlink(NetlinkError::Namespace { .. }))
    }
}
