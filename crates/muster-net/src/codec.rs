//! Wire format of muster messages on libp2p request-response streams: one stream per message,
//! the request is a 4-byte big-endian length followed by that many opaque bytes (a protobuf
//! message of `proto/`, encoded by the agent binary), the response is a single ack byte.
//!
//! Used only by the swarm actor (`actor.rs`). A request longer than the receiver's
//! `max_message_bytes` is refused after reading the length prefix, before any allocation.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};

/// Protocol name negotiated by multistream-select for muster messages.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/muster/msg/1.0.0");

/// The single byte a receiver writes back once it has accepted a message.
const ACK: u8 = 0x06;

/// Length-prefixed raw bytes, capped at `max_message_bytes` in both directions.
#[derive(Debug, Clone)]
pub(crate) struct MessageCodec {
    max_message_bytes: usize,
}

impl MessageCodec {
    pub(crate) fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }
}

impl request_response::Codec for MessageCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut prefix = [0u8; 4];
        io.read_exact(&mut prefix).await?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max_message_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "message of {len} bytes exceeds the limit of {} bytes",
                    self.max_message_bytes
                ),
            ));
        }
        let mut bytes = vec![0u8; len];
        io.read_exact(&mut bytes).await?;
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut ack = [0u8; 1];
        io.read_exact(&mut ack).await?;
        if ack[0] != ACK {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected ack byte {ACK:#04x}, got {:#04x}", ack[0]),
            ));
        }
        Ok(())
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|len| *len as usize <= self.max_message_bytes)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "message of {} bytes exceeds the limit of {} bytes",
                        bytes.len(),
                        self.max_message_bytes
                    ),
                )
            })?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(&bytes).await?;
        io.flush().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&[ACK]).await?;
        io.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    fn encode(codec: &mut MessageCodec, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_request(&PROTOCOL, &mut out, bytes))?;
        Ok(out.into_inner())
    }

    #[test]
    fn request_round_trips() {
        let mut codec = MessageCodec::new(1024);
        for message in [Vec::new(), b"hello".to_vec(), vec![7u8; 1024]] {
            let wire = encode(&mut codec, message.clone()).expect("encodes");
            assert_eq!(wire.len(), 4 + message.len());
            let decoded = block_on(codec.read_request(&PROTOCOL, &mut Cursor::new(wire)));
            assert_eq!(decoded.expect("decodes"), message);
        }
    }

    #[test]
    fn oversized_request_is_refused_from_its_prefix() {
        // Only the prefix is present: the reader must refuse without waiting for the body.
        let wire = u32::MAX.to_be_bytes().to_vec();
        let mut codec = MessageCodec::new(16);
        let error =
            block_on(codec.read_request(&PROTOCOL, &mut Cursor::new(wire))).expect_err("too big");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("exceeds the limit of 16 bytes"));
    }

    #[test]
    fn oversized_request_is_not_written() {
        let error = encode(&mut MessageCodec::new(3), vec![0; 4]).expect_err("too big");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn truncated_request_is_an_error() {
        let mut wire = 10u32.to_be_bytes().to_vec();
        wire.extend_from_slice(b"short");
        let result =
            block_on(MessageCodec::new(64).read_request(&PROTOCOL, &mut Cursor::new(wire)));
        assert_eq!(
            result.expect_err("truncated").kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn ack_round_trips_and_garbage_is_rejected() {
        let mut codec = MessageCodec::new(64);
        let mut out = Cursor::new(Vec::new());
        block_on(codec.write_response(&PROTOCOL, &mut out, ())).expect("writes");
        let wire = out.into_inner();
        block_on(codec.read_response(&PROTOCOL, &mut Cursor::new(wire))).expect("ack");
        let bad = block_on(codec.read_response(&PROTOCOL, &mut Cursor::new(vec![0u8])));
        assert!(bad.is_err());
        let empty = block_on(codec.read_response(&PROTOCOL, &mut Cursor::new(Vec::new())));
        assert!(empty.is_err());
    }
}
