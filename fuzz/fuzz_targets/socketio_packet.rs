//! Socket.IO packets, two ways.
//!
//! - Input not starting with `~`: the text goes to `socketio::decode` (max 10 attachments).
//!   A packet it accepts must encode back to text that decodes to the same packet.
//! - Input starting with `~`: the rest is an `Arbitrary` sequence of text and binary frames
//!   sent over one WebSocket to a `Service<ConformanceApp>` (namespaces `/` and `/custom`;
//!   `message` → `message-back`, `message-with-ack` → an ack, both with the attachments).
//!   A small model of binary reassembly predicts, frame by frame, when the session must be
//!   closed (bad Engine.IO or Socket.IO packet, text while attachments are due, a binary
//!   frame nobody announced), and which binary frames must come back echoed, in order.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use parlor_core::codec::engineio::{self, Packet as EioPacket};
use parlor_core::codec::socketio::{decode, encode, encode_args, Packet, PacketType};
use parlor_core::conformance::ConformanceApp;
use parlor_core::host::{ConnId, Frame, Method, OutFrame, Output, Request};
use parlor_core::{Config, Input, Instant, Machine, Service};
use parlor_fuzz::J;
use serde_json::{json, Value};
use std::collections::HashSet;

const MAX_ATTACHMENTS: usize = 10;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((b'~', rest)) => {
            if let Ok(frames) = Vec::<Msg>::arbitrary_take_rest(Unstructured::new(rest)) {
                stream(&frames);
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(data) {
                round_trip(text);
            }
        }
    }
});

fn round_trip(text: &str) {
    let Ok(p) = decode(text, MAX_ATTACHMENTS) else { return };
    assert!(p.attachments <= MAX_ATTACHMENTS);
    // `5`/`6` with `0-` is a packet the server never writes (it writes `2`/`3`): skip it.
    if matches!(p.kind, PacketType::BinaryEvent | PacketType::BinaryAck) && p.attachments == 0 {
        return;
    }
    let kind = match p.kind {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        k => k,
    };
    let out = encode(kind, &p.nsp, p.id, p.data.as_ref(), p.attachments);
    let out = std::str::from_utf8(&out).expect("encoder writes UTF-8");
    let again = decode(&out[1..], MAX_ATTACHMENTS).unwrap_or_else(|e| panic!("{text:?} → {out:?}: {e}"));
    assert_eq!(again, p, "{text:?} → {out:?}");
}

