//! The NRI multiplexer (`nri-plugin/src/transport/mux.rs`) reading what containerd sends on
//! the NRI socket: `[u32 conn][u32 len]` frames. Checks: no panic, no hang; each virtual
//! connection receives exactly the payloads of the well-formed frames for it, in order, up to
//! the first refused frame; frames for other ids are dropped; the mux reports why it closed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nri_chaos_fuzz::frame::{decode_header, HEADER_LEN};
use nri_chaos_fuzz::mux::Mux;
use nri_chaos_fuzz::runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a correct mux delivers to connections 1 and 2, and whether the stream ends cleanly.
fn expected(mut data: &[u8]) -> (Vec<u8>, Vec<u8>, bool) {
    let (mut one, mut two) = (Vec::new(), Vec::new());
    loop {
        if data.len() < HEADER_LEN {
            // A partial header at the end is a clean end of stream.
            return (one, two, true);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&data[..HEADER_LEN]);
        let Ok((conn, len)) = decode_header(&header) else {
            return (one, two, false);
        };
        let rest = &data[HEADER_LEN..];
        if rest.len() < len {
            return (one, two, false);
        }
        match conn {
            1 => one.extend_from_slice(&rest[..len]),
            2 => two.extend_from_slice(&rest[..len]),
            _ => {}
        }
        data = &rest[len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let (want_one, want_two, clean) = expected(data);
    runtime().block_on(async {
        let (plugin_end, mut peer) = tokio::io::duplex(1 << 20);
        let (mut mux, mut conns) = Mux::start(plugin_end, &[1, 2], std::sync::Arc::new(|| {}));
        let (Some(mut one), Some(mut two)) = (conns.remove(&1), conns.remove(&2)) else {
            panic!("the mux did not open connections 1 and 2");
        };
        let read_one = tokio::spawn(async move {
            let mut got = Vec::new();
            let _ = one.read_to_end(&mut got).await;
            got
        });
        let read_two = tokio::spawn(async move {
            let mut got = Vec::new();
            let _ = two.read_to_end(&mut got).await;
            got
        });
        peer.write_all(data)
            .await
            .unwrap_or_else(|err| panic!("peer write: {err}"));
        peer.shutdown()
            .await
            .unwrap_or_else(|err| panic!("peer shutdown: {err}"));
        let reason = tokio::time::timeout(std::time::Duration::from_secs(5), mux.closed())
            .await
            .unwrap_or_else(|_| panic!("the mux did not notice the end of the stream"));
        let got_one = read_one.await.unwrap_or_else(|err| panic!("{err}"));
        let got_two = read_two.await.unwrap_or_else(|err| panic!("{err}"));
        assert!(got_one == want_one, "connection 1 got other bytes");
        assert!(got_two == want_two, "connection 2 got other bytes");
        if clean {
            assert_eq!(reason, "peer closed the connection");
        } else {
            assert!(reason.starts_with("read failed: "), "{reason}");
        }
        drop(peer);
    });
});
