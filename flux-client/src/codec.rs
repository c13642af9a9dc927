//! Stream framing of the local connector: an 8-byte header (magic, big-endian body length)
//! in front of each message body.
//!
//! flux-core stores the magic 0xffee0012 with a native-endian store, so on the little-endian
//! hosts Flux runs on the wire bytes are `12 00 ee ff` — not the `ff ee 00 12` of RFC 3. A
//! broker drops a connection whose magic it does not recognise, so we follow the code.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::{Error, Result};
use crate::message::Message;

/// Stream magic as flux-core writes it (native byte order of the host).
pub const STREAM_MAGIC: [u8; 4] = 0xffee_0012u32.to_ne_bytes();
const HEADER_LEN: usize = 8;
/// Default cap on one message body. Flux sets none; a cap keeps a broken peer from making
/// us allocate without bound. Large job lists stay far below it.
pub const DEFAULT_MAX_MESSAGE: usize = 64 << 20;

/// Encode a whole message, header included.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    let body_len = msg.body_len();
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(&STREAM_MAGIC);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    msg.encode_body(&mut out);
    out
}

/// Decode one whole message (header included) from exactly its bytes.
pub fn decode_message(bytes: &[u8]) -> Result<Message> {
    let mut codec = MessageCodec::default();
    let mut buf = BytesMut::from(bytes);
    match codec.decode(&mut buf)? {
        Some(msg) if buf.is_empty() => Ok(msg),
        Some(_) => Err(Error::protocol(format!(
            "{} bytes after the end of the message",
            buf.len()
        ))),
        None => Err(Error::protocol("truncated message")),
    }
}

/// tokio codec for the local connector's message stream.
#[derive(Debug, Clone)]
pub struct MessageCodec {
    max_message: usize,
}

impl Default for MessageCodec {
    fn default() -> Self {
        MessageCodec::new(DEFAULT_MAX_MESSAGE)
    }
}

impl MessageCodec {
    pub fn new(max_message: usize) -> Self {
        MessageCodec { max_message }
    }
}

impl Decoder for MessageCodec {
    type Item = Message;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        if src[..4] != STREAM_MAGIC {
            return Err(Error::protocol(format!(
                "bad stream magic {:02x?}; expected {:02x?}",
                &src[..4],
                STREAM_MAGIC
            )));
        }
        let body_len = u32::from_be_bytes([src[4], src[5], src[6], src[7]]) as usize;
        if body_len > self.max_message {
            return Err(Error::TooLarge {
                size: body_len,
                limit: self.max_message,
            });
        }
        if src.len() < HEADER_LEN + body_len {
            src.reserve(HEADER_LEN + body_len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let body = src.split_to(body_len);
        Message::decode_body(&body).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>> {
        match self.decode(src)? {
            Some(msg) => Ok(Some(msg)),
            None if src.is_empty() => Ok(None),
            None => Err(Error::Closed(format!(
                "the broker closed the connection {} bytes into a message",
                src.len()
            ))),
        }
    }
}

impl Encoder<&Message> for MessageCodec {
    type Error = Error;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<()> {
        let body_len = msg.body_len();
        if body_len > self.max_message {
            return Err(Error::TooLarge {
                size: body_len,
                limit: self.max_message,
            });
        }
        dst.reserve(HEADER_LEN + body_len);
        dst.put_slice(&STREAM_MAGIC);
        dst.put_u32(body_len as u32);
        let mut body = Vec::with_capacity(body_len);
        msg.encode_body(&mut body);
        dst.put_slice(&body);
        Ok(())
    }
}
