//! The NRI multiplexer's frame: `[u32 conn_id][u32 payload_len]` big-endian, then the payload.
//!
//! One unix stream carries several virtual connections this way; each virtual connection is a
//! plain byte stream (ttrpc runs on top), so frame boundaries carry no meaning above this layer.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 8;
/// Largest payload the peer accepts in one frame (1 << 24 bytes).
pub const MAX_PAYLOAD: usize = 1 << 24;

/// A virtual connection id. 0 is reserved by the protocol.
pub type ConnId = u32;
/// The Plugin service: containerd is the client, the plugin serves.
pub const PLUGIN_SERVICE_CONN: ConnId = 1;
/// The Runtime service: the plugin is the client.
pub const RUNTIME_SERVICE_CONN: ConnId = 2;

/// Errors of reading or writing frames.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The peer announced a payload larger than the protocol allows.
    #[error(
        "frame for connection {conn} announces {len} bytes, more than the {MAX_PAYLOAD} allowed"
    )]
    Oversized {
        /// Connection the frame is for.
        conn: ConnId,
        /// Announced payload length.
        len: usize,
    },
    /// The underlying stream failed.
    #[error("multiplexed stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes a frame header.
pub fn encode_header(conn: ConnId, len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversized { conn, len });
    }
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&conn.to_be_bytes());
    // len <= MAX_PAYLOAD < u32::MAX, checked above.
    header[4..].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(header)
}

/// Decodes a frame header into (connection, payload length).
pub fn decode_header(header: &[u8; HEADER_LEN]) -> Result<(ConnId, usize), FrameError> {
    let conn = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(FrameError::Oversized { conn, len });
    }
    Ok((conn, len))
}

/// Reads one frame. `Ok(None)` is a clean end of stream at a frame boundary.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<(ConnId, Vec<u8>)>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let (conn, len) = decode_header(&header)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(Some((conn, payload)))
}

/// Writes one frame (header and payload in one write call where the stream allows).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    conn: ConnId,
    payload: &[u8],
) -> Result<(), FrameError> {
    let header = encode_header(conn, payload.len())?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    writer.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_big_endian_conn_then_length() {
        let header = encode_header(2, 0x0102_0304).unwrap_err();
        assert!(matches!(header, FrameError::Oversized { conn: 2, .. }));
        let header = encode_header(1, 0x00_0203).unwrap();
        assert_eq!(header, [0, 0, 0, 1, 0, 0, 2, 3]);
        assert_eq!(decode_header(&header).unwrap(), (1, 0x0203));
    }

    #[test]
    fn oversized_announcement_is_refused() {
        let header = [0, 0, 0, 1, 0x01, 0, 0, 1];
        let err = decode_header(&header).unwrap_err();
        assert!(err.to_string().contains("16777217"), "{err}");
    }

    #[tokio::test]
    async fn frames_round_trip_and_clean_eof_is_none() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, 2, b"hello").await.unwrap();
        write_frame(&mut a, 1, b"").await.unwrap();
        drop(a);
        assert_eq!(
            read_frame(&mut b).await.unwrap(),
            Some((2, b"hello".to_vec()))
        );
        assert_eq!(read_frame(&mut b).await.unwrap(), Some((1, Vec::new())));
        assert_eq!(read_frame(&mut b).await.unwrap(), None);
    }

    #[tokio::test]
    async fn truncated_payload_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&[0, 0, 0, 1, 0, 0, 0, 9, b'x']).await.unwrap();
        drop(a);
        assert!(matches!(read_frame(&mut b).await, Err(FrameError::Io(_))));
    }
}
