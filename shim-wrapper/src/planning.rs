//! A container's plan is read off the request path: its task `Create` is passed to the runc
//! shim at once, and the bundle's `config.json` is read on tokio's blocking pool while runc
//! creates the container, so the server's thread never waits on the disk and relays the runc
//! shim's answers meanwhile. Until the plan is recorded, the container's `Start` and `Delete`
//! wait for it (containerd sends them after Create's answer, so in practice they never do);
//! nothing else of a container needs its plan before its Start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use containerd_shim_protos::api::CreateTaskRequest;
use tokio::sync::watch;

use crate::intercept::Shared;
use crate::plan::ExecPlan;

/// The plans being read, by container id: each turns `true` once recorded.
#[derive(Debug, Default)]
pub struct Pending(Mutex<HashMap<String, watch::Receiver<bool>>>);

impl Pending {
    fn map(&self) -> MutexGuard<'_, HashMap<String, watch::Receiver<bool>>> {
        // A panic under this lock leaves a plain map; serving on beats stopping the pod.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plan of container `id` if it is still being read.
    pub fn of(&self, id: &str) -> Option<watch::Receiver<bool>> {
        self.map().get(id).cloned()
    }
}

/// A `Create` whose plan is to be read: registered at routing, before the frame is written,
/// so no Start of the container can be routed before it. Dropped (read done, or never
/// started because the connection failed), it releases the container's waiters.
#[derive(Debug)]
pub struct Planned {
    shared: Arc<Shared>,
    create: CreateTaskRequest,
    done: watch::Sender<bool>,
}

impl Planned {
    /// Registers the plan of `create` as being read.
    pub fn begin(shared: &Arc<Shared>, create: CreateTaskRequest) -> Planned {
        let (done, rx) = watch::channel(false);
        shared.pending.map().insert(create.id.clone(), rx);
        Planned {
            shared: shared.clone(),
            create,
            done,
        }
    }

    /// The Create request.
    pub fn create(&self) -> &CreateTaskRequest {
        &self.create
    }

    /// Reads and records the plan on tokio's blocking pool (call once the Create frame is on
    /// its way to the runc shim).
    pub fn read(self) {
        tokio::task::spawn_blocking(move || self.record());
    }

    /// Reads and records the plan here (the blocking pool's thread).
    fn record(self) {
        let id = &self.create.id;
        let began = std::time::Instant::now();
        let plan = match ExecPlan::read(id, Path::new(&self.create.bundle)) {
            Ok(plan) => plan,
            Err(err) => {
                crate::log(format_args!(
                    "nri-chaos: container {id}: {err}; it runs without exec faults"
                ));
                ExecPlan::default()
            }
        };
        for w in &plan.windows {
            crate::log(format_args!(
                "nri-chaos: container {id} ({}): exec fault {} from {}",
                plan.name,
                w.window.fault(),
                w.origin
            ));
        }
        self.shared.execs().created(id, plan);
        if crate::timing::enabled() {
            crate::log(format_args!(
                "nri-chaos: timing plan of {id} read in {} us",
                began.elapsed().as_micros()
            ));
        }
    }
}

impl Drop for Planned {
    fn drop(&mut self) {
        let mut map = self.shared.pending.map();
        // Only this Create's entry: a later Create of the same id registered its own.
        if map
            .get(&self.create.id)
            .is_some_and(|rx| rx.same_channel(&self.done.subscribe()))
        {
            map.remove(&self.create.id);
        }
        drop(map);
        let _ = self.done.send(true);
    }
}

/// Waits until `rx`'s plan is recorded or abandoned.
pub async fn recorded(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|done| *done).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_abandoned_read_releases_its_waiters() {
        let shared = Arc::new(Shared::default());
        let mut create = CreateTaskRequest::new();
        create.id = "c1".into();
        let planned = Planned::begin(&shared, create.clone());
        let rx = shared
            .pending
            .of("c1")
            .expect("registered before the frame is written");
        // A second Create of the same id replaces the entry; the first one's end leaves it.
        let again = Planned::begin(&shared, create);
        drop(planned);
        recorded(rx).await;
        let rx = shared
            .pending
            .of("c1")
            .expect("the second Create's entry stays");
        drop(again);
        recorded(rx).await;
        assert!(shared.pending.of("c1").is_none());
    }
}
