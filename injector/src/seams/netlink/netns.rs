//! The thread that opens [`RouteSocket`]s in other network namespaces: `setns` only moves the
//! calling thread, so one long-lived thread of the process joins each namespace in turn and
//! opens the socket there; a socket stays bound to the namespace it was opened in for its
//! whole life and is then used from any thread. A thread of its own per open costs more than
//! the open itself (its stack, its signal stack, the join).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

use super::socket::{io_err, RouteSocket};
use super::NetlinkError;

/// A namespace to open a socket in, and where the socket goes.
type OpenJob = (File, PathBuf, Sender<Result<RouteSocket, NetlinkError>>);

/// The opener thread's queue (started on first use, started again if it ever ended).
static OPENER: Mutex<Option<Sender<OpenJob>>> = Mutex::new(None);

/// The opener thread: joins each job's namespace and opens its socket there. Its own
/// namespace matters to nothing else (it only opens sockets).
fn opener(jobs: Receiver<OpenJob>) {
    for (ns, path, reply) in jobs {
        let socket = move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network))
            .map_err(|errno| NetlinkError::Namespace {
                path,
                source: errno.into(),
            })
            .and_then(|()| RouteSocket::open_current());
        // The asker gave up waiting only if it is gone; nothing to tell then.
        let _ = reply.send(socket);
    }
}

/// Opens a socket in the namespace of `ns` on the opener thread.
pub(super) fn open_in(ns: File, path: PathBuf) -> Result<RouteSocket, NetlinkError> {
    let (reply, socket) = mpsc::channel();
    let mut queue = OPENER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut job = (ns, path, reply);
    for _ in 0..2 {
        let sender = match queue.as_ref() {
            Some(sender) => sender.clone(),
            None => {
                let (sender, jobs) = mpsc::channel();
                std::thread::Builder::new()
                    .name("nri-chaos-netns".into())
                    .spawn(move || opener(jobs))
                    .map_err(io_err("spawning the namespace thread"))?;
                *queue = Some(sender.clone());
                sender
            }
        };
        match sender.send(job) {
            Ok(()) => break,
            // The thread ended (it never does but by a panic): a new one takes the job.
            Err(mpsc::SendError(back)) => {
                *queue = None;
                job = back;
            }
        }
    }
    drop(queue);
    socket.recv().map_err(|_| NetlinkError::Malformed {
        op: "open",
        detail: "namespace thread ended".into(),
    })?
}