/// One frame of the stream.
#[derive(Arbitrary, Debug)]
enum Msg {
    /// Any text frame.
    Text(String),
    Binary(Vec<u8>),
    /// A well-formed Socket.IO packet (`4` + packet); its attachments are separate frames.
    Packet {
        kind: Kind,
        nsp: Nsp,
        ack: Option<u16>,
        args: Vec<J>,
        attachments: Vec<Vec<u8>>,
    },
    /// A packet announcing `n` attachments whose placeholders are arbitrary.
    Announce {
        n: u8,
        nsp: Nsp,
        args: Vec<J>,
    },
    Control(Control),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Connect,
    Disconnect,
    Message,
    MessageWithAck,
    OtherEvent,
    Ack,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Nsp {
    Root,
    Custom,
    Unknown,
}

impl Nsp {
    fn name(self) -> &'static str {
        match self {
            Nsp::Root => "/",
            Nsp::Custom => "/custom",
            Nsp::Unknown => "/nope",
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Control {
    Ping,
    Pong,
    Noop,
    Upgrade,
    Close,
}

/// Renders a message as the frames a client would send.
fn frames(msg: &Msg) -> Vec<(bool, Vec<u8>)> {
    let text = |s: Vec<u8>| (true, s);
    match msg {
        Msg::Text(t) => vec![text(t.as_bytes().to_vec())],
        Msg::Binary(b) => vec![(false, b.clone())],
        Msg::Control(c) => vec![text(
            match c {
                Control::Ping => "2",
                Control::Pong => "3",
                Control::Noop => "6",
                Control::Upgrade => "5",
                Control::Close => "1",
            }
            .into(),
        )],
        Msg::Announce { n, nsp, args } => {
            let args: Vec<Value> = args.iter().map(|a| a.render(&[])).collect();
            let n = usize::from(*n % 12);
            let t = encode_args(PacketType::Event, nsp.name(), None, Some("message"), &args, None, n);
            let mut out = vec![text(t)];
            out.extend((0..n).map(|i| (false, vec![i as u8])));
            out
        }
        Msg::Packet { kind, nsp, ack, args, attachments } => {
            let nsp = nsp.name();
            let attachments = &attachments[..attachments.len().min(MAX_ATTACHMENTS)];
            let mut args: Vec<Value> = args.iter().map(|a| a.render(&[])).collect();
            args.extend((0..attachments.len()).map(|i| json!({"_placeholder": true, "num": i})));
            let n = attachments.len();
            let ack = ack.map(u64::from);
            let t = match kind {
                Kind::Connect => encode(PacketType::Connect, nsp, None, args.first().filter(|a| a.is_object()), 0),
                Kind::Disconnect => encode(PacketType::Disconnect, nsp, None, None, 0),
                Kind::Message => encode_args(PacketType::Event, nsp, ack, Some("message"), &args, None, n),
                Kind::MessageWithAck => {
                    encode_args(PacketType::Event, nsp, ack, Some("message-with-ack"), &args, None, n)
                }
                Kind::OtherEvent => encode_args(PacketType::Event, nsp, ack, Some("other"), &args, None, n),
                Kind::Ack => encode_args(PacketType::Ack, nsp, Some(ack.unwrap_or(0)), None, &args, None, n),
            };
            let mut out = vec![text(t)];
            if !matches!(kind, Kind::Connect | Kind::Disconnect) {
                out.extend(attachments.iter().map(|a| (false, a.clone())));
            }
            out
        }
    }
}

/// What the server must do with the stream: the Engine.IO and Socket.IO rules, as simply
/// as they can be written.
#[derive(Default)]
struct Model {
    closed: bool,
    partial: Option<(Packet, Vec<Vec<u8>>)>,
    connected: HashSet<String>,
}

impl Model {
    /// Returns the binary frames the server must echo for this frame.
    fn text(&mut self, text: &str) -> Vec<Vec<u8>> {
        if self.closed {
            return Vec::new();
        }
        match engineio::decode(text) {
            Err(_) | Ok(EioPacket::Close) => self.closed = true,
            Ok(EioPacket::Message(m)) => {
                if self.partial.is_some() {
                    self.closed = true;
                    return Vec::new();
                }
                match decode(m, MAX_ATTACHMENTS) {
                    Err(_) => self.closed = true,
                    Ok(p) if p.attachments > 0 => self.partial = Some((p, Vec::new())),
                    Ok(p) => return self.dispatch(p, Vec::new()),
                }
            }
            Ok(_) => {}
        }
        Vec::new()
    }

    fn binary(&mut self, bin: &[u8]) -> Vec<Vec<u8>> {
        if self.closed {
            return Vec::new();
        }
        let Some((p, bufs)) = self.partial.as_mut() else {
            self.closed = true;
            return Vec::new();
        };
        bufs.push(bin.to_vec());
        if bufs.len() == p.attachments {
            let (p, bufs) = self.partial.take().expect("just matched");
            return self.dispatch(p, bufs);
        }
        Vec::new()
    }

    fn dispatch(&mut self, p: Packet, bufs: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let connected = self.connected.contains(&p.nsp);
        match p.kind {
            PacketType::Connect if !connected && (p.nsp == "/" || p.nsp == "/custom") => {
                self.connected.insert(p.nsp);
            }
            PacketType::Disconnect if connected => {
                self.connected.remove(&p.nsp);
            }
            PacketType::Event | PacketType::BinaryEvent if connected => {
                let name = p.data.as_ref().and_then(|d| d.get(0)).and_then(Value::as_str);
                match name {
                    Some("message") => return bufs,
                    Some("message-with-ack") if p.id.is_some() => return bufs,
                    _ => {}
                }
            }
            _ => {}
        }
        Vec::new()
    }
}

fn stream(msgs: &[Msg]) {
    let conn = ConnId(1);
    // Recovery on (it is off by default), as this target has always run: events carry offsets.
    let config = Config { recovery_window_ms: 120_000, ..Config::default() };
    let mut core = Service::new(config, [1; 32], Instant(0), ConformanceApp::new());
    let req = Request {
        conn,
        method: Method::Get,
        query: "EIO=4&transport=websocket",
        body: b"",
        too_large: false,
        websocket: true,
        remote: None,
    };
    core.handle(Input::Request(req), Instant(0));
    let mut accepted = false;
    while let Some(o) = core.poll_output() {
        accepted |= o == Output::Accept { conn };
        assert!(!matches!(o, Output::Close { .. }), "closed at the handshake: {o:?}");
    }
    assert!(accepted);

    let mut model = Model::default();
    for msg in msgs {
        for (is_text, bytes) in frames(msg) {
            let was_closed = model.closed;
            let expected = if is_text {
                let Ok(text) = std::str::from_utf8(&bytes) else { continue };
                core.handle(Input::Frame { conn, frame: Frame::Text(text) }, Instant(0));
                model.text(text)
            } else {
                core.handle(Input::Frame { conn, frame: Frame::Binary(&bytes) }, Instant(0));
                model.binary(&bytes)
            };
            let mut echoed = Vec::new();
            let mut closed = false;
            while let Some(o) = core.poll_output() {
                match o {
                    Output::Send { frame: OutFrame::Binary(b), .. } => echoed.push(b.to_vec()),
                    Output::Send { frame: OutFrame::Text(t), .. } => {
                        assert!(!closed, "a frame after the close");
                        assert!(t.first().is_some_and(u8::is_ascii_digit), "{t:?}");
                    }
                    Output::Close { .. } => closed = true,
                    other => panic!("unexpected output {other:?}"),
                }
            }
            assert_eq!(closed, model.closed && !was_closed, "close after {msg:?}");
            assert_eq!(echoed, expected, "echo after {msg:?}");
            if model.closed {
                return;
            }
        }
    }
}
