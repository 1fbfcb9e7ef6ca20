//! ttrpc frames as they travel: ttrpc's 10-byte `MessageHeader` (payload length, stream id,
//! type, flags) and the payload, kept as the bytes that came so a forwarded frame is passed on
//! unchanged. Read here rather than with ttrpc's `GenMessage::read_from`, which drops frames
//! above its own 4 MiB limit: the wrapper passes every frame on and lets the runc shim judge.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};
use ttrpc::proto::{MessageHeader, MESSAGE_HEADER_LENGTH, MESSAGE_TYPE_REQUEST};

/// A frame larger than this ends the connection (containerd never sends one near it).
const MAX_PAYLOAD: usize = 64 << 20;

/// One frame: header and payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

impl Frame {
    /// Its header.
    pub fn header(&self) -> MessageHeader {
        MessageHeader::from(&self.0[..MESSAGE_HEADER_LENGTH])
    }

    /// Its payload.
    pub fn payload(&self) -> &[u8] {
        &self.0[MESSAGE_HEADER_LENGTH..]
    }

    /// Whether it carries a request.
    pub fn is_request(&self) -> bool {
        self.header().type_ == MESSAGE_TYPE_REQUEST
    }

    /// A response frame on `stream_id`.
    pub fn response(stream_id: u32, payload: &[u8]) -> Frame {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let mut bytes: Vec<u8> = MessageHeader::new_response(stream_id, len).into();
        bytes.extend_from_slice(payload);
        Frame(bytes)
    }

    /// Reads the next frame; `None` at a clean end of stream.
    pub async fn read(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
        let mut header = [0u8; MESSAGE_HEADER_LENGTH];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = MessageHeader::from(&header).length as usize;
        if len > MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("ttrpc frame of {len} bytes (at most {MAX_PAYLOAD})"),
            ));
        }
        let mut bytes = Vec::with_capacity(MESSAGE_HEADER_LENGTH + len);
        bytes.extend_from_slice(&header);
        bytes.resize(MESSAGE_HEADER_LENGTH + len, 0);
        reader
            .read_exact(&mut bytes[MESSAGE_HEADER_LENGTH..])
            .await?;
        Ok(Some(Frame(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttrpc::proto::MESSAGE_TYPE_RESPONSE;

    #[tokio::test]
    async fn frames_round_trip_byte_for_byte() {
        let mut wire: Vec<u8> = MessageHeader::new_request(3, 4).into();
        wire.extend_from_slice(b"abcd");
        let resp = Frame::response(3, b"xy");
        wire.extend_from_slice(&resp.0);
        let mut r = &wire[..];
        let first = Frame::read(&mut r).await.unwrap().unwrap();
        assert!(first.is_request());
        assert_eq!(first.header().stream_id, 3);
        assert_eq!(first.payload(), b"abcd");
        let second = Frame::read(&mut r).await.unwrap().unwrap();
        assert_eq!(second, resp);
        assert_eq!(second.header().type_, MESSAGE_TYPE_RESPONSE);
        assert_eq!(Frame::read(&mut r).await.unwrap(), None);
        // A header cut short is a clean end; a payload cut short is an error.
        let mut cut = &wire[..12];
        assert!(Frame::read(&mut cut).await.is_err());
    }
}
