//! What an NRI handler leaves for after its reply: starting a fault's task and raising a
//! fault's stop signal both wake a runtime worker (forgetting a removed pod's firing counts
//! wakes the store's writer), and on a busy 2-core node the woken thread takes the handler's
//! CPU before the reply is out (most of the handler time tail). Inside
//! [`crate::in_handler::run`] the engine records the fault in its state under the lock as before (a Stop
//! or Remove arriving next sees it, `ctl list` shows it) and queues the wake-up here; the NRI
//! transport calls [`AfterReply::run`] once it has written a reply frame, and the supervisor
//! and the shutdown call it too, so nothing queued is lost when the connection goes away.
//!
//! A task whose stop is raised before it is started starts with its stop signal already up:
//! it ends at once through its stop path (the runner's stop branch, its disarm).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures_core::future::BoxFuture;

use super::state::ArmedFault;

/// Queued entries before the queue grows (in a handler, a push does not allocate).
const RESERVED: usize = 64;

/// A wake-up left for after the reply.
enum Deferred {
    /// A fault's task, to spawn.
    Start(BoxFuture<'static, ()>),
    /// A fault taken out of the state, whose stop signal is to be raised.
    Stop(ArmedFault),
    /// A change that wakes a thread (the store's writer): forgetting a pod's firing counts.
    Call(Box<dyn FnOnce() + Send>),
}

/// The queue of wake-ups left by handlers whose reply is not written yet.
pub(crate) struct AfterReply {
    queue: Mutex<Vec<Deferred>>,
    /// Something is queued (checked without the lock after every frame written).
    pending: AtomicBool,
    /// The runtime fault tasks run on: the one the engine was made on (the plugin's fair
    /// worker threads), not the NRI thread's real-time one that runs handlers and this queue.
    tasks: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for AfterReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfterReply")
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for AfterReply {
    fn default() -> Self {
        AfterReply {
            queue: Mutex::new(Vec::with_capacity(RESERVED)),
            pending: AtomicBool::new(false),
            tasks: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

impl AfterReply {
    fn lock(&self) -> MutexGuard<'_, Vec<Deferred>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn defer(&self, deferred: impl IntoIterator<Item = Deferred>) {
        let mut queue = self.lock();
        queue.extend(deferred);
        self.pending.store(true, Ordering::Release);
    }

    /// Spawns a fault's task: after the reply inside a handler, now elsewhere.
    pub fn start(&self, task: BoxFuture<'static, ()>) {
        if crate::in_handler::active() {
            self.defer([Deferred::Start(task)]);
        } else {
            self.spawn(task);
        }
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        match &self.tasks {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    /// Raises the stop signal of `faults` (taken out of the state): after the reply inside a
    /// handler, now elsewhere.
    pub fn stop(&self, faults: Vec<ArmedFault>) {
        if faults.is_empty() {
            return;
        }
        if crate::in_handler::active() {
            self.defer(faults.into_iter().map(Deferred::Stop));
        } else {
            faults.iter().for_each(ArmedFault::stop);
        }
    }

    /// Runs `work` (which wakes another thread): after the reply inside a handler, now
    /// elsewhere.
    pub fn call(&self, work: impl FnOnce() + Send + 'static) {
        if crate::in_handler::active() {
            self.defer([Deferred::Call(Box::new(work))]);
        } else {
            work();
        }
    }

    /// Spawns every queued task, raises every queued stop and runs every queued call, in
    /// their order; returns the stopped faults
    /// (the shutdown waits for their recovery). Cheap when nothing is queued.
    pub fn run(&self) -> Vec<ArmedFault> {
        if !self.pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let queued = {
            let mut queue = self.lock();
            self.pending.store(false, Ordering::Relaxed);
            std::mem::replace(&mut *queue, Vec::with_capacity(RESERVED))
        };
        let mut stopped = Vec::new();
        for deferred in queued {
            match deferred {
                Deferred::Start(task) => self.spawn(task),
                Deferred::Stop(fault) => stopped.push(fault),
                Deferred::Call(work) => work(),
            }
        }
        stopped.iter().for_each(ArmedFault::stop);
        stopped
    }

    /// Entries waiting (tests).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.lock().len()
    }
}
