//! One Socket.IO v5 packet: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`.
//!
//! Decoding follows socket.io-parser, with its validity rules made strict: an EVENT must
//! carry a non-empty array whose first item is a number or a non-reserved name, an ACK an
//! array, a CONNECT nothing or an object, a DISCONNECT nothing. Binary attachments arrive
//! as separate messages; the caller collects them ([`Packet::attachments`] says how many).

use crate::config::{MAX_ACK_ID, MAX_JSON_CONTAINERS, MAX_JSON_DEPTH};
use serde_json::Value;
use thiserror::Error;

#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    fn from_digit(c: u8) -> Option<PacketType> {
        Some(match c {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    #[must_use]
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }
}

/// Event names a client may not use: the client library gives them their own meaning.
pub const RESERVED_EVENTS: [&str; 6] =
    ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// A decoded packet. `data` still holds `{"_placeholder":true,"num":i}` objects where
/// buffers go; they were checked to point inside `0..attachments`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Packet {
    pub kind: PacketType,
    pub nsp: String,
    pub id: Option<u64>,
    #[serde(with = "crate::snapshot::json_opt")]
    pub data: Option<Value>,
    pub attachments: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    BadType(char),
    #[error("bad attachment count")]
    BadAttachments,
    #[error("{0} attachments, over the limit of {1}")]
    TooManyAttachments(usize, usize),
    #[error("ack id over 2^53-1")]
    BadAckId,
    #[error("payload is not JSON (or nests deeper than {MAX_JSON_DEPTH})")]
    BadJson,
    #[error("payload holds more than {MAX_JSON_CONTAINERS} arrays and objects")]
    TooComplex,
    #[error("payload not valid for a {0:?} packet")]
    InvalidPayload(PacketType),
    #[error("a placeholder points outside the attachments")]
    BadPlaceholder,
    #[error("a client may not send {0:?}")]
    Forbidden(PacketType),
}

/// Decodes a packet a client sent. `max_attachments` caps binary packets.
pub fn decode(text: &str, max_attachments: usize) -> Result<Packet, DecodeError> {
    let bytes = text.as_bytes();
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or_else(|| DecodeError::BadType(text.chars().next().unwrap_or('?')))?;
    let mut i = 1;

    let mut attachments = 0;
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= bytes.len() || bytes[i] != b'-' || i - start > 6 {
            return Err(DecodeError::BadAttachments);
        }
        attachments = text[start..i].parse().map_err(|_| DecodeError::BadAttachments)?;
        if attachments > max_attachments {
            return Err(DecodeError::TooManyAttachments(attachments, max_attachments));
        }
        i += 1;
    }

    let mut nsp = String::from("/");
    if bytes.get(i) == Some(&b'/') {
        let start = i;
        while i < bytes.len() && bytes[i] != b',' {
            i += 1;
        }
        nsp = text[start..i].to_owned();
        if i < bytes.len() {
            i += 1; // the comma
        }
    }

    let mut id = None;
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i > start {
        // 16 digits already exceed 2^53; stop before u64 parsing could overflow.
        if i - start > 16 {
            return Err(DecodeError::BadAckId);
        }
        let n: u64 = text[start..i].parse().map_err(|_| DecodeError::BadAckId)?;
        if n > MAX_ACK_ID {
            return Err(DecodeError::BadAckId);
        }
        id = Some(n);
    }

    let data = if i < bytes.len() {
        if containers(&bytes[i..]) > MAX_JSON_CONTAINERS {
            return Err(DecodeError::TooComplex);
        }
        // serde_json refuses nesting deeper than 128, the same limit as MAX_JSON_DEPTH.
        Some(serde_json::from_str::<Value>(&text[i..]).map_err(|_| DecodeError::BadJson)?)
    } else {
        None
    };

    let valid = match (kind, &data) {
        (PacketType::Connect, None) => true,
        (PacketType::Connect, Some(v)) => v.is_object(),
        (PacketType::Disconnect, d) => d.is_none(),
        (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(items))) => match items.first() {
            Some(Value::Number(_)) => true,
            Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
            _ => false,
        },
        (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(_))) => true,
        (PacketType::ConnectError, _) => return Err(DecodeError::Forbidden(kind)),
        _ => false,
    };
    if !valid {
        return Err(DecodeError::InvalidPayload(kind));
    }
    if let Some(d) = &data {
        if !placeholders_in_range(d, attachments) {
            return Err(DecodeError::BadPlaceholder);
        }
    }
    Ok(Packet { kind, nsp, id, data, attachments })
}

