//! An HTTP long-polling POST body: raw bytes into the payload decoder. Beyond "never
//! panics": a decoded payload has one item per `\x1e`-separated part, in order; a binary
//! item is the base64 of its part; a text item is that part's Engine.IO packet.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use parlor_core::codec::engineio;
use parlor_core::codec::payload::{decode, Item};

fuzz_target!(|data: &[u8]| {
    let Ok(items) = decode(data) else { return };
    let text = std::str::from_utf8(data).expect("a decoded payload is UTF-8");
    let parts: Vec<&str> = text.split('\u{1e}').collect();
    assert_eq!(items.len(), parts.len());
    for (item, part) in items.iter().zip(parts) {
        match item {
            Item::Binary(bytes) => {
                let b64 = part.strip_prefix('b').expect("binary items start with b");
                assert_eq!(STANDARD.decode(b64).as_deref(), Ok(&bytes[..]));
            }
            Item::Packet(p) => assert_eq!(engineio::decode(part), Ok(*p)),
        }
    }
});
