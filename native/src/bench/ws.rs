//! The client side of WebSocket (RFC 6455), as little as a load generator needs: the
//! opening handshake (with the `Sec-WebSocket-Accept` check), masked frames out, unmasked
//! frames in (masked ones are accepted too, for tests), fragmentation and control frames.
//!
//! Everything here is pure (no I/O), so it is unit-tested; [`super::client`] moves the bytes.

/// Frame opcodes.
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A frame that breaks the protocol (or exceeds what we accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set (no extension was negotiated).
    Reserved,
    /// A control frame longer than 125 bytes or fragmented.
    BadControl,
    /// A length that does not fit this machine or exceeds the limit.
    TooLong(u64),
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Reserved => f.write_str("reserved bits set"),
            FrameError::BadControl => f.write_str("bad control frame"),
            FrameError::TooLong(n) => write!(f, "frame of {n} bytes is too long"),
            FrameError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// A parsed frame header: where the payload is inside the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    /// The masking key, if the frame is masked (a server must not mask; tolerated).
    pub mask: Option<[u8; 4]>,
    /// Bytes of header (2 to 14).
    pub header_len: usize,
    pub payload_len: usize,
}

impl Header {
    /// Header plus payload.
    #[must_use]
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses the header at the start of `buf`: `Ok(None)` if more bytes are needed for the
/// header (the payload may also still be incomplete: compare [`Header::frame_len`]).
pub fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || b1 & 0x7F > 125 {
                return Err(FrameError::BadControl);
            }
        }
        other => return Err(FrameError::UnknownOpcode(other)),
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let payload_len = match usize::try_from(len) {
        Ok(n) if n <= max_payload => n,
        _ => return Err(FrameError::TooLong(len)),
    };
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header { fin, opcode, mask, header_len: at, payload_len }))
}

/// XORs `data` with the 4-byte `mask` (the same operation masks and unmasks), 8 bytes at a
/// time.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let wide = u64::from(m) | (u64::from(m) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_ne_bytes(w) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // Every chunk was 8 bytes (a multiple of 4), so the tail starts at mask offset 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one final, masked frame with `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | (opcode & 0x0F));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// The opening handshake's request for `path_and_query` on `host` (`host:port`).
#[must_use]
pub fn handshake_request(host: &str, path_and_query: &str, key: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Checks the server's handshake response (the bytes up to and including the blank line):
/// status 101 and the `Sec-WebSocket-Accept` that `key` calls for.
pub fn check_handshake_response(head: &[u8], key: &str) -> Result<(), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "101" {
        return Err(format!("expected 101 Switching Protocols, got {status:?}"));
    }
    let expected = accept_key(key);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("sec-websocket-accept") {
                return if value.trim() == expected {
                    Ok(())
                } else {
                    Err(format!("bad Sec-WebSocket-Accept {:?} (expected {expected:?})", value.trim()))
                };
            }
        }
    }
    Err("no Sec-WebSocket-Accept header".into())
}

/// Where the response head ends: the index just past `\r\n\r\n`.
#[must_use]
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
#[must_use]
pub fn accept_key(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + WS_GUID.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(WS_GUID.as_bytes());
    base64(&sha1(&input))
}

