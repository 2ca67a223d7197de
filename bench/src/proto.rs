//! Engine.IO v4 / Socket.IO v5 from the client's side, over WebSocket text frames: what the
//! server sent (classified without allocating), and the few packets the scenarios send.
//!
//! The scenarios' payloads are strings `"<sent ns> <id> <padding>"`; [`stamp`] reads the
//! first two numbers back out of an event without parsing the JSON around them.

use std::io::Write;

/// An Engine.IO packet from the server (one WebSocket text message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// `0{...}`: the handshake (sid, pingInterval, ...), JSON.
    Open(&'a [u8]),
    /// `1`
    Close,
    /// `2` (answer `3`)
    Ping,
    /// `3`
    Pong,
    /// `6`
    Noop,
    /// `4...`: a Socket.IO packet.
    Sio(Sio<'a>),
    /// Anything else (an upgrade probe, a malformed packet).
    Other,
}

/// A Socket.IO packet; `nsp` is `/` when the packet names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sio<'a> {
    /// `0`: CONNECT answered; data is `{"sid":...}`.
    Connect { nsp: &'a [u8], data: &'a [u8] },
    /// `1`
    Disconnect { nsp: &'a [u8] },
    /// `2`: an event, `["name", args...]`.
    Event { nsp: &'a [u8], ack: Option<u64>, data: &'a [u8] },
    /// `3`: the answer to our ack id, `[args...]`.
    Ack { nsp: &'a [u8], id: u64, data: &'a [u8] },
    /// `4`: CONNECT refused, `{"message":...}`.
    ConnectError { nsp: &'a [u8], data: &'a [u8] },
    /// `5` / `6`: binary events and acks (the scenarios send none, so they get none).
    Binary,
}

/// Classifies one text message from the server.
#[must_use]
pub fn parse(msg: &[u8]) -> Incoming<'_> {
    match msg.first() {
        Some(b'0') => Incoming::Open(&msg[1..]),
        Some(b'1') => Incoming::Close,
        Some(b'2') => Incoming::Ping,
        Some(b'3') => Incoming::Pong,
        Some(b'6') => Incoming::Noop,
        Some(b'4') => parse_sio(&msg[1..]).map_or(Incoming::Other, Incoming::Sio),
        _ => Incoming::Other,
    }
}

/// Parses a Socket.IO packet (the text after Engine.IO's `4`).
#[must_use]
pub fn parse_sio(p: &[u8]) -> Option<Sio<'_>> {
    let (&kind, mut rest) = p.split_first()?;
    if matches!(kind, b'5' | b'6') {
        return Some(Sio::Binary);
    }
    let mut nsp: &[u8] = b"/";
    if rest.first() == Some(&b'/') {
        match rest.iter().position(|&b| b == b',') {
            Some(comma) => {
                nsp = &rest[..comma];
                rest = &rest[comma + 1..];
            }
            None => {
                nsp = rest;
                rest = &[];
            }
        }
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if digits > 0 { Some(parse_u64(&rest[..digits])?) } else { None };
    let data = &rest[digits..];
    match kind {
        b'0' => Some(Sio::Connect { nsp, data }),
        b'1' => Some(Sio::Disconnect { nsp }),
        b'2' => Some(Sio::Event { nsp, ack: id, data }),
        b'3' => Some(Sio::Ack { nsp, id: id?, data }),
        b'4' => Some(Sio::ConnectError { nsp, data }),
        _ => None,
    }
}

/// A decimal number (no sign, no overflow).
#[must_use]
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

