//! The WebSocket layer on the wire (RFC 6455), against `parlor conformance`'s raw
//! Engine.IO echo at /engine.io/: fragmentation, control frames, the close handshake,
//! bytes sent right behind the upgrade request, and the close code for every rule a client
//! can break.

mod common;

use common::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `parlor conformance` on a free port.
fn conformance() -> Server {
    Server::start(&["conformance", "--listen", "127.0.0.1:0"])
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

struct Ws {
    s: TcpStream,
}

impl Ws {
    /// Upgrades at /engine.io/ and sends `extra` in the same write as the request.
    fn connect(server: &Server, extra: &[u8]) -> Ws {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!(
            "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nhost: {}\r\nupgrade: websocket\r\n\
             connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
            server.addr
        )
        .into_bytes();
        req.extend_from_slice(extra);
        s.write_all(&req).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        let mut ws = Ws { s };
        let (op, open) = ws.read();
        assert_eq!(op, TEXT);
        assert!(open.starts_with(b"0{"), "{}", String::from_utf8_lossy(&open));
        ws
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next server frame: (opcode, payload). Server frames must be unmasked and whole.
    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut h = [0u8; 2];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(h[0] & 0xF0, 0x80, "FIN set, no reserved bits");
        assert_eq!(h[1] & 0x80, 0, "servers never mask");
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.s.read_exact(&mut b).unwrap();
                usize::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.s.read_exact(&mut b).unwrap();
                usize::try_from(u64::from_be_bytes(b)).unwrap()
            }
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        self.s.read_exact(&mut payload).unwrap();
        (h[0] & 0x0F, payload)
    }

    /// Reads until a close frame; returns its code and reason.
    fn read_close(&mut self) -> (u16, String) {
        loop {
            let (op, payload) = self.read();
            if op == CLOSE {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8(payload[2..].to_vec()).unwrap());
            }
        }
    }

    /// The server drops the TCP connection (after its close frame). Shutting our side
    /// first tells a server that is draining our input that we are done.
    fn expect_eof(&mut self) {
        let _ = self.s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = self.s.read_to_end(&mut rest);
    }
}

#[test]
fn messages_fragments_and_control_frames() {
    let server = conformance();
    let mut ws = Ws::connect(&server, b"");

    ws.send(&frame(true, TEXT, b"4hello"));
    assert_eq!(ws.read(), (TEXT, b"4hello".to_vec()));

    // A text message in three fragments, with a ping between them.
    let mut bytes = frame(false, TEXT, b"4fr");
    bytes.extend(frame(false, 0, b"ag"));
    bytes.extend(frame(true, PING, b"p1"));
    bytes.extend(frame(true, 0, "mented ✓".as_bytes()));
    ws.send(&bytes);
    assert_eq!(ws.read(), (PONG, b"p1".to_vec()));
    assert_eq!(ws.read(), (TEXT, "4fragmented ✓".as_bytes().to_vec()));

    // Big enough for the 16- and 64-bit length forms, sent one byte at a time at first.
    let big = format!("4{}", "x".repeat(70_000));
    let bytes = frame(true, TEXT, big.as_bytes());
    for b in &bytes[..20] {
        ws.send(std::slice::from_ref(b));
    }
    ws.send(&bytes[20..]);
    assert_eq!(ws.read(), (TEXT, big.into_bytes()));

    // Binary in, binary out.
    ws.send(&frame(true, BINARY, &[1, 2, 3]));
    assert_eq!(ws.read(), (BINARY, vec![1, 2, 3]));

    // The close handshake: echoed, then the server drops the connection.
    ws.send(&frame(true, CLOSE, b"\x03\xe8bye"));
    assert_eq!(ws.read_close(), (1000, "bye".into()));
    ws.expect_eof();
}

#[test]
fn frames_sent_right_behind_the_upgrade_request_are_read() {
    let server = conformance();
    let mut early = frame(true, TEXT, b"4early");
    early.extend(frame(true, TEXT, b"4bird"));
    let mut ws = Ws::connect(&server, &early);
    assert_eq!(ws.read(), (TEXT, b"4early".to_vec()));
    assert_eq!(ws.read(), (TEXT, b"4bird".to_vec()));
}

#[test]
fn every_broken_rule_closes_with_its_code() {
    let server = conformance();
    let unmasked = {
        let mut f = frame(true, TEXT, b"");
        f[1] &= 0x7F;
        f.truncate(2);
        f
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("invalid UTF-8", frame(true, TEXT, b"4\xff\xfe"), 1007),
        ("unmasked frame", unmasked, 1002),
        ("continuation without a start", frame(true, 0, b"x"), 1002),
        ("text inside a fragmented message", [frame(false, TEXT, b"4a"), frame(true, TEXT, b"4b")].concat(), 1002),
        ("reserved opcode", frame(true, 0x3, b""), 1002),
        (
            "reserved bit",
            {
                let mut f = frame(true, TEXT, b"4a");
                f[0] |= 0x40;
                f
            },
            1002,
        ),
        ("fragmented ping", frame(false, PING, b""), 1002),
        ("invalid close code", frame(true, CLOSE, b"\x03\xed"), 1002),
        ("one-byte close payload", frame(true, CLOSE, b"\x03"), 1002),
        ("message over maxPayload", frame(true, TEXT, &vec![b'4'; 1_000_001]), 1009),
        (
            "fragments over maxPayload",
            [frame(false, TEXT, &vec![b'4'; 600_000]), frame(true, 0, &vec![b'x'; 600_000])].concat(),
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut ws = Ws::connect(&server, b"");
        ws.send(&bytes);
        let (got, _) = ws.read_close();
        assert_eq!(got, code, "{what}");
        ws.expect_eof();
    }
}
