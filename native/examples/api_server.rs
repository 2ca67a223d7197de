//! A Socket.IO server written against parlor's Rust API: the test server of the interop
//! suites, and an example of a handler of your own.
//!
//! It takes the same flags as `parlor serve` and serves namespaces `/` and `/second`:
//! - middleware: a CONNECT whose auth has `refuse` is refused ("refused", `{reason}`);
//! - `echo` (...args, ack?): `echo` back to the sender with the same args, and the ack too;
//! - `join` (room | [rooms], ack) / `leave` (room, ack): ack with the socket's rooms;
//! - `to-room` / `to-rooms` / `except-sender` / `to-all` / `except-room`: the broadcast
//!   operators, each `{room(s)?, except?, event, data}`;
//! - `sockets-in` (room, ack): the ids in a room; `rooms-of` (ack): the socket's rooms;
//! - `request-ack` ({event, data, timeout}, ack): asks the client for an ack and reports
//!   `{ok: true, reply}` or `{ok: false, error: "timeout"}`;
//! - `disconnect-me`: the server disconnects the socket;
//! - `inc` / `count` (ack): counts events per socket (nothing fired at connect is lost).
//!
//! Run: `cargo run --release -p parlor --example api_server -- --listen 127.0.0.1:3001`

use parlor::cli::ServeArgs;
use parlor_core::socketio::{AckReply, ConnectRefusal, DisconnectReason, Event};
use parlor_core::socketio::{Message, SocketId, Target};
use parlor_core::{Handler, Instant, Io, Service};
use serde_json::{json, Value};
use std::collections::HashMap;

#[derive(Default)]
struct ApiServer {
    /// Events counted by `inc`, per socket.
    counts: HashMap<SocketId, u64>,
    /// `request-ack` calls waiting for the client: (socket, tag) → the ack id to answer.
    waiting: HashMap<(SocketId, u64), u64>,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

impl Handler for ApiServer {
    type Auth = ();

    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/" || nsp == "/second"
    }

    fn authorize(&mut self, _io: &mut Io<'_>, _nsp: &str, auth: &Value, _now: Instant) -> Result<(), ConnectRefusal> {
        match auth.get("refuse") {
            Some(reason) => Err(ConnectRefusal { message: "refused".into(), data: Some(json!({ "reason": reason })) }),
            None => Ok(()),
        }
    }

    fn on_event(&mut self, io: &mut Io<'_>, socket: &SocketId, ev: Event, now: Instant) {
        let Some(nsp) = io.nsp_of(socket).map(str::to_owned) else { return };
        let arg = ev.args.first().cloned().unwrap_or(Value::Null);
        let ack = |io: &mut Io<'_>, v: Value| {
            if let Some(id) = ev.ack {
                io.ack(socket, id, &[v], &[]);
            }
        };
        // Placeholders inside `data` index into the event's buffers: relay those too.
        let relay = |arg: &Value| {
            Message::new(arg["event"].as_str().unwrap_or("relay"), vec![arg["data"].clone()])
                .with_binary(ev.binary.clone())
        };
        match ev.name.as_str() {
            "echo" => {
                io.emit_to(socket, &Message::new("echo", ev.args.clone()).with_binary(ev.binary.clone()), now);
                if let Some(id) = ev.ack {
                    io.ack(socket, id, &ev.args, &ev.binary);
                }
            }
            "join" => {
                for room in strings(&arg) {
                    io.join(socket, &room);
                }
                ack(io, json!(io.rooms_of(socket)));
            }
            "leave" => {
                for room in strings(&arg) {
                    io.leave(socket, &room);
                }
                ack(io, json!(io.rooms_of(socket)));
            }
            "rooms-of" => ack(io, json!(io.rooms_of(socket))),
            "to-room" => io.emit(&Target::all(&nsp).to(arg["room"].as_str().unwrap_or("")), &relay(&arg), now),
            "to-rooms" => {
                let target = Target { rooms: strings(&arg["rooms"]), ..Target::all(&nsp) };
                io.emit(&target, &relay(&arg), now);
            }
            "except-sender" => {
                let target = Target { rooms: strings(&arg["room"]), ..Target::all(&nsp) }.except_socket(socket);
                io.emit(&target, &relay(&arg), now);
            }
            "to-all" => io.emit(&Target::all(&nsp), &relay(&arg), now),
            "except-room" => {
                let target = Target { except_rooms: strings(&arg["except"]), ..Target::all(&nsp) };
                io.emit(&target, &relay(&arg), now);
            }
            "sockets-in" => {
                let room = arg.as_str().unwrap_or("");
                let ids: Vec<String> = io.sockets_in(&nsp, &[room]).iter().map(ToString::to_string).collect();
                ack(io, json!(ids));
            }
            "request-ack" => {
                let timeout = arg["timeout"].as_u64().unwrap_or(5000);
                let msg = relay(&arg);
                match (io.emit_with_ack(socket, &msg, timeout, now), ev.ack) {
                    (Some(tag), Some(id)) => {
                        self.waiting.insert((socket.clone(), tag), id);
                    }
                    (None, _) => ack(io, json!({"ok": false, "error": "too many pending acks"})),
                    _ => {}
                }
            }
            "disconnect-me" => io.disconnect(socket, now),
            "inc" => *self.counts.entry(socket.clone()).or_default() += 1,
            "count" => {
                let n = self.counts.get(socket).copied().unwrap_or(0);
                ack(io, json!(n));
            }
            _ => {}
        }
    }

    fn on_ack(&mut self, io: &mut Io<'_>, socket: &SocketId, tag: u64, reply: AckReply, _now: Instant) {
        let Some(id) = self.waiting.remove(&(socket.clone(), tag)) else { return };
        let (answer, binary) = match reply {
            AckReply::Answered { args, binary } => (json!({"ok": true, "reply": args}), binary),
            AckReply::TimedOut => (json!({"ok": false, "error": "timeout"}), Vec::new()),
            AckReply::Disconnected => return,
        };
        io.ack(socket, id, &[answer], &binary);
    }

    fn on_disconnect(
        &mut self,
        _io: &mut Io<'_>,
        socket: &SocketId,
        _nsp: &str,
        _reason: DisconnectReason,
        _now: Instant,
    ) {
        self.counts.remove(socket);
        self.waiting.retain(|(s, _), _| s != socket);
    }
}

fn main() -> anyhow::Result<()> {
    let args = ServeArgs::parse_from_env();
    let settings = args.settings()?;
    parlor::run_blocking(settings, |core_config, seed, now| {
        Box::new(Service::new(core_config, seed, now, ApiServer::default()))
    })
}
