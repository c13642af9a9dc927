//! Any bytes from a broker: the stream decoder returns messages or an error, never panics, and
//! every message it returns re-encodes to bytes that decode to the same message.
#![no_main]

use bytes::BytesMut;
use flux_client::codec::{MessageCodec, decode_message, encode_message};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = MessageCodec::new(1 << 20);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = codec.decode(&mut buf) {
        let again = decode_message(&encode_message(&msg)).expect("re-encoded message decodes");
        assert_eq!(encode_message(&again), encode_message(&msg));
    }
    let _ = codec.decode_eof(&mut buf);
});
