//! Per-call timing of the forwarding, to see where a call's time goes: with
//! `NRI_CHAOS_SHIM_TIMING` set (to anything) in the wrapper's environment (containerd passes
//! its own to shims), each call forwarded to the runc shim logs one line once its answer is
//! relayed: the method, the wrapper's time before the request was written on (`in`), the
//! runc shim's time to answer (`runc`), and the wrapper's time to relay the answer (`out`),
//! in microseconds, with the wall-clock time the request was read (`at`, seconds since the
//! epoch, to be matched with containerd's log); each container's plan read logs its time, and
//! a Start or Delete that had to wait for its plan how long it waited. Off by default: then
//! it costs one branch per frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use protobuf::Message;
use ttrpc::proto::Request;

use crate::frame::Frame;

/// The environment variable that turns the timing lines on.
pub const TIMING_ENV: &str = "NRI_CHAOS_SHIM_TIMING";

/// Whether timing lines are on (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(TIMING_ENV).is_some())
}

/// A container's Start or Delete that waited for its plan, since `began`.
pub fn plan_waited(began: Instant) {
    if enabled() {
        crate::log(format_args!(
            "nri-chaos: timing a container call waited {} us for its plan",
            began.elapsed().as_micros()
        ));
    }
}

/// A call on its way: method, when its frame was read (and the wall clock then, to match
/// containerd's log), when it was written to the runc shim.
#[derive(Debug)]
struct Call {
    method: String,
    read: Instant,
    wall: SystemTime,
    sent: Instant,
}

/// The calls of one connection in flight, by stream id; `None` when timing is off.
#[derive(Debug, Clone, Default)]
pub struct Timing(Option<Arc<Mutex<HashMap<u32, Call>>>>);

impl Timing {
    /// For a new connection.
    pub fn new() -> Timing {
        Timing(enabled().then(Arc::default))
    }

    /// Request `frame`, read at `read`, has just been written to the runc shim.
    pub fn sent(&self, frame: &Frame, read: Instant) {
        let Some(calls) = &self.0 else { return };
        let method = Request::parse_from_bytes(frame.payload())
            .map(|r| r.method)
            .unwrap_or_default();
        let now = Instant::now();
        let call = Call {
            method,
            read,
            wall: SystemTime::now() - now.saturating_duration_since(read),
            sent: now,
        };
        if let Ok(mut calls) = calls.lock() {
            calls.insert(frame.header().stream_id, call);
        }
    }

    /// Answer `frame`, read from the runc shim at `got`, has just been written to containerd.
    pub fn answered(&self, frame: &Frame, got: Instant) {
        let Some(calls) = &self.0 else { return };
        let call = calls
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&frame.header().stream_id));
        if let Some(c) = call {
            let us = |a: Instant, b: Instant| b.saturating_duration_since(a).as_micros();
            let wall = c.wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            crate::log(format_args!(
                "nri-chaos: timing {} at {}.{:06} in {} us, runc {} us, out {} us",
                c.method,
                wall.as_secs(),
                wall.subsec_micros(),
                us(c.read, c.sent),
                us(c.sent, got),
                us(got, Instant::now())
            ));
        }
    }
}
