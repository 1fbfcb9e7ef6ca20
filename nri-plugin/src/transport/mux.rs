//! The NRI multiplexer, plugin side: virtual byte-stream connections over one unix stream.
//!
//! [`Mux::start`] takes the stream and the connection ids to open and hands back one
//! [`DuplexStream`] per id; ttrpc runs on those as if each were its own socket. Frames for ids
//! nobody opened are dropped (as the protocol says). When the stream ends or fails, every
//! virtual connection sees end-of-stream and [`Mux::closed`] resolves with the reason.
//! [`AfterWrite`] runs after every frame written (and when the writer ends): what NRI handlers
//! left for after their reply starts once the reply is out.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::frame::{read_frame, write_frame, ConnId};

/// Buffer of each virtual connection, and so the largest frame we send.
const CONN_BUFFER: usize = 64 * 1024;
/// Frames queued for the writer before virtual connections wait.
const WRITE_QUEUE: usize = 64;

/// Called after each frame is written to the stream, and once more when the writer ends.
pub type AfterWrite = Arc<dyn Fn() + Send + Sync>;

/// A running multiplexer. Dropping it tears the stream and every virtual connection down.
#[derive(Debug)]
pub struct Mux {
    closed: watch::Receiver<Option<String>>,
    tasks: JoinSet<()>,
}

impl Mux {
    /// Starts multiplexing `stream`, opening the virtual connections `conns`; `after_write`
    /// runs after each frame written.
    pub fn start<S>(
        stream: S,
        conns: &[ConnId],
        after_write: AfterWrite,
    ) -> (Mux, HashMap<ConnId, DuplexStream>)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (stream_read, stream_write) = tokio::io::split(stream);
        let (frame_tx, frame_rx) = mpsc::channel::<(ConnId, Vec<u8>)>(WRITE_QUEUE);
        let (closed_tx, closed_rx) = watch::channel(None);
        let mut tasks = JoinSet::new();
        let mut handed_out = HashMap::new();
        let mut inbound: HashMap<ConnId, WriteHalf<DuplexStream>> = HashMap::new();