/// The event name of an event's data, `["name", ...]` (names without escapes only).
#[must_use]
pub fn event_name(data: &[u8]) -> Option<&[u8]> {
    let rest = data.strip_prefix(b"[\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"').then(|| &rest[..end])
}

/// The first string argument of an event (`["name","arg",...]`) or an ack (`["arg",...]`),
/// if it is a string without escapes.
#[must_use]
pub fn first_string(data: &[u8], event: bool) -> Option<&[u8]> {
    let mut rest = data.strip_prefix(b"[")?;
    if event {
        let name = event_name(data)?;
        rest = rest.get(name.len() + 2..)?.strip_prefix(b",")?;
    }
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"').then(|| &rest[..end])
}

/// `(sent ns, id)` from a scenario payload `"<ns> <id> <padding>"`.
#[must_use]
pub fn stamp(payload: &[u8]) -> Option<(u64, u64)> {
    let mut parts = payload.splitn(3, |&b| b == b' ');
    let ns = parse_u64(parts.next()?)?;
    let id = parse_u64(parts.next()?)?;
    Some((ns, id))
}

/// The stamp of a `message` event, `["message","<ns> <id> ..."]`: the scenarios' hot path.
#[must_use]
pub fn message_stamp(data: &[u8]) -> Option<(u64, u64)> {
    let rest = data.strip_prefix(b"[\"message\",\"")?;
    stamp(rest)
}

/// Appends a scenario payload of exactly `size` bytes (longer if the stamp alone is
/// longer): `<ns> <id> ` then `x` padding. JSON-safe as a string's contents.
pub fn write_payload(out: &mut Vec<u8>, ns: u64, id: u64, size: usize) {
    let start = out.len();
    let _ = write!(out, "{ns} {id} ");
    let written = out.len() - start;
    out.resize(start + written.max(size), b'x');
}

/// `42["message",{"room":ROOM,"payload":"<ns> <id> xxx"}]` (ROOM must need no escaping).
pub fn write_message(out: &mut Vec<u8>, room: &str, ns: u64, id: u64, size: usize) {
    out.extend_from_slice(b"42[\"message\",{\"room\":\"");
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(b"\",\"payload\":\"");
    write_payload(out, ns, id, size);
    out.extend_from_slice(b"\"}]");
}

/// `42<ack>["echo","<ns> <id> xxx"]`.
pub fn write_echo(out: &mut Vec<u8>, ack: u64, ns: u64, id: u64, size: usize) {
    let _ = write!(out, "42{ack}[\"echo\",\"");
    write_payload(out, ns, id, size);
    out.extend_from_slice(b"\"]");
}

/// `42<ack>["join","ROOM"]`.
#[must_use]
pub fn join(ack: u64, room: &str) -> String {
    format!("42{ack}[\"join\",{}]", serde_json::Value::from(room))
}

/// The CONNECT to namespace `/`.
pub const CONNECT: &[u8] = b"40";
/// The DISCONNECT from namespace `/`.
pub const DISCONNECT: &[u8] = b"41";
/// Engine.IO's pong.
pub const PONG: &[u8] = b"3";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_io_packets_are_classified() {
        assert_eq!(parse(b"0{\"sid\":\"x\"}"), Incoming::Open(b"{\"sid\":\"x\"}"));
        assert_eq!(parse(b"1"), Incoming::Close);
        assert_eq!(parse(b"2"), Incoming::Ping);
        assert_eq!(parse(b"3"), Incoming::Pong);
        assert_eq!(parse(b"6"), Incoming::Noop);
        assert_eq!(parse(b"5"), Incoming::Other, "upgrade is not for a WebSocket-only client");
        assert_eq!(parse(b""), Incoming::Other);
        assert_eq!(parse(b"4"), Incoming::Other, "no Socket.IO type");
        assert_eq!(parse(b"4x"), Incoming::Other);
    }

    #[test]
    fn socket_io_packets_are_parsed() {
        let sio = |m: &'static [u8]| match parse(m) {
            Incoming::Sio(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(sio(b"40{\"sid\":\"abc\"}"), Sio::Connect { nsp: b"/", data: b"{\"sid\":\"abc\"}" });
        assert_eq!(sio(b"40/admin,{\"sid\":\"a\"}"), Sio::Connect { nsp: b"/admin", data: b"{\"sid\":\"a\"}" });
        assert_eq!(sio(b"41"), Sio::Disconnect { nsp: b"/" });
        assert_eq!(sio(b"41/chat,"), Sio::Disconnect { nsp: b"/chat" });
        assert_eq!(sio(b"41/chat"), Sio::Disconnect { nsp: b"/chat" });
        assert_eq!(sio(b"42[\"message\",\"hi\"]"), Sio::Event { nsp: b"/", ack: None, data: b"[\"message\",\"hi\"]" });
        assert_eq!(sio(b"4212[\"echo\",1]"), Sio::Event { nsp: b"/", ack: Some(12), data: b"[\"echo\",1]" });
        assert_eq!(sio(b"42/x,7[\"e\"]"), Sio::Event { nsp: b"/x", ack: Some(7), data: b"[\"e\"]" });
        assert_eq!(sio(b"43123[\"a\"]"), Sio::Ack { nsp: b"/", id: 123, data: b"[\"a\"]" });
        assert_eq!(sio(b"430[]"), Sio::Ack { nsp: b"/", id: 0, data: b"[]" });
        assert_eq!(parse(b"43[]"), Incoming::Other, "an ack needs an id");
        assert_eq!(sio(b"44{\"message\":\"no\"}"), Sio::ConnectError { nsp: b"/", data: b"{\"message\":\"no\"}" });
        assert_eq!(sio(b"451-[\"b\",{\"_placeholder\":true,\"num\":0}]"), Sio::Binary);
        assert_eq!(parse(b"4999999999999999999999[]"), Incoming::Other, "ack id overflow");
    }

    #[test]
    fn numbers_parse_strictly() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551"), Some(18_446_744_073_709_551));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_u64(b"12345678901234567890"), None, "20 digits may overflow");
    }

    #[test]
    fn event_names_and_first_strings() {
        assert_eq!(event_name(b"[\"message\",\"x\"]"), Some(&b"message"[..]));
        assert_eq!(event_name(b"[\"me\\\"ss\"]"), None, "escaped names are not ours");
        assert_eq!(event_name(b"[1]"), None);
        assert_eq!(first_string(b"[\"message\",\"12 3 xx\"]", true), Some(&b"12 3 xx"[..]));
        assert_eq!(first_string(b"[\"message\",{\"a\":1}]", true), None);
        assert_eq!(first_string(b"[\"message\"]", true), None);
        assert_eq!(first_string(b"[\"12 3 xx\"]", false), Some(&b"12 3 xx"[..]));
        assert_eq!(first_string(b"[]", false), None);
    }

    #[test]
    fn payloads_round_trip_their_stamps_at_the_requested_size() {
        for size in [0, 5, 20, 100, 1000] {
            let mut out = Vec::new();
            write_payload(&mut out, 123_456_789, 42, size);
            assert_eq!(out.len(), size.max(b"123456789 42 ".len()), "size {size}");
            assert_eq!(stamp(&out), Some((123_456_789, 42)));
        }
        let mut msg = Vec::new();
        write_message(&mut msg, "bench", 99, 7, 30);
        let v: serde_json::Value = serde_json::from_slice(&msg[2..]).unwrap();
        assert_eq!(v[0], "message");
        assert_eq!(v[1]["room"], "bench");
        assert_eq!(v[1]["payload"].as_str().unwrap().len(), 30);
        // What the server relays: the payload as the event's argument.
        let relayed = format!("[\"message\",{}]", v[1]["payload"]);
        assert_eq!(message_stamp(relayed.as_bytes()), Some((99, 7)));
        assert_eq!(message_stamp(b"[\"other\",\"1 2 x\"]"), None);
        assert_eq!(message_stamp(b"[\"message\",\"nope\"]"), None);

        let mut echo = Vec::new();
        write_echo(&mut echo, 5, 11, 3, 16);
        assert!(echo.starts_with(b"425[\"echo\",\"11 3 "));
        let Incoming::Sio(Sio::Event { ack: Some(5), data, .. }) = parse(&echo) else { panic!() };
        assert_eq!(stamp(first_string(data, true).unwrap()), Some((11, 3)));
        assert_eq!(join(3, "r\"1"), "423[\"join\",\"r\\\"1\"]");
    }
}
