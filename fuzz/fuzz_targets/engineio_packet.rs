//! One Engine.IO packet as a client sends it: any bytes, as UTF-8, into the decoder.
//! Beyond "never panics": the decoder accepts exactly the client packet types `1`–`6`,
//! and the data of a ping, pong or message is the rest of the text, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parlor_core::codec::engineio::{decode, DecodeError, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let result = decode(text);
    let mut chars = text.chars();
    match (chars.next(), result) {
        (None, r) => assert_eq!(r, Err(DecodeError::Empty)),
        (Some(c @ '1'..='6'), Ok(p)) => {
            let rest = chars.as_str();
            match (c, p) {
                ('1', Packet::Close) | ('5', Packet::Upgrade) | ('6', Packet::Noop) => {}
                ('2', Packet::Ping(d)) | ('3', Packet::Pong(d)) | ('4', Packet::Message(d)) => assert_eq!(d, rest),
                (c, p) => panic!("{c:?} decoded as {p:?}"),
            }
        }
        (Some(c), r) => assert_eq!(r, Err(DecodeError::BadType(c)), "{text:?}"),
    }
});
