//! RFC 3 messages: the frames of one message body and the 20-byte PROTO frame.
//!
//! Frame order is routes, an empty delimiter (only with the ROUTE flag), topic, payload, PROTO.
//! The PROTO frame is always last, and its flags say which of the earlier frames exist.

use crate::error::{Error, Result};

/// Flag bits of the PROTO frame.
pub mod flags {
    pub const TOPIC: u8 = 0x01;
    pub const PAYLOAD: u8 = 0x02;
    pub const NORESPONSE: u8 = 0x04;
    pub const ROUTE: u8 = 0x08;
    pub const UPSTREAM: u8 = 0x10;
    pub const PRIVATE: u8 = 0x20;
    pub const STREAMING: u8 = 0x40;
    pub const USER1: u8 = 0x80;
    /// The bits a message's frames decide, rather than its sender.
    pub const STRUCTURAL: u8 = TOPIC | PAYLOAD | ROUTE;
}

/// `nodeid` of a request that any broker rank may answer.
pub const NODEID_ANY: u32 = 0xffff_ffff;
/// `nodeid` of a request for the next rank up the tree.
pub const NODEID_UPSTREAM: u32 = 0xffff_fffe;
/// `userid` a client leaves for the connector to fill in.
pub const USERID_UNKNOWN: u32 = 0xffff_ffff;
/// `matchtag` of a request that expects no response.
pub const MATCHTAG_NONE: u32 = 0;

const PROTO_MAGIC: u8 = 0x8e;
const PROTO_VERSION: u8 = 0x01;
const PROTO_LEN: usize = 20;
/// Frames of this size or more use the 0xff + u32 size form.
const LONG_FRAME: usize = 0xff;

/// The four message types of RFC 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MsgType {
    Request,
    Response,
    Event,
    Control,
}

impl MsgType {
    fn code(self) -> u8 {
        match self {
            MsgType::Request => 0x01,
            MsgType::Response => 0x02,
            MsgType::Event => 0x04,
            MsgType::Control => 0x08,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => MsgType::Request,
            0x02 => MsgType::Response,
            0x04 => MsgType::Event,
            0x08 => MsgType::Control,
            _ => return None,
        })
    }
}

/// One decoded message. `aux1`/`aux2` mean nodeid/matchtag (requests), errnum/matchtag
/// (responses), sequence/0 (events); the accessors below name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: MsgType,
    /// Sender-chosen flag bits (NORESPONSE, STREAMING, ...). TOPIC, PAYLOAD and ROUTE are set
    /// from the fields when the message is encoded.
    pub flags: u8,
    pub userid: u32,
    pub rolemask: u32,
    pub aux1: u32,
    pub aux2: u32,
    /// `Some` when the ROUTE flag is set (possibly with an empty stack).
    pub routes: Option<Vec<Vec<u8>>>,
    pub topic: Option<String>,
    /// Raw payload; JSON and string payloads include their terminating NUL.
    pub payload: Option<Vec<u8>>,
}

impl Message {
    /// A request as libflux builds one: empty route stack, credentials left to the connector.
    pub fn request(topic: &str, nodeid: u32, matchtag: u32) -> Self {
        Message {
            kind: MsgType::Request,
            flags: 0,
            userid: USERID_UNKNOWN,
            rolemask: 0,
            aux1: nodeid,
            aux2: matchtag,
            routes: Some(Vec::new()),
            topic: Some(topic.to_owned()),
            payload: None,
        }
    }

    /// An event as `flux event pub` sends one: sequence 0, the broker assigns the real one.
    pub fn event(topic: &str) -> Self {
        Message {
            kind: MsgType::Event,
            ..Message::request(topic, 0, 0)
        }
    }

    /// Set a JSON payload (serialized compactly, NUL-terminated as RFC 3 requires).
    pub fn with_json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Result<Self> {
        let mut bytes = serde_json::to_vec(value).map_err(|e| Error::Encode(e.to_string()))?;
        bytes.push(0);
        self.payload = Some(bytes);
        Ok(self)
    }