        for &conn in conns {
            let (ours, theirs) = tokio::io::duplex(CONN_BUFFER);
            let (mut ours_read, ours_write) = tokio::io::split(ours);
            inbound.insert(conn, ours_write);
            handed_out.insert(conn, theirs);
            let frame_tx = frame_tx.clone();
            let mut stream_gone = closed_rx.clone();
            tasks.spawn(async move {
                let mut buf = vec![0u8; CONN_BUFFER];
                loop {
                    let read = tokio::select! {
                        read = ours_read.read(&mut buf) => read,
                        // The stream is gone: drop our half so the user sees end-of-stream.
                        _ = stream_gone.wait_for(Option::is_some) => break,
                    };
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if frame_tx.send((conn, buf[..n].to_vec())).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        drop(frame_tx);

        let writer_closed = closed_tx.clone();
        tasks.spawn(write_loop(
            stream_write,
            frame_rx,
            writer_closed,
            after_write,
        ));
        tasks.spawn(read_loop(stream_read, inbound, closed_tx));
        (
            Mux {
                closed: closed_rx,
                tasks,
            },
            handed_out,
        )
    }

    /// Resolves when the multiplexed stream is gone, with the reason.
    pub async fn closed(&mut self) -> String {
        loop {
            if let Some(reason) = self.closed.borrow().clone() {
                return reason;
            }
            if self.closed.changed().await.is_err() {
                return "multiplexer stopped".to_string();
            }
        }
    }

    /// Stops every task of the multiplexer; the stream is closed.
    pub fn shutdown(&mut self) {
        self.tasks.abort_all();
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

fn mark_closed(closed: &watch::Sender<Option<String>>, reason: String) {
    closed.send_if_modified(|current| {
        if current.is_none() {
            *current = Some(reason);
            true
        } else {
            false
        }
    });
}

async fn write_loop<W: AsyncWrite>(
    stream_write: W,
    mut frames: mpsc::Receiver<(ConnId, Vec<u8>)>,
    closed: watch::Sender<Option<String>>,
    after_write: AfterWrite,
) {
    tokio::pin!(stream_write);
    while let Some((conn, payload)) = frames.recv().await {
        let written = write_frame(&mut stream_write, conn, &payload).await;
        after_write();
        if let Err(err) = written {
            mark_closed(&closed, format!("write failed: {err}"));
            return;
        }
    }
    let _ = stream_write.shutdown().await;
    after_write();
}

async fn read_loop<R: AsyncRead>(
    stream_read: R,
    mut inbound: HashMap<ConnId, WriteHalf<DuplexStream>>,
    closed: watch::Sender<Option<String>>,
) {
    tokio::pin!(stream_read);
    let reason = loop {
        match read_frame(&mut stream_read).await {
            Ok(Some((conn, payload))) => {
                let Some(target) = inbound.get_mut(&conn) else {
                    tracing::debug!(
                        conn,
                        len = payload.len(),
                        "dropping frame for unopened connection"
                    );
                    continue;
                };
                if target.write_all(&payload).await.is_err() {
                    // The virtual connection's user is gone; later frames for it are dropped.
                    inbound.remove(&conn);
                }
            }
            Ok(None) => break "peer closed the connection".to_string(),
            Err(err) => break format!("read failed: {err}"),
        }
    };
    // Dropping the write halves gives every virtual connection end-of-stream.
    inbound.clear();
    mark_closed(&closed, reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame::{PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN};

    fn nothing_after() -> AfterWrite {
        Arc::new(|| {})
    }

    #[tokio::test]
    async fn routes_frames_by_connection_and_drops_unknown_ids() {
        let (plugin_end, mut peer) = tokio::io::duplex(1 << 20);
        let (mut mux, mut conns) = Mux::start(
            plugin_end,
            &[PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN],
            nothing_after(),
        );
        let mut plugin_conn = conns.remove(&PLUGIN_SERVICE_CONN).unwrap();
        let mut runtime_conn = conns.remove(&RUNTIME_SERVICE_CONN).unwrap();

        write_frame(&mut peer, 7, b"nobody").await.unwrap();
        write_frame(&mut peer, RUNTIME_SERVICE_CONN, b"to-runtime")
            .await
            .unwrap();
        write_frame(&mut peer, PLUGIN_SERVICE_CONN, b"to-plugin")
            .await
            .unwrap();

        let mut buf = [0u8; 10];
        runtime_conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"to-runtime");
        let mut buf = [0u8; 9];
        plugin_conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"to-plugin");

        plugin_conn.write_all(b"reply").await.unwrap();
        let (conn, payload) = read_frame(&mut peer).await.unwrap().unwrap();
        assert_eq!(
            (conn, payload.as_slice()),
            (PLUGIN_SERVICE_CONN, &b"reply"[..])
        );

        drop(peer);
        assert_eq!(mux.closed().await, "peer closed the connection");
        let mut rest = Vec::new();
        plugin_conn.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn after_write_runs_once_a_frame_is_written_and_when_the_writer_ends() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (plugin_end, mut peer) = tokio::io::duplex(1 << 20);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let after: AfterWrite = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let (_mux, mut conns) = Mux::start(plugin_end, &[PLUGIN_SERVICE_CONN], after);
        let mut conn = conns.remove(&PLUGIN_SERVICE_CONN).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing written yet");
        conn.write_all(b"reply").await.unwrap();
        let (_, payload) = read_frame(&mut peer).await.unwrap().unwrap();
        assert_eq!(payload, b"reply");
        let wait_for = |n: usize| {
            let calls = calls.clone();
            async move {
                for _ in 0..200 {
                    if calls.load(Ordering::SeqCst) >= n {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                calls.load(Ordering::SeqCst)
            }
        };
        assert_eq!(wait_for(1).await, 1);
        // The last connection closes: the writer ends, and runs it once more.
        drop(conn);
        assert_eq!(wait_for(2).await, 2);
    }

    #[tokio::test]
    async fn large_writes_are_split_into_bounded_frames() {
        let (plugin_end, mut peer) = tokio::io::duplex(1 << 20);
        let (_mux, mut conns) = Mux::start(plugin_end, &[RUNTIME_SERVICE_CONN], nothing_after());
        let mut conn = conns.remove(&RUNTIME_SERVICE_CONN).unwrap();
        let big = vec![0xabu8; 3 * CONN_BUFFER + 5];
        let writer = tokio::spawn(async move {
            conn.write_all(&big).await.unwrap();
            conn
        });
        let mut got = 0;
        while got < 3 * CONN_BUFFER + 5 {
            let (id, payload) = read_frame(&mut peer).await.unwrap().unwrap();
            assert_eq!(id, RUNTIME_SERVICE_CONN);
            assert!(payload.len() <= CONN_BUFFER);
            assert!(payload.iter().all(|b| *b == 0xab));
            got += payload.len();
        }
        assert_eq!(got, 3 * CONN_BUFFER + 5);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn oversized_frame_from_peer_closes_the_mux() {
        let (plugin_end, mut peer) = tokio::io::duplex(1024);
        let (mut mux, _conns) = Mux::start(plugin_end, &[PLUGIN_SERVICE_CONN], nothing_after());
        peer.write_all(&[0, 0, 0, 1, 0xff, 0, 0, 0]).await.unwrap();
        let reason = mux.closed().await;
        assert!(reason.contains("more than"), "{reason}");
    }
}
