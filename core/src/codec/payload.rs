//! HTTP long-polling payloads: packets joined by the record separator `\x1e`; a binary
//! message travels as `b` followed by its base64.

use super::engineio::{self, Packet};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

pub const SEPARATOR: u8 = 0x1e;

/// One item of a decoded payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Packet(Packet<'a>),
    Binary(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("bad packet: {0}")]
    Packet(#[from] engineio::DecodeError),
    #[error("bad base64 in a binary packet")]
    Base64,
}

/// Decodes a POST body into its packets, in order. Any bad item fails the whole payload:
/// the caller closes the session, so a partial success would not be observable anyway.
pub fn decode(body: &[u8]) -> Result<Vec<Item<'_>>, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::NotUtf8)?;
    let mut items = Vec::new();
    for part in text.split('\u{1e}') {
        if let Some(b64) = part.strip_prefix('b') {
            let bytes = STANDARD.decode(b64).map_err(|_| DecodeError::Base64)?;
            items.push(Item::Binary(bytes));
        } else {
            items.push(Item::Packet(engineio::decode(part)?));
        }
    }
    Ok(items)
}

/// A packet waiting to be sent: the full Engine.IO text (`42[...]`, `2`, ...) or the raw
/// bytes of a binary message. Both are shared buffers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OutPacket {
    Text(Bytes),
    Binary(Bytes),
}

impl OutPacket {
    /// Bytes this packet takes in a queue.
    #[must_use]
    pub fn len(&self) -> usize {
        match self {
            OutPacket::Text(b) | OutPacket::Binary(b) => b.len(),
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes packets for one polling GET answer.
pub fn encode<'a>(packets: impl IntoIterator<Item = &'a OutPacket>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        match packet {
            OutPacket::Text(text) => out.extend_from_slice(text),
            OutPacket::Binary(bin) => {
                out.put_u8(b'b');
                out.extend_from_slice(STANDARD.encode(bin).as_bytes());
            }
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_text_and_binary_items() {
        let items = decode(b"4hello\x1ebAQIDBA==\x1e3").unwrap();
        assert_eq!(
            items,
            vec![
                Item::Packet(Packet::Message("hello")),
                Item::Binary(vec![1, 2, 3, 4]),
                Item::Packet(Packet::Pong("")),
            ]
        );
    }

    #[test]
    fn rejects_bad_payloads() {
        assert_eq!(decode(b"abc"), Err(DecodeError::Packet(engineio::DecodeError::BadType('a'))));
        assert_eq!(decode(b"4a\x1e"), Err(DecodeError::Packet(engineio::DecodeError::Empty)));
        assert_eq!(decode(b"b!!!"), Err(DecodeError::Base64));
        assert_eq!(decode(&[0xff, 0xfe]), Err(DecodeError::NotUtf8));
        assert_eq!(decode(b""), Err(DecodeError::Packet(engineio::DecodeError::Empty)));
    }

    #[test]
    fn encodes_with_separators_and_base64() {
        let packets =
            [OutPacket::Text(Bytes::from_static(b"4hello")), OutPacket::Binary(Bytes::from_static(&[1, 2, 3, 4]))];
        assert_eq!(&encode(&packets)[..], b"4hello\x1ebAQIDBA==");
    }
}
