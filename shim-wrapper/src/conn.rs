//! The server's unix sockets, registered with the runtime for readability only.
//!
//! Why not tokio's `UnixStream`: it registers every socket for reading and writing, edge
//! triggered, and a unix socket signals "writable" each time its peer reads. A forwarded call
//! then woke the server four times instead of two: when the runc shim took the request, and
//! again when containerd took the answer, each a context switch on the path of the call (seen
//! with strace: an `epoll_wait` returning EPOLLOUT after every `sendto`). Here a frame is
//! written straight away (the socket buffer holds hundreds of frames); only when it is full is
//! the writable state waited for, through a registration of its own for that wait.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// Registers `socket` with the runtime for `interest`.
fn register<S: AsRawFd>(socket: S, interest: Interest) -> io::Result<AsyncFd<S>> {
    // SAFETY: `S` is a std socket type that owns its descriptor: it stays open and the same
    // for as long as the AsyncFd holds it, and is closed only when the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register_with_interest(socket, interest) }?)
}

/// A connected socket: read through [`Reader`], written with [`Conn::write_all`].
#[derive(Debug)]
pub struct Conn(AsyncFd<UnixStream>);

impl Conn {
    /// Registers `stream` (made non-blocking) for readability.
    pub fn new(stream: UnixStream) -> io::Result<Arc<Conn>> {
        stream.set_nonblocking(true)?;
        Ok(Arc::new(Conn(register(stream, Interest::READABLE)?)))
    }

    /// Writes all of `buf` (callers serialise whole frames).
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.0.get_ref().write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the socket takes more (its buffer was full): a registration of a duplicate
    /// descriptor for writability, for this wait only.
    async fn writable(&self) -> io::Result<()> {
        let dup = self.0.get_ref().try_clone()?;
        let fd = register(dup, Interest::WRITABLE)?;
        let _ready = fd.writable().await?;
        Ok(())
    }

    /// Ends the writing direction (the peer reads end of file).
    pub fn shutdown_write(&self) {
        let _ = self.0.get_ref().shutdown(std::net::Shutdown::Write);
    }
}

/// The reading side of a [`Conn`], for a `BufReader`.
#[derive(Debug)]
pub struct Reader(pub Arc<Conn>);

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0 .0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let wanted = unfilled.len();
            match guard.try_io(|fd| fd.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    // Fewer bytes than asked: the socket is drained, so the next read waits
                    // for the next event rather than trying once more (as tokio's own streams).
                    if n > 0 && n < wanted {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// A listening socket registered for readability: its accepted connections come as [`Conn`]s.
#[derive(Debug)]
pub struct Listener(AsyncFd<UnixListener>);

impl Listener {
    /// Registers `listener` (made non-blocking).
    pub fn new(listener: UnixListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener(register(listener, Interest::READABLE)?))
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<Arc<Conn>> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|l| l.get_ref().accept()) {
                Ok(accepted) => return Conn::new(accepted?.0),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Connects to the socket at `path` (a full backlog is waited for, not blocked on).
pub async fn connect(path: &std::path::Path) -> io::Result<Arc<Conn>> {
    let stream = tokio::net::UnixStream::connect(path).await?;
    Conn::new(stream.into_std()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The epoll event mask `fd` is registered with, from the fdinfo of this process's epoll
    /// descriptors (`tfd: <fd> events: <hex mask> ...`).
    fn epoll_mask(fd: i32) -> Option<u32> {
        std::fs::read_dir("/proc/self/fd")
            .ok()?
            .flatten()
            .find_map(|e| {
                let target = std::fs::read_link(e.path()).ok()?;
                if target.as_os_str() != "anon_inode:[eventpoll]" {
                    return None;
                }
                let info = std::fs::read_to_string(format!(
                    "/proc/self/fdinfo/{}",
                    e.file_name().to_str()?
                ))
                .ok()?;
                info.lines().find_map(|l| {
                    let mut f = l.split_whitespace();
                    (f.next()? == "tfd:" && f.next()?.parse::<i32>().ok()? == fd).then_some(())?;
                    (f.next()? == "events:").then_some(())?;
                    u32::from_str_radix(f.next()?, 16).ok()
                })
            })
    }

    /// A listener in a temporary directory and a connection to it: (listener, client,
    /// server side, the directory).
    async fn pair() -> (Listener, Arc<Conn>, Arc<Conn>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = Listener::new(UnixListener::bind(&path).unwrap()).unwrap();
        let (client, server) = tokio::join!(connect(&path), listener.accept());
        (listener, client.unwrap(), server.unwrap(), dir)
    }

    #[tokio::test]
    async fn sockets_are_registered_for_reading_only() {
        let (listener, client, server, _dir) = pair().await;
        use rustix::event::epoll::EventFlags;
        let (epollin, epollout) = (EventFlags::IN.bits(), EventFlags::OUT.bits());
        for conn in [&client, &server] {
            let mask = epoll_mask(conn.0.get_ref().as_raw_fd()).expect("registered");
            assert_eq!(mask & (epollin | epollout), epollin, "mask {mask:#x}");
        }
        let mask = epoll_mask(listener.0.get_ref().as_raw_fd()).expect("registered");
        assert_eq!(mask & epollout, 0, "mask {mask:#x}");
    }

    #[tokio::test]
    async fn frames_pass_both_ways_and_a_full_buffer_is_waited_out() {
        let (_listener, client, server, _dir) = pair().await;
        // Far more than a unix socket buffer holds: the writer must wait for the reader.
        let big = vec![7u8; 8 << 20];
        let writer = {
            let client = client.clone();
            let big = big.clone();
            tokio::spawn(async move {
                client.write_all(&big).await.unwrap();
                client.shutdown_write();
            })
        };
        let mut got = Vec::new();
        Reader(server.clone()).read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), big.len());
        assert!(got == big);
        server.write_all(b"answer").await.unwrap();
        let mut answer = [0u8; 6];
        Reader(client).read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
    }
}
