//! The `rust_socketio` crate (crates.io), a stock Socket.IO v5 client from outside the
//! JavaScript and Python ecosystems, against `parlor serve` (the room service) on a free
//! loopback port.
//!
//! With the server's defaults every event handler gets exactly the event's arguments: connection
//! state recovery is off, so no offset is appended. With `--recovery-window` the same client
//! sees the offset as one more argument, which is why recovery is opt-in.
//!
//! Binary: `PARLOR_BIN`, else `target/release/parlor` of this checkout; with `PARLOR_COMPONENT`
//! set, the server runs its logic from that WebAssembly component (`--component`).
//! Run from the repository root:
//! `CARGO_TARGET_DIR=target/rust_client cargo test --manifest-path native/tests/rust_client/Cargo.toml`

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_socketio::client::Client;
use rust_socketio::{ClientBuilder, Event, Payload, TransportType};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(10);

/// `parlor serve` on a free port with its own data dir; killed and cleaned up on drop.
struct Server {
    child: Child,
    url: String,
    data_dir: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        static N: AtomicU32 = AtomicU32::new(0);
        let bin = std::env::var_os("PARLOR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../target/release/parlor"));
        assert!(bin.exists(), "binary not found: {} (build it, or set PARLOR_BIN)", bin.display());
        let data_dir = std::env::temp_dir().join(format!(
            "parlor-rust-client-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(&bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(&data_dir);
        if let Some(component) = std::env::var_os("PARLOR_COMPONENT") {
            cmd.arg("--component").arg(component);
        }
        let mut child = cmd
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap();
                s.extend_from_slice(&buf[..n]);
                let excess = s.len().saturating_sub(64 << 10);
                s.drain(..excess);
            }
        });
        // The first stdout line is `parlor listening on http://ADDR`; the rest is drained.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("reading the server's stdout");
        let url = line
            .trim_end()
            .strip_prefix("parlor listening on ")
            .unwrap_or_else(|| {
                let tail = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
                panic!("unexpected first stdout line {line:?}; stderr: {tail}")
            })
            .to_owned();
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Server { child, url, data_dir, stderr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
            eprintln!("parlor serve stderr (last 64 KiB):\n{tail}");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// One `rust_socketio` client and every event it received: (name, arguments).
struct Peer {
    client: Client,
    events: Receiver<(String, Payload)>,
}

impl Peer {
    fn connect(server: &Server, transport: TransportType) -> Peer {
        let (tx, events) = channel();
        let (connected_tx, connected) = channel();
        let client = ClientBuilder::new(server.url.as_str())
            .transport_type(transport)
            .reconnect(false)
            .on(Event::Connect, move |_, _| {
                let _ = connected_tx.send(());
            })
            .on_any(move |event, payload, _| {
                let _ = tx.send((String::from(event), payload));
            })
            .connect()
            .expect("rust_socketio connects");
        connected.recv_timeout(TIMEOUT).expect("the connect event");
        Peer { client, events }
    }

    /// The arguments of the next `name` event (events of other names before it are skipped).
    fn next(&self, name: &str) -> Vec<Value> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (event, payload) =
                self.events.recv_timeout(left).unwrap_or_else(|e| panic!("no {name:?} event within {TIMEOUT:?}: {e}"));
            if event == name {
                match payload {
                    Payload::Text(args) => return args,
                    other => panic!("{name}: expected JSON arguments, got {other:?}"),
                }
            }
        }
    }

    /// `emit` with an ack; the ack's arguments.
    fn call(&self, event: &str, arg: Value) -> Vec<Value> {
        let (tx, rx) = channel();
        self.client
            .emit_with_ack(event, arg, TIMEOUT, move |payload, _| {
                let _ = tx.send(payload);
            })
            .expect("emit_with_ack");
        match rx.recv_timeout(TIMEOUT).unwrap_or_else(|e| panic!("no ack for {event:?}: {e}")) {
            // rust_socketio hands an ack's arguments over as one JSON array.
            Payload::Text(v) => match <[Value; 1]>::try_from(v) {
                Ok([Value::Array(args)]) => args,
                Ok([other]) => panic!("{event}: ack not an argument list: {other}"),
                Err(v) => panic!("{event}: ack payload {v:?}"),
            },
            other => panic!("{event}: ack payload {other:?}"),
        }
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The one argument of an event; anything else (an offset after it) fails with the arguments.
fn only(name: &str, args: Vec<Value>) -> Value {
    match <[Value; 1]>::try_from(args) {
        Ok([arg]) => arg,
        Err(args) => panic!("{name}: expected exactly one argument, got {}: {args:?}", args.len()),
    }
}

#[test]
fn with_the_defaults_handlers_get_exactly_the_payload() {
    let server = Server::start(&[]);
    let room = unique("rust-room");

    let ann = Peer::connect(&server, TransportType::Websocket);
    ann.client.emit("join", json!({"username": "Ann", "room": room})).unwrap();
    let info = only("room-info", ann.next("room-info"));
    let ann_user = info["users"][0].clone();
    assert_eq!(info, json!({"room": room, "users": [ann_user], "recentMessages": []}));
    assert_eq!(ann_user["username"], "Ann");

    let bob = Peer::connect(&server, TransportType::Polling);
    bob.client.emit("join", json!({"username": "Bob", "room": room})).unwrap();
    let info = only("room-info", bob.next("room-info"));
    assert_eq!(info["room"], json!(room));
    let bob_user = info["users"].as_array().unwrap().iter().find(|u| u["username"] == "Bob").unwrap().clone();
    let joined = only("user-joined", ann.next("user-joined"));
    assert_eq!(joined, json!({"user": bob_user, "message": "Bob joined the chat"}));

    let ack = only("send-message ack", bob.call("send-message", json!({"content": " hello from rust ", "room": room})));
    assert_eq!(ack["success"], true, "{ack}");
    let id = ack["id"].as_str().expect("the stored message's id").to_owned();
    for (who, peer) in [("Ann", &ann), ("Bob", &bob)] {
        let mut msg = only("new-message", peer.next("new-message"));
        let timestamp = msg.as_object_mut().unwrap().remove("timestamp");
        assert!(timestamp.as_ref().and_then(Value::as_str).is_some_and(|t| t.ends_with('Z')), "{who}: {timestamp:?}");
        assert_eq!(msg, json!({"id": id, "content": "hello from rust", "sender": bob_user, "room": room}), "{who}");
    }

    let refused = only("ack", ann.call("send-message", json!({"content": "x", "room": unique("not-joined")})));
    assert_eq!(refused["code"], "NOT_IN_ROOM", "{refused}");
    ann.client.disconnect().unwrap();
    bob.client.disconnect().unwrap();
}

#[test]
fn with_recovery_enabled_the_offset_is_one_more_argument() {
    // What the defaults spare stock clients: rust_socketio does not strip the offset.
    let server = Server::start(&["--recovery-window", "60000"]);
    let room = unique("rust-offset");
    let ann = Peer::connect(&server, TransportType::Websocket);
    ann.client.emit("join", json!({"username": "Ann", "room": room})).unwrap();
    let args = ann.next("room-info");
    assert_eq!(args.len(), 2, "{args:?}");
    assert_eq!(args[0]["room"], json!(room));
    assert!(args[1].is_string(), "a string offset after the payload: {args:?}");
    // An ack's arguments never carry one.
    let ack = only("send-message ack", ann.call("send-message", json!({"content": "acked", "room": room})));
    assert_eq!(ack["success"], true, "{ack}");
    let args = ann.next("new-message");
    assert_eq!((args.len(), args[0]["content"].clone()), (2, json!("acked")), "{args:?}");
    ann.client.disconnect().unwrap();
}
