//! Property tests of the message codec: encode then decode is the identity, any byte string
//! decodes to a message or an error (never a panic), and chunk boundaries do not matter.

use bytes::BytesMut;
use flux_client::codec::{MessageCodec, decode_message, encode_message};
use flux_client::message::{Message, MsgType, flags};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

fn message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![
            Just(MsgType::Request),
            Just(MsgType::Response),
            Just(MsgType::Event),
            Just(MsgType::Control)
        ],
        any::<u8>(),
        any::<[u32; 4]>(),
        proptest::option::of(proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..40),
            0..3,
        )),
        proptest::option::of("[a-z0-9.-]{0,300}"),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..600)),
    )
        .prop_map(
            |(kind, f, [userid, rolemask, aux1, aux2], routes, topic, payload)| Message {
                kind,
                flags: f & !flags::STRUCTURAL,
                userid,
                rolemask,
                aux1,
                aux2,
                routes,
                topic,
                payload,
            },
        )
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(m in message()) {
        let bytes = encode_message(&m);
        let back = decode_message(&bytes).unwrap();
        prop_assert_eq!(back.wire_flags(), m.wire_flags());
        let mut normalized = back.clone();
        normalized.flags &= !flags::STRUCTURAL;
        prop_assert_eq!(normalized, m);
        prop_assert_eq!(encode_message(&back), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_message(&bytes);
        let mut with_header = flux_client::codec::STREAM_MAGIC.to_vec();
        with_header.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        with_header.extend_from_slice(&bytes);
        let _ = decode_message(&with_header);
    }

    #[test]
    fn chunk_boundaries_do_not_matter(
        msgs in proptest::collection::vec(message(), 1..5),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let stream: Vec<u8> = msgs.iter().flat_map(encode_message).collect();
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort();
        let mut codec = MessageCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&stream[at..p]);
            at = p;
            while let Some(m) = codec.decode(&mut buf).unwrap() {
                got.push(encode_message(&m));
            }
        }
        let want: Vec<Vec<u8>> = msgs.iter().map(encode_message).collect();
        prop_assert_eq!(got, want);
    }
}
