//! The control socket's accept stream: root peers only, each given a connection slot and
//! deadlines ([`super::limits`]), and a backoff on accept errors.
//!
//! An accept that fails (EMFILE/ENFILE when nri-chaos is out of descriptors, ENOBUFS ...)
//! leaves the pending connection in the backlog, so the listener stays readable and an
//! immediate retry fails again. Retrying at once would spin a runtime worker and flood the
//! log; instead the stream sleeps (10 ms, doubling up to 1 s) between attempts, logs the first
//! failure of a burst once, and logs once more, with the count, when an accept succeeds again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::time::Sleep;

use super::limits::{Limited, Limits, Slots};

/// First pause after a failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between two attempts while accepts keep failing.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Who may use the control API: root only.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0
}

/// A run of failed accepts: how many, and the pause before the next attempt.
#[derive(Debug, Default)]
struct Burst {
    failures: u64,
    pause: Option<Pin<Box<Sleep>>>,
}

impl Burst {
    /// Records a failure (logged only when it opens the burst) and arms the next pause.
    fn failed(&mut self, err: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(
                error = %err,
                "control socket: accept failed; retrying with backoff up to {MAX_PAUSE:?} \
                 (logged once until an accept succeeds)"
            );
        }
        self.failures += 1;
        let shift = u32::try_from(self.failures - 1).unwrap_or(u32::MAX).min(7);
        let pause = (FIRST_PAUSE * (1 << shift)).min(MAX_PAUSE);
        self.pause = Some(Box::pin(tokio::time::sleep(pause)));
    }

    /// An accept succeeded: ends the burst.
    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failed_accepts = self.failures,
                "control socket: accepting again"
            );
            self.failures = 0;
        }
    }
}

/// Accepted connections whose peer is root and that got a slot; others are logged and
/// closed.
pub struct RootOnly {
    listener: UnixListener,
    burst: Burst,
    slots: Slots,
}

impl RootOnly {
    pub fn new(listener: UnixListener, limits: Limits) -> RootOnly {
        RootOnly {
            listener,
            burst: Burst::default(),
            slots: Slots::new(limits),
        }
    }
}

impl futures_core::Stream for RootOnly {
    type Item = std::io::Result<Limited>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(pause) = self.burst.pause.as_mut() {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.burst.pause = None;
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                // Not an end of the server's accept loop: pause (the loop polls the new
                // pause next, which registers the wake-up) and try again.
                Poll::Ready(Err(err)) => self.burst.failed(&err),
                Poll::Ready(Ok((stream, _))) => {
                    self.burst.succeeded();
                    match stream.peer_cred() {
                        Ok(cred) if peer_allowed(cred.uid()) => {
                            if let Some(admitted) = self.slots.admit(stream) {
                                return Poll::Ready(Some(Ok(admitted)));
                            }
                        }
                        Ok(cred) => {
                            tracing::warn!(
                                uid = cred.uid(),
                                gid = cred.gid(),
                                pid = cred.pid().unwrap_or(0),
                                "control socket: refused a client that is not root; connection closed"
                            );
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "control socket: cannot read the client's credentials; connection closed");
                        }
                    }
                }
            }
        }
    }
}