    pub fn topic(&self) -> &str {
        self.topic.as_deref().unwrap_or("")
    }
    pub fn nodeid(&self) -> u32 {
        self.aux1
    }
    pub fn errnum(&self) -> u32 {
        self.aux1
    }
    pub fn seq(&self) -> u32 {
        self.aux1
    }
    pub fn matchtag(&self) -> u32 {
        self.aux2
    }
    pub fn is_streaming(&self) -> bool {
        self.flags & flags::STREAMING != 0
    }

    /// The payload without its terminating NUL, when it has one.
    pub fn payload_bytes(&self) -> Option<&[u8]> {
        self.payload
            .as_deref()
            .map(|p| p.strip_suffix(&[0]).unwrap_or(p))
    }

    /// The payload as a string (RFC 3 string payloads are NUL-terminated UTF-8).
    pub fn payload_str(&self) -> Option<&str> {
        self.payload_bytes()
            .and_then(|p| std::str::from_utf8(p).ok())
    }

    /// The flags byte as it goes on the wire.
    pub fn wire_flags(&self) -> u8 {
        let mut f = self.flags & !flags::STRUCTURAL;
        if self.topic.is_some() {
            f |= flags::TOPIC;
        }
        if self.payload.is_some() {
            f |= flags::PAYLOAD;
        }
        if self.routes.is_some() {
            f |= flags::ROUTE;
        }
        f
    }

    /// Size of the encoded body (without the 8-byte stream header).
    pub fn body_len(&self) -> usize {
        let mut n = frame_len(PROTO_LEN);
        if let Some(routes) = &self.routes {
            n += routes.iter().map(|r| frame_len(r.len())).sum::<usize>() + frame_len(0);
        }
        if let Some(t) = &self.topic {
            n += frame_len(t.len());
        }
        if let Some(p) = &self.payload {
            n += frame_len(p.len());
        }
        n
    }

    /// Append the encoded body (all frames, PROTO last) to `out`.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.reserve(self.body_len());
        if let Some(routes) = &self.routes {
            for r in routes {
                put_frame(out, r);
            }
            put_frame(out, &[]);
        }
        if let Some(t) = &self.topic {
            put_frame(out, t.as_bytes());
        }
        if let Some(p) = &self.payload {
            put_frame(out, p);
        }
        let mut proto = [0u8; PROTO_LEN];
        proto[0] = PROTO_MAGIC;
        proto[1] = PROTO_VERSION;
        proto[2] = self.kind.code();
        proto[3] = self.wire_flags();
        proto[4..8].copy_from_slice(&self.userid.to_be_bytes());
        proto[8..12].copy_from_slice(&self.rolemask.to_be_bytes());
        proto[12..16].copy_from_slice(&self.aux1.to_be_bytes());
        proto[16..20].copy_from_slice(&self.aux2.to_be_bytes());
        put_frame(out, &proto);
    }

    /// Decode one message body. Every malformation is a typed error, never a panic.
    pub fn decode_body(body: &[u8]) -> Result<Message> {
        let frames = split_frames(body)?;
        let (proto, rest) = frames
            .split_last()
            .ok_or_else(|| Error::protocol("message has no frames"))?;
        if proto.len() != PROTO_LEN {
            return Err(Error::protocol(format!(
                "last frame is {} bytes; the PROTO frame is {PROTO_LEN}",
                proto.len()
            )));
        }
        if proto[0] != PROTO_MAGIC || proto[1] != PROTO_VERSION {
            return Err(Error::protocol(format!(
                "PROTO frame starts {:02x} {:02x}; expected 8e 01",
                proto[0], proto[1]
            )));
        }
        let kind = MsgType::from_code(proto[2])
            .ok_or_else(|| Error::protocol(format!("unknown message type {:#04x}", proto[2])))?;
        let flag_bits = proto[3];
        let be =
            |i: usize| u32::from_be_bytes([proto[i], proto[i + 1], proto[i + 2], proto[i + 3]]);

        let mut rest = rest.iter();
        let routes = if flag_bits & flags::ROUTE != 0 {
            let mut stack = Vec::new();
            loop {
                match rest.next() {
                    Some(&[]) => break,
                    Some(f) => stack.push(f.to_vec()),
                    None => return Err(Error::protocol("ROUTE flag set but no route delimiter")),
                }
            }
            Some(stack)
        } else {
            None
        };
        let topic = if flag_bits & flags::TOPIC != 0 {
            let f = rest
                .next()
                .ok_or_else(|| Error::protocol("TOPIC flag set but no topic frame"))?;
            Some(String::from_utf8(f.to_vec()).map_err(|_| Error::protocol("topic is not UTF-8"))?)
        } else {
            None
        };
        let payload = if flag_bits & flags::PAYLOAD != 0 {
            let f = rest
                .next()
                .ok_or_else(|| Error::protocol("PAYLOAD flag set but no payload frame"))?;
            Some(f.to_vec())
        } else {
            None
        };
        if rest.next().is_some() {
            return Err(Error::protocol("more frames than the PROTO flags announce"));
        }
        Ok(Message {
            kind,
            flags: flag_bits,
            userid: be(4),
            rolemask: be(8),
            aux1: be(12),
            aux2: be(16),
            routes,
            topic,
            payload,
        })
    }
}

