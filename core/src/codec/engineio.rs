//! One Engine.IO v4 packet as a client sends it.

use thiserror::Error;

/// A packet a client may send. Payloads borrow from the input.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Close,
    /// `2` with optional data (`2probe` during an upgrade).
    Ping(&'a str),
    /// `3` with optional data (`3probe` is the server's answer; a client sends a bare `3`).
    Pong(&'a str),
    Message(&'a str),
    Upgrade,
    Noop,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown or client-forbidden packet type {0:?}")]
    BadType(char),
}

/// Decodes a text packet. `0` (open) is the server's to send, so a client's `0` is an error.
pub fn decode(text: &str) -> Result<Packet<'_>, DecodeError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let rest = chars.as_str();
    match kind {
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping(rest)),
        '3' => Ok(Packet::Pong(rest)),
        '4' => Ok(Packet::Message(rest)),
        '5' => Ok(Packet::Upgrade),
        '6' => Ok(Packet::Noop),
        other => Err(DecodeError::BadType(other)),
    }
}

/// The server's packets are single bytes or the message prefix; these are their encodings.
pub mod out {
    pub const CLOSE: &[u8] = b"1";
    pub const PING: &[u8] = b"2";
    pub const PONG_PROBE: &[u8] = b"3probe";
    pub const NOOP: &[u8] = b"6";
    pub const MESSAGE: u8 = b'4';
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_client_packet_type() {
        assert_eq!(decode("1"), Ok(Packet::Close));
        assert_eq!(decode("2probe"), Ok(Packet::Ping("probe")));
        assert_eq!(decode("3"), Ok(Packet::Pong("")));
        assert_eq!(decode("4hello"), Ok(Packet::Message("hello")));
        assert_eq!(decode("5"), Ok(Packet::Upgrade));
        assert_eq!(decode("6"), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_empty_open_and_unknown_types() {
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("0{}"), Err(DecodeError::BadType('0')));
        assert_eq!(decode("abc"), Err(DecodeError::BadType('a')));
        assert_eq!(decode("é"), Err(DecodeError::BadType('é')));
    }
}