/// The arrays and objects JSON text opens (brackets outside strings), counted in one pass
/// over the bytes before any is allocated.
fn containers(json: &[u8]) -> usize {
    let (mut n, mut in_string, mut escaped) = (0, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// True if every placeholder object in `v` names an attachment below `count`. Recursion
/// is bounded by the JSON depth limit the parser already enforced.
fn placeholders_in_range(v: &Value, count: usize) -> bool {
    match v {
        Value::Array(items) => items.iter().all(|x| placeholders_in_range(x, count)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                return map.get("num").and_then(Value::as_u64).is_some_and(|n| (n as usize) < count);
            }
            map.values().all(|x| placeholders_in_range(x, count))
        }
        _ => true,
    }
}

/// Writes the header `<type>[<n>-][<nsp>,][<id>]` after the Engine.IO message prefix `4`.
pub fn encode_header(out: &mut Vec<u8>, kind: PacketType, nsp: &str, attachments: usize, id: Option<u64>) {
    out.push(b'4');
    let kind = match (kind, attachments > 0) {
        (PacketType::Event, true) => PacketType::BinaryEvent,
        (PacketType::Ack, true) => PacketType::BinaryAck,
        (k, _) => k,
    };
    out.push(kind.digit());
    if attachments > 0 {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.push(b'-');
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
}

/// Encodes a whole packet whose JSON payload is one value (CONNECT, CONNECT_ERROR, ...),
/// with the Engine.IO `4` in front.
#[must_use]
pub fn encode(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<&Value>, attachments: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    encode_header(&mut out, kind, nsp, attachments, id);
    if let Some(d) = data {
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, d);
    }
    out
}

/// Encodes an EVENT `[name, ...args]` (or an ACK `[...args]` when `name` is None) without
/// first building a combined array.
#[must_use]
pub fn encode_args(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    name: Option<&str>,
    args: &[Value],
    trailing: Option<&str>,
    attachments: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_header(&mut out, kind, nsp, attachments, id);
    out.push(b'[');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
    };
    if let Some(name) = name {
        sep(&mut out);
        let _ = serde_json::to_writer(&mut out, name);
    }
    for a in args {
        sep(&mut out);
        let _ = serde_json::to_writer(&mut out, a);
    }
    if let Some(t) = trailing {
        sep(&mut out);
        let _ = serde_json::to_writer(&mut out, t);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(s: &str) -> Packet {
        decode(s, 10).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn packets_with_too_many_arrays_and_objects_are_refused_before_parsing() {
        let at_limit = format!("2[\"m\"{}]", ",[]".repeat(MAX_JSON_CONTAINERS - 1));
        assert!(decode(&at_limit, 10).is_ok());
        let over = format!("2[\"m\"{}]", ",{}".repeat(MAX_JSON_CONTAINERS));
        assert_eq!(decode(&over, 10), Err(DecodeError::TooComplex));
        // Brackets inside strings (escaped quotes too) are text, not containers.
        let text = format!("2[\"m\",\"\\\"{}\"]", "[".repeat(MAX_JSON_CONTAINERS * 2));
        assert!(decode(&text, 10).is_ok(), "{}", &text[..20]);
    }

    #[test]
    fn numbers_keep_every_digit_through_decode_and_encode() {
        // Found by the socketio_packet fuzz target: without correctly rounded float
        // parsing, a long integer came back as a neighbouring double, so a relayed number
        // changed on its way through the server.
        let text = "2[\"m\",20000000000000000004000000000000000000000000,0.1,1e-7,123456789012345678901234567890]";
        let p = decode(text, 10).unwrap();
        let out = encode(p.kind, &p.nsp, p.id, p.data.as_ref(), p.attachments);
        let again = decode(&std::str::from_utf8(&out).unwrap()[1..], 10).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn decodes_connect_forms() {
        let p = ok("0");
        assert_eq!((p.kind, p.nsp.as_str(), p.data), (PacketType::Connect, "/", None));
        let p = ok("0/custom,");
        assert_eq!(p.nsp, "/custom");
        let p = ok("0/custom");
        assert_eq!((p.nsp.as_str(), p.data), ("/custom", None));
        let p = ok("0/custom,{\"token\":\"abc\"}");
        assert_eq!(p.data, Some(json!({"token":"abc"})));
        assert_eq!(ok("0{\"a\":1}").data, Some(json!({"a":1})));
    }

    #[test]
    fn decodes_events_acks_and_binary() {
        let p = ok("2[\"message\",1,\"2\",{\"3\":[true]}]");
        assert_eq!(p.kind, PacketType::Event);
        assert_eq!(p.data, Some(json!(["message", 1, "2", {"3": [true]}])));
        let p = ok("2456[\"message-with-ack\"]");
        assert_eq!(p.id, Some(456));
        let p = ok("2/chat,12[\"x\"]");
        assert_eq!((p.nsp.as_str(), p.id), ("/chat", Some(12)));
        let p = ok("52-789[\"m\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
        assert_eq!((p.kind, p.attachments, p.id), (PacketType::BinaryEvent, 2, Some(789)));
        let p = ok("3456[1]");
        assert_eq!((p.kind, p.id), (PacketType::Ack, Some(456)));
        let p = ok("61-/x,5[{\"_placeholder\":true,\"num\":0}]");
        assert_eq!((p.kind, p.nsp.as_str(), p.id, p.attachments), (PacketType::BinaryAck, "/x", Some(5), 1));
        assert_eq!(ok("1/chat,").kind, PacketType::Disconnect);
        assert_eq!(ok("2[7]").data, Some(json!([7])));
    }

    #[test]
    fn rejects_invalid_packets() {
        let bad = [
            "",
            "abc",
            "7",
            "2{}",
            "2abc[\"a\"]",
            "2[]",
            "2",
            "2[{}]",
            "2[\"connect\"]",
            "2[\"disconnecting\"]",
            "0[]",
            "0\"x\"",
            "1{}",
            "3{}",
            "4{\"message\":\"x\"}",
            "5[\"a\"]",
            "5x-[\"a\"]",
            "511-[\"a\"]",
            "51-[\"a\",{\"_placeholder\":true,\"num\":1}]",
            "2[\"a\"",
            "29007199254740992[\"a\"]",
            "299999999999999999999[\"a\"]",
        ];
        for s in bad {
            assert!(decode(s, 10).is_err(), "{s:?} should be rejected");
        }
        assert_eq!(decode("29007199254740991[\"a\"]", 10).unwrap().id, Some(MAX_ACK_ID));
    }

    #[test]
    fn rejects_nesting_past_the_depth_limit() {
        let deep = format!("2[\"a\",{}{}]", "[".repeat(200), "]".repeat(200));
        assert_eq!(decode(&deep, 10), Err(DecodeError::BadJson));
        let fine = format!("2[\"a\",{}{}]", "[".repeat(100), "]".repeat(100));
        assert!(decode(&fine, 10).is_ok());
    }

    #[test]
    fn encodes_like_socket_io_parser() {
        let v = json!({"sid": "abc"});
        assert_eq!(encode(PacketType::Connect, "/", None, Some(&v), 0), b"40{\"sid\":\"abc\"}");
        assert_eq!(encode(PacketType::Connect, "/custom", None, Some(&v), 0), b"40/custom,{\"sid\":\"abc\"}");
        assert_eq!(encode(PacketType::Disconnect, "/x", None, None, 0), b"41/x,");
        let e = encode_args(PacketType::Event, "/", None, Some("auth"), &[json!({})], None, 0);
        assert_eq!(e, b"42[\"auth\",{}]");
        let e = encode_args(PacketType::Ack, "/", Some(456), None, &[json!(1), json!("2")], None, 0);
        assert_eq!(e, b"43456[1,\"2\"]");
        let e = encode_args(PacketType::Ack, "/", Some(789), None, &[json!({"_placeholder":true,"num":0})], None, 1);
        assert_eq!(e, b"461-789[{\"_placeholder\":true,\"num\":0}]");
        let e = encode_args(PacketType::Event, "/c", None, Some("m"), &[], Some("off1"), 0);
        assert_eq!(e, b"42/c,[\"m\",\"off1\"]");
    }
}
