//! The requests a control client has in flight on one connection, counted from the ttrpc
//! frames that cross it, so that a client pipelining requests without reading the answers
//! cannot make the plugin queue work without limit.
//!
//! Why here and by hand: ttrpc's server spawns a task for every request frame as soon as it is
//! read and has no cap of its own; the frames' 10-byte header (length u32 BE, stream id u32 BE,
//! type u8, flags u8; type 1 request, 2 response) is a wire fact, and counting it in the stream
//! ttrpc is given ([`super::limits::Limited`]) is the one place that sees both directions.

use std::task::Waker;

/// Requests one connection may have in flight before the plugin stops reading from it (the
/// client's further writes then wait in its socket buffer). `ctl` sends one at a time.
pub const MAX_IN_FLIGHT: usize = 8;

const HEADER_LEN: usize = 10;
const TYPE_REQUEST: u8 = 1;
const TYPE_RESPONSE: u8 = 2;

/// Splits a byte stream into ttrpc frames: reports each frame's type once its header is in.
#[derive(Debug, Default)]
struct FrameScanner {
    header: [u8; HEADER_LEN],
    have: usize,
    body_left: u64,
}

impl FrameScanner {
    /// Counts the frames of `kind` whose header completes within `bytes`.
    fn frames_of(&mut self, kind: u8, mut bytes: &[u8]) -> usize {
        let mut found = 0;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER_LEN {
                self.have = 0;
                let [a, b, c, d, ..] = self.header;
                self.body_left = u64::from(u32::from_be_bytes([a, b, c, d]));
                if self.header[8] == kind {
                    found += 1;
                }
            }
        }
        found
    }

    /// Between two frames (nothing of a frame read yet).
    fn between_frames(&self) -> bool {
        self.have == 0 && self.body_left == 0
    }
}

/// Requests read and not yet answered on one connection.
#[derive(Debug, Default)]
pub struct InFlight {
    reads: FrameScanner,
    writes: FrameScanner,
    requests: usize,
    parked: Option<Waker>,
}

impl InFlight {
    /// Bytes the server read from the client.
    pub fn read(&mut self, bytes: &[u8]) {
        self.requests += self.reads.frames_of(TYPE_REQUEST, bytes);
    }

    /// Bytes the server wrote to the client; true when this reopened a parked reader (the
    /// caller then restarts the client's idle deadline: the wait was ours, not the client's).
    pub fn written(&mut self, bytes: &[u8]) -> bool {
        let answered = self.writes.frames_of(TYPE_RESPONSE, bytes);
        self.requests = self.requests.saturating_sub(answered);
        if answered > 0 && !self.full() {
            if let Some(reader) = self.parked.take() {
                reader.wake();
                return true;
            }
        }
        false
    }

    /// Whether reading must wait for answers: the cap is reached and the last request read is
    /// whole (its body is read, so ttrpc can dispatch it).
    pub fn full(&self) -> bool {
        self.requests >= MAX_IN_FLIGHT && self.reads.between_frames()
    }

    /// Remembers the reader to wake once an answer leaves.
    pub fn park(&mut self, reader: &Waker) {
        self.parked = Some(reader.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&7u32.to_be_bytes());
        out.extend_from_slice(&[kind, 0]);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn requests_count_up_and_answers_count_down_whatever_the_chunking() {
        let mut flight = InFlight::default();
        let requests: Vec<u8> = (0..MAX_IN_FLIGHT)
            .flat_map(|i| frame(TYPE_REQUEST, &vec![1; i * 3]))
            .collect();
        // One byte at a time: headers and bodies split anywhere.
        for byte in &requests {
            flight.read(std::slice::from_ref(byte));
        }
        assert!(flight.full());
        // A data frame (type 3) is not an answer; a response with a body that holds bytes
        // looking like headers is one answer.
        let mut answers = frame(3, b"xx");
        answers.extend(frame(TYPE_RESPONSE, &frame(TYPE_RESPONSE, b"")));
        let (first, rest) = answers.split_at(5);
        flight.written(first);
        assert!(flight.full());
        flight.written(rest);
        assert!(!flight.full());
        assert_eq!(flight.requests, MAX_IN_FLIGHT - 1);
    }

    #[test]
    fn an_answer_wakes_the_parked_reader_once_below_the_cap() {
        let mut flight = InFlight::default();
        flight.read(&frame(TYPE_REQUEST, b"q").repeat(MAX_IN_FLIGHT + 1));
        let waker = std::task::Waker::noop();
        flight.park(waker);
        assert!(
            !flight.written(&frame(TYPE_RESPONSE, b"a")),
            "still at the cap"
        );
        assert!(
            flight.written(&frame(TYPE_RESPONSE, b"a")),
            "below the cap: woken"
        );
        assert!(
            !flight.written(&frame(TYPE_RESPONSE, b"a")),
            "nothing parked"
        );
    }

    #[test]
    fn more_answers_than_requests_do_not_underflow() {
        let mut flight = InFlight::default();
        flight.written(&frame(TYPE_RESPONSE, b"").repeat(3));
        flight.read(&frame(TYPE_REQUEST, b""));
        assert_eq!(flight.requests, 1);
    }
}