/// Standard base64 with padding.
#[must_use]
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SHA-1 (FIPS 180-4). Only for the handshake check: SHA-1 is not used for security here.
#[must_use]
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hi, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hi = hi.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// A small, fast PRNG (xorshift64*) for masking keys and the scenarios' random choices.
/// Masking keys need not be cryptographic for a load generator talking to its own server.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    #[must_use]
    pub fn new(seed: u64) -> Rng {
        // Never zero: xorshift would stay at zero.
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(hex(&sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(&sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    }

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn accept_key_matches_rfc_6455() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn handshake_response_is_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(head_end(ok), Some(ok.len()));
        assert_eq!(check_handshake_response(ok, key), Ok(()));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_handshake_response(wrong, key).unwrap_err().contains("bad Sec-WebSocket-Accept"));
        let refused = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert!(check_handshake_response(refused, key).unwrap_err().contains("400"));
        assert_eq!(head_end(b"HTTP/1.1 101 OK\r\n"), None);
        let req = handshake_request("127.0.0.1:3000", "/socket.io/?EIO=4&transport=websocket", key);
        assert!(req.starts_with("GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
        assert!(req.ends_with("Sec-WebSocket-Version: 13\r\n\r\n"));
    }

    #[test]
    fn masking_is_an_involution_at_every_length_and_offset() {
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut masked = data.clone();
            apply_mask(&mut masked, mask);
            for (i, (m, d)) in masked.iter().zip(&data).enumerate() {
                assert_eq!(*m, d ^ mask[i % 4], "len {len} byte {i}");
            }
            apply_mask(&mut masked, mask);
            assert_eq!(masked, data);
        }
    }

    #[test]
    fn rfc_6455_examples_decode() {
        // §5.7: a single-frame unmasked text message "Hello".
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let h = parse_header(&unmasked, 1 << 20).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.mask, h.header_len, h.payload_len), (true, OP_TEXT, None, 2, 5));
        assert_eq!(&unmasked[h.header_len..h.frame_len()], b"Hello");
        // §5.7: the masked "Hello".
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let h = parse_header(&masked, 1 << 20).unwrap().unwrap();
        assert_eq!((h.mask, h.header_len, h.payload_len), (Some([0x37, 0xfa, 0x21, 0x3d]), 6, 5));
        let mut payload = masked[h.header_len..h.frame_len()].to_vec();
        apply_mask(&mut payload, h.mask.unwrap());
        assert_eq!(payload, b"Hello");
        // The same message, encoded by us with that key, is byte for byte the RFC's.
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(out, masked);
        // §5.7: the first fragment of "Hel" + "lo", unmasked.
        let h = parse_header(&[0x01, 0x03, 0x48, 0x65, 0x6c], 100).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len), (false, OP_TEXT, 3));
        let h = parse_header(&[0x80, 0x02, 0x6c, 0x6f], 100).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len), (true, OP_CONTINUATION, 2));
    }

    #[test]
    fn lengths_round_trip_through_all_three_encodings() {
        let mut rng = Rng::new(7);
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let mut out = Vec::new();
            let mask = rng.mask();
            encode_frame(&mut out, OP_BINARY, &payload, mask);
            let h = parse_header(&out, 1 << 20).unwrap().unwrap();
            assert_eq!((h.opcode, h.payload_len, h.frame_len()), (OP_BINARY, len, out.len()), "len {len}");
            let mut back = out[h.header_len..].to_vec();
            apply_mask(&mut back, h.mask.unwrap());
            assert_eq!(back, payload, "len {len}");
            // Every strict prefix of the header asks for more bytes.
            for cut in 0..h.header_len {
                assert_eq!(parse_header(&out[..cut], 1 << 20), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn protocol_violations_are_errors() {
        assert_eq!(parse_header(&[0xC1, 0x00], 10), Err(FrameError::Reserved));
        assert_eq!(parse_header(&[0x83, 0x00], 10), Err(FrameError::UnknownOpcode(3)));
        assert_eq!(parse_header(&[0x09, 0x00], 10), Err(FrameError::BadControl), "fragmented ping");
        assert_eq!(parse_header(&[0x89, 0x7E, 0, 200], 1000), Err(FrameError::BadControl), "long ping");
        assert_eq!(parse_header(&[0x81, 0x7E, 0x01, 0x00], 255), Err(FrameError::TooLong(256)));
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let (mut a, mut b) = (Rng::new(1), Rng::new(1));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(7) < 7);
            b.below(7);
        }
        assert_ne!(Rng::new(0).next_u64(), 0);
    }
}
