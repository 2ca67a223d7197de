//! The server side of RFC 6455 framing: parsing a client's frame header and writing the
//! server's (unmasked) frames. Pure functions over byte slices, so the connection loop in
//! `ws.rs` can read into a stack buffer and keep nothing per connection while it idles.
//!
//! Every rule a client can break has a defined answer here: the close code and reason the
//! server sends before it drops the connection.

/// A frame's opcode (RFC 6455 §5.2); the reserved ones are refused while parsing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A client frame's header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub fin: bool,
    pub opcode: OpCode,
    pub mask: [u8; 4],
    /// Bytes of header before the payload.
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    /// Header and payload together.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// A rule the client broke: close with this code and reason.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation(pub u16, pub &'static str);

pub(crate) const PROTOCOL_ERROR: u16 = 1002;
pub(crate) const INVALID_DATA: u16 = 1007;
pub(crate) const TOO_BIG: u16 = 1009;

/// Parses the header at the start of `buf`: `Ok(None)` when more bytes are needed.
/// `max_payload` caps a single frame's payload (control frames are capped at 125 by the RFC).
pub(crate) fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, Violation> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        // No extension is negotiated, so no reserved bit may be set.
        return Err(Violation(PROTOCOL_ERROR, "reserved bits set"));
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(Violation(PROTOCOL_ERROR, "reserved opcode"))?;
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(Violation(PROTOCOL_ERROR, "unmasked client frame"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else { return Ok(None) };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else { return Ok(None) };
            let mut be = [0u8; 8];
            be.copy_from_slice(b);
            (u64::from_be_bytes(be), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(Violation(PROTOCOL_ERROR, "bad control frame"));
    }
    let payload_len = match usize::try_from(len) {
        Ok(n) if n <= max_payload => n,
        _ => return Err(Violation(TOO_BIG, "message too big")),
    };
    let Some(m) = buf.get(at..at + 4) else { return Ok(None) };
    Ok(Some(Header { fin, opcode, mask: [m[0], m[1], m[2], m[3]], header_len: at + 4, payload_len }))
}

/// Appends `payload` to `out`, unmasked with `mask`.
pub(crate) fn unmask_into(out: &mut Vec<u8>, payload: &[u8], mask: [u8; 4]) {
    let start = out.len();
    out.extend_from_slice(payload);
    // Whole words first: the compiler turns this into wide XORs.
    let word = u32::from_ne_bytes(mask);
    let body = &mut out[start..];
    let mut chunks = body.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Appends one whole server frame (FIN set, unmasked) to `out`.
pub(crate) fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        // Fits the 7-bit length.
        out.push(len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Checks a close frame's payload (RFC 6455 §5.5.1, §7.4): empty, or a valid code and a
/// UTF-8 reason.
pub(crate) fn check_close(payload: &[u8]) -> Result<(), Violation> {
    match payload {
        [] => Ok(()),
        [_] => Err(Violation(PROTOCOL_ERROR, "bad close frame")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(Violation(PROTOCOL_ERROR, "invalid close code"));
            }
            std::str::from_utf8(reason).map(|_| ()).map_err(|_| Violation(INVALID_DATA, "invalid UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame, as a browser would send it.
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn parses_and_unmasks_every_length_form() {
        for len in [0, 1, 5, 125, 126, 1000, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = client_frame(0x82, &payload, [1, 2, 3, 4]);
            let h = parse_header(&frame, 1 << 20).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.payload_len), (true, OpCode::Binary, len));
            assert_eq!(h.frame_len(), frame.len());
            let mut out = Vec::new();
            unmask_into(&mut out, &frame[h.header_len..], h.mask);
            assert_eq!(out, payload);
            // Every strict prefix of the header asks for more bytes.
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&frame[..cut], 1 << 20), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn refuses_what_the_rfc_forbids() {
        let v = |b: &[u8]| parse_header(b, 1000).unwrap_err();
        assert_eq!(v(&[0x81, 0x05]), Violation(PROTOCOL_ERROR, "unmasked client frame"));
        assert_eq!(v(&[0xC1, 0x80]).0, PROTOCOL_ERROR); // RSV1 without an extension
        assert_eq!(v(&[0x83, 0x80]), Violation(PROTOCOL_ERROR, "reserved opcode"));
        assert_eq!(v(&[0x09, 0x80]), Violation(PROTOCOL_ERROR, "bad control frame")); // fragmented ping
        assert_eq!(v(&[0x89, 0x80 | 126, 0, 126]), Violation(PROTOCOL_ERROR, "bad control frame"));
        assert_eq!(v(&[0x82, 0x80 | 126, 0x03, 0xE9]), Violation(TOO_BIG, "message too big"));
        assert_eq!(v(&[0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).0, TOO_BIG);
        // Exactly the cap is allowed.
        assert!(parse_header(&client_frame(0x82, &[0; 1000], [0; 4]), 1000).unwrap().is_some());
    }

    #[test]
    fn writes_server_frames_unmasked() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            write_frame(&mut out, OpCode::Text, &vec![b'a'; len]);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "servers never mask");
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + len);
        }
    }

    #[test]
    fn close_payloads_are_checked() {
        assert_eq!(check_close(b""), Ok(()));
        assert_eq!(check_close(b"\x03\xe8bye"), Ok(()));
        assert_eq!(check_close(b"\x03").unwrap_err().0, PROTOCOL_ERROR);
        assert_eq!(check_close(b"\x03\xed").unwrap_err(), Violation(PROTOCOL_ERROR, "invalid close code")); // 1005
        assert_eq!(check_close(b"\x03\xe8\xff").unwrap_err().0, INVALID_DATA);
        assert_eq!(check_close(b"\x0f\xa0"), Ok(())); // 4000
    }
}