fn frame_len(n: usize) -> usize {
    if n < LONG_FRAME { 1 + n } else { 5 + n }
}

fn put_frame(out: &mut Vec<u8>, data: &[u8]) {
    if data.len() < LONG_FRAME {
        out.push(data.len() as u8);
    } else {
        out.push(0xff);
        // Frame sizes are u32 on the wire; the stream codec limits messages far below that.
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
}

fn split_frames(mut body: &[u8]) -> Result<Vec<&[u8]>> {
    let mut frames = Vec::new();
    while let Some((&first, rest)) = body.split_first() {
        let (len, rest) = if first == 0xff {
            if rest.len() < 4 {
                return Err(Error::protocol("truncated frame size"));
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            (n, &rest[4..])
        } else {
            (first as usize, rest)
        };
        if rest.len() < len {
            return Err(Error::protocol(format!(
                "frame of {len} bytes but only {} remain in the message",
                rest.len()
            )));
        }
        frames.push(&rest[..len]);
        body = &rest[len..];
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_get_request_matches_the_annotated_example() {
        let msg = Message::request("attr.get", NODEID_ANY, 1)
            .with_json(&serde_json::json!({"name": "size"}))
            .unwrap();
        let mut body = Vec::new();
        msg.encode_body(&mut body);
        assert_eq!(body.len(), 48);
        assert_eq!(&body[..10], b"\x00\x08attr.get");
        assert_eq!(
            &body[body.len() - 21..],
            &[
                0x14, 0x8e, 0x01, 0x01, 0x0b, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff,
                0xff, 0, 0, 0, 1
            ]
        );
        assert_eq!(Message::decode_body(&body).unwrap().wire_flags(), 0x0b);
    }

    #[test]
    fn frame_of_255_bytes_uses_the_long_form() {
        let mut out = Vec::new();
        put_frame(&mut out, &[7u8; 254]);
        assert_eq!(out[0], 254);
        out.clear();
        put_frame(&mut out, &[7u8; 255]);
        assert_eq!(&out[..5], &[0xff, 0, 0, 0, 255]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            &b""[..],
            b"\x05abc",
            b"\xff\x00\x00",
            b"\x03abc",
            b"\x14\x8e\x01\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ] {
            assert!(Message::decode_body(body).is_err(), "{body:?}");
        }
    }
}
