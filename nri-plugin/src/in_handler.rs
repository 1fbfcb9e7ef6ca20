//! Whether this thread is running an NRI handler. Inside one, log lines are queued without
//! waking the log writer (`logging`), and the fault tasks it starts or stops wait for the
//! handler's reply (`engine::after_reply`): a handler only plans and returns.

use std::cell::Cell;

thread_local! {
    /// True while this thread runs an NRI handler (see [`run`]).
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` as an NRI handler.
pub fn run<T>(work: impl FnOnce() -> T) -> T {
    let outer = IN_HANDLER.replace(true);
    let result = work();
    IN_HANDLER.set(outer);
    result
}

/// Whether this thread is inside [`run`].
pub fn active() -> bool {
    IN_HANDLER.get()
}
