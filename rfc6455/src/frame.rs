//! Frames (RFC 6455 §5): parsing a header sent by either peer, masking, writing a whole
//! frame, checking a close frame's payload.

/// A frame's opcode (RFC 6455 §5.2); the reserved ones are refused while parsing.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OpCode {
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

    #[must_use]
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Who sent the frames being parsed: a client must mask every frame (§5.1), a server's are
/// read masked or not (a server must not mask, but the load generator's tests do).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Client,
    Server,
}

/// A frame's header: where the payload is inside the buffer it was parsed from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: OpCode,
    /// The masking key, if the frame is masked (always, from a [`Peer::Client`]).
    pub mask: Option<[u8; 4]>,
    /// Bytes of header before the payload (2 to 14).
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    /// Header and payload together.
    #[must_use]
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// A rule the peer broke: close with this code and reason.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub u16, pub &'static str);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.1)
    }
}

impl std::error::Error for Violation {}

pub const PROTOCOL_ERROR: u16 = 1002;
pub const INVALID_DATA: u16 = 1007;
pub const TOO_BIG: u16 = 1009;

/// Parses the header, sent by `from`, at the start of `buf`: `Ok(None)` when more bytes are
/// needed for the header (the payload may still be incomplete too: compare
/// [`Header::frame_len`]). `max_payload` caps a single frame's payload (control frames are
/// capped at 125 by the RFC).
pub fn parse_header(buf: &[u8], max_payload: usize, from: Peer) -> Result<Option<Header>, Violation> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        // No extension is negotiated, so no reserved bit may be set.
        return Err(Violation(PROTOCOL_ERROR, "reserved bits set"));
    }
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(Violation(PROTOCOL_ERROR, "reserved opcode"))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    if !masked && from == Peer::Client {
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
    if !masked {
        return Ok(Some(Header { fin, opcode, mask: None, header_len: at, payload_len }));
    }
    let Some(m) = buf.get(at..at + 4) else { return Ok(None) };
    Ok(Some(Header { fin, opcode, mask: Some([m[0], m[1], m[2], m[3]]), header_len: at + 4, payload_len }))
}

/// XORs `data` with the 4-byte `mask`: the same operation masks and unmasks (§5.3).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    // Whole words first: the compiler turns this into wide XORs.
    let m = u32::from_ne_bytes(mask);
    let wide = u64::from(m) | (u64::from(m) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    // Every chunk was 8 bytes (a multiple of 4), so the tail starts at mask offset 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one whole frame (FIN set) to `out`: masked with `mask` if given (a client's
/// frames), else as is (a server's).
pub fn write_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode.bits());
    let len = payload.len();
    if len < 126 {
        // Fits the 7-bit length.
        out.push(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(mask) => {
            out.extend_from_slice(&mask);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], mask);
        }
    }
}

