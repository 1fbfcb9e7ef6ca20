//! What clients may hold of the control socket: at most [`Limits::connections`] connections
//! at once (a root peer beyond that is refused at accept, its connection closed), a deadline
//! for a connection's first request, and an idle deadline between requests. A connection that
//! sends nothing in time is closed, so a flood of clients that never send frees its slots
//! within seconds and memory stays bounded whatever the flood. A connection's requests in
//! flight are capped too ([`super::in_flight`]).
//!
//! ttrpc's server has no connection cap or read deadline of its own; it serves any
//! `AsyncRead + AsyncWrite`, so the deadlines live in the stream it is given ([`Limited`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::in_flight::InFlight;

/// The bounds of the control socket.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub connections: usize,
    /// Time from accept to the first request byte.
    pub first_request: Duration,
    /// Time without a byte from the client once it sent one. Longer than the longest call
    /// the service makes a client wait (`Recover` and an `Events` long poll: 10 s).
    pub idle: Duration,
}

impl Limits {
    /// What the plugin uses: an operator's `ctl`, a `ctl events --follow` or two, scripts.
    pub const DEFAULT: Limits = Limits {
        connections: 32,
        first_request: Duration::from_secs(5),
        idle: Duration::from_secs(20),
    };
}

/// The connection slots, and the refusals counted for the log.
#[derive(Debug)]
pub struct Slots {
    limits: Limits,
    semaphore: Arc<Semaphore>,
    refused: u64,
}

impl Slots {
    pub fn new(limits: Limits) -> Slots {
        Slots {
            limits,
            semaphore: Arc::new(Semaphore::new(limits.connections)),
            refused: 0,
        }
    }

    /// `stream` with a slot and its deadlines, or `None` (logged) when every slot is taken:
    /// the stream is dropped, so the client sees its connection closed at once.
    pub fn admit(&mut self, stream: UnixStream) -> Option<Limited> {
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Some(Limited::new(stream, permit, self.limits)),
            Err(_) => {
                self.refused += 1;
                // Logged at 1, 2, 4, 8 ... refusals: a flood cannot flood the log.
                if self.refused.is_power_of_two() {
                    tracing::warn!(
                        connections = self.limits.connections,
                        refused_so_far = self.refused,
                        "control socket: every connection slot is taken; refused a client"
                    );
                }
                None
            }
        }
    }
}

/// One admitted connection: it holds its slot until dropped, reads fail with `TimedOut`
/// when the client is silent past its deadline (ttrpc then closes the connection), and reading
/// pauses while [`super::in_flight::MAX_IN_FLIGHT`] requests await their answers.
#[derive(Debug)]
pub struct Limited {
    stream: UnixStream,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    in_flight: InFlight,
}

impl Limited {
    fn new(stream: UnixStream, slot: OwnedSemaphorePermit, limits: Limits) -> Limited {
        Limited {
            stream,
            _slot: slot,
            idle: limits.idle,
            deadline: Box::pin(tokio::time::sleep(limits.first_request)),
            in_flight: InFlight::default(),
        }
    }

    /// The client's deadline passed: the read fails and ttrpc closes the connection.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                tracing::debug!("control socket: client silent past its deadline; closed");
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "control client silent past its deadline",
                )))
            }
        }
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.in_flight.full() {
            // Woken by the answer that frees a place. The idle deadline still runs: it is
            // longer than the longest call, so only a stuck connection reaches it.
            self.in_flight.park(cx.waker());
            return self.poll_deadline(cx);
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                    let Limited { in_flight, .. } = &mut *self;
                    in_flight.read(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => self.poll_deadline(cx),
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            if self.in_flight.written(&buf[..n]) {
                let next = Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
            }
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
