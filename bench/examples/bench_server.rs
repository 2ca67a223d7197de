//! The benchmark server: the three handlers every server in a `parlor bench` comparison
//! has, written against parlor's Rust API. Namespace `/` only:
//! - `join` (room, ack): joins the room named by the argument, then acks (no arguments);
//! - `message` ({room, payload}): emits `message` with `payload` to the room, sender included;
//! - `echo` (arg, ack): acks with the same argument.
//!
//! It takes the flags of `parlor serve` (with their defaults: recovery off, no offsets in
//! payloads); `--listen` defaults to `127.0.0.1:$PORT` (else 127.0.0.1:3000) unless given as
//! a flag, in the environment or in the `--config` file.
//!
//! Run: `cargo run --release -p parlor-bench --example bench_server -- --listen 127.0.0.1:3000`,
//! then e.g. `parlor bench fanout --url http://127.0.0.1:3000 --server-pid PID`.

use parlor::cli::ServeArgs;
use parlor_core::socketio::{Event, Message, SocketId, Target};
use parlor_core::{Handler, Instant, Io, Service};
use serde_json::Value;

/// The handlers; no state of their own.
struct BenchServer;

impl Handler for BenchServer {
    type Auth = ();

    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/"
    }

    fn on_event(&mut self, io: &mut Io<'_>, socket: &SocketId, ev: Event, now: Instant) {
        match ev.name.as_str() {
            "join" => {
                if let Some(room) = ev.args.first().and_then(Value::as_str) {
                    io.join(socket, room);
                }
                if let Some(id) = ev.ack {
                    io.ack(socket, id, &[], &[]);
                }
            }
            "message" => {
                let Some(Value::Object(mut arg)) = ev.args.into_iter().next() else { return };
                let Some(Value::String(room)) = arg.remove("room") else { return };
                let payload = arg.remove("payload").unwrap_or(Value::Null);
                let target = Target { nsp: "/".to_owned(), rooms: vec![room], ..Target::default() };
                io.emit(&target, &Message::new("message", vec![payload]).with_binary(ev.binary), now);
            }
            "echo" => {
                if let Some(id) = ev.ack {
                    let arg = ev.args.first().map(std::slice::from_ref).unwrap_or_default();
                    io.ack(socket, id, arg, &ev.binary);
                }
            }
            _ => {}
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = ServeArgs::parse_from_env();
    if args.listen.is_none() {
        if let Ok(port) = std::env::var("PORT") {
            args.listen = Some(format!("127.0.0.1:{port}"));
        }
    }
    let settings = args.settings()?;
    parlor::run_blocking(settings, |core_config, seed, now| Box::new(Service::new(core_config, seed, now, BenchServer)))
}