/// Checks a close frame's payload (RFC 6455 §5.5.1, §7.4): empty, or a valid code and a
/// UTF-8 reason.
pub fn check_close(payload: &[u8]) -> Result<(), Violation> {
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

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn client_frames_parse_and_unmask_at_every_length_form() {
        for len in [0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut frame = Vec::new();
            write_frame(&mut frame, OpCode::Binary, &payload, Some([1, 2, 3, 4]));
            let h = parse_header(&frame, 1 << 20, Peer::Client).unwrap().unwrap();
            assert_eq!((h.fin, h.opcode, h.mask, h.payload_len), (true, OpCode::Binary, Some([1, 2, 3, 4]), len));
            assert_eq!(h.frame_len(), frame.len());
            let mut back = frame[h.header_len..].to_vec();
            apply_mask(&mut back, [1, 2, 3, 4]);
            assert_eq!(back, payload, "len {len}");
            // Every strict prefix of the header asks for more bytes.
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&frame[..cut], 1 << 20, Peer::Client), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn server_frames_are_written_unmasked_and_parse_back() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = Vec::new();
            write_frame(&mut out, OpCode::Text, &vec![b'a'; len], None);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0, "servers never mask");
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + len);
            let h = parse_header(&out, 1 << 20, Peer::Server).unwrap().unwrap();
            assert_eq!((h.opcode, h.mask, h.header_len, h.payload_len), (OpCode::Text, None, header, len));
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&out[..cut], 1 << 20, Peer::Server), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn rfc_6455_examples_decode_and_encode() {
        // §5.7: a single-frame unmasked text message "Hello", from a server.
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let h = parse_header(&unmasked, 1 << 20, Peer::Server).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.mask, h.header_len, h.payload_len), (true, OpCode::Text, None, 2, 5));
        assert_eq!(&unmasked[h.header_len..h.frame_len()], b"Hello");
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Text, b"Hello", None);
        assert_eq!(out, unmasked);
        // §5.7: the masked "Hello", from a client (a server's may be masked too).
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        for from in [Peer::Client, Peer::Server] {
            let h = parse_header(&masked, 1 << 20, from).unwrap().unwrap();
            assert_eq!((h.mask, h.header_len, h.payload_len), (Some(MASK), 6, 5));
        }
        let mut payload = masked[6..].to_vec();
        apply_mask(&mut payload, MASK);
        assert_eq!(payload, b"Hello");
        let mut out = Vec::new();
        write_frame(&mut out, OpCode::Text, b"Hello", Some(MASK));
        assert_eq!(out, masked, "byte for byte the RFC's");
        // §5.7: "Hel" + "lo" in two unmasked fragments.
        let h = parse_header(&[0x01, 0x03, 0x48, 0x65, 0x6c], 100, Peer::Server).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len), (false, OpCode::Text, 3));
        let h = parse_header(&[0x80, 0x02, 0x6c, 0x6f], 100, Peer::Server).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len), (true, OpCode::Continuation, 2));
    }

    #[test]
    fn masking_is_an_involution_at_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut masked = data.clone();
            apply_mask(&mut masked, MASK);
            for (i, (m, d)) in masked.iter().zip(&data).enumerate() {
                assert_eq!(*m, d ^ MASK[i % 4], "len {len} byte {i}");
            }
            apply_mask(&mut masked, MASK);
            assert_eq!(masked, data);
        }
    }

    #[test]
    fn refuses_what_the_rfc_forbids() {
        let v = |b: &[u8]| parse_header(b, 1000, Peer::Client).unwrap_err();
        assert_eq!(v(&[0x81, 0x05]), Violation(PROTOCOL_ERROR, "unmasked client frame"));
        assert_eq!(v(&[0xC1, 0x80]), Violation(PROTOCOL_ERROR, "reserved bits set")); // RSV1, no extension
        assert_eq!(v(&[0x83, 0x80]), Violation(PROTOCOL_ERROR, "reserved opcode"));
        assert_eq!(v(&[0x09, 0x80]), Violation(PROTOCOL_ERROR, "bad control frame")); // fragmented ping
        assert_eq!(v(&[0x89, 0x80 | 126, 0, 126]), Violation(PROTOCOL_ERROR, "bad control frame"));
        assert_eq!(v(&[0x82, 0x80 | 126, 0x03, 0xE9]), Violation(TOO_BIG, "message too big"));
        assert_eq!(v(&[0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).0, TOO_BIG);
        // Exactly the cap is allowed.
        let mut max = Vec::new();
        write_frame(&mut max, OpCode::Binary, &[0; 1000], Some([0; 4]));
        assert!(parse_header(&max, 1000, Peer::Client).unwrap().is_some());
        // A server's frames break the same rules, masking aside.
        let s = |b: &[u8]| parse_header(b, 255, Peer::Server).unwrap_err();
        assert_eq!(s(&[0xC1, 0x00]), Violation(PROTOCOL_ERROR, "reserved bits set"));
        assert_eq!(s(&[0x83, 0x00]), Violation(PROTOCOL_ERROR, "reserved opcode"));
        assert_eq!(s(&[0x09, 0x00]), Violation(PROTOCOL_ERROR, "bad control frame"));
        assert_eq!(s(&[0x81, 0x7E, 0x01, 0x00]), Violation(TOO_BIG, "message too big"));
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
