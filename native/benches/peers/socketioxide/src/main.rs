//! The socketioxide peer of parlor's `bench_server` (bench/examples/bench_server.rs) for
//! `parlor bench`: socketioxide 0.18 from crates.io on hyper 1, namespace `/` only, with the
//! same three handlers:
//! - `join` (room, ack): joins the room named by the argument, then acks with no arguments;
//! - `message` ({room, payload}): emits `message` with `payload` to the room, sender included;
//! - `echo` (arg, ack): acks with the same argument.
//!
//! socketioxide answers CONNECT before the connect handler has run, so the event handlers are
//! registered in a connect middleware (it runs before the answer); otherwise events sent right
//! after CONNECT would find no handler and be dropped. Everything else is socketioxide's
//! default configuration, unless `--max-buffer-size N` is given: the packets queued per
//! connection (socketioxide's default is 128). When a receiver's queue is full, socketioxide
//! drops what a broadcast would add to it (`emit` returns an error, which a handler can only
//! ignore): the flag is there to show that effect, not for the comparison.
//!
//! Run: `cargo run --release -- --listen 127.0.0.1:3000` (default `127.0.0.1:$PORT`, else
//! 127.0.0.1:3000); it prints `socketioxide listening on ADDR` once it accepts connections.

use std::convert::Infallible;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use tokio::net::TcpListener;

/// The argument of `message`.
#[derive(serde::Deserialize)]
struct Message {
    room: String,
    /// Missing: `null`, as in parlor's handler.
    #[serde(default)]
    payload: serde_json::Value,
}

/// No arguments: socketioxide spreads a tuple into the packet's arguments, so an empty tuple
/// struct makes `[]` (Node's `ack()`); `()` would make `[null]`.
#[derive(serde::Serialize)]
struct NoArgs();

/// Registers the three handlers before socketioxide answers CONNECT.
async fn register(s: SocketRef) -> Result<(), Infallible> {
    s.on("join", async |s: SocketRef, Data(room): Data<String>, ack: AckSender| {
        s.join(room);
        let _ = ack.send(&NoArgs());
    });
    s.on("message", async |io: SocketIo, Data(m): Data<Message>| {
        // io.to (not s.to): the sender is in the room and gets its own message too.
        let _ = io.to(m.room).emit("message", &m.payload).await;
    });
    s.on("echo", async |Data(arg): Data<serde_json::Value>, ack: AckSender| {
        let _ = ack.send(&arg);
    });
    Ok(())
}

/// `--listen ADDR` (default `127.0.0.1:$PORT`, else 127.0.0.1:3000), `--max-buffer-size N`
/// and `--current-thread` (tokio's current-thread runtime instead of `#[tokio::main]`'s
/// multi-thread one: what parlor runs on when it may use one CPU).
fn parse_args() -> (String, Option<usize>, bool) {
    let usage = "usage: socketioxide-bench-server [--listen ADDR] [--max-buffer-size N] [--current-thread]";
    let fail = |msg: String| -> ! {
        eprintln!("{msg}\n{usage}");
        std::process::exit(2)
    };
    let mut args = std::env::args().skip(1);
    let (mut listen, mut buffer, mut current_thread) = (None, None, false);
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (a.clone(), None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next()).unwrap_or_else(|| fail(format!("{flag} needs a value")));
        match flag.as_str() {
            "--listen" => listen = Some(value()),
            "--current-thread" => current_thread = true,
            "--max-buffer-size" => {
                let v = value();
                buffer = Some(v.parse().unwrap_or_else(|_| fail(format!("--max-buffer-size {v}: not a number"))));
            }
            "-h" | "--help" => {
                println!("{usage}\n  --listen defaults to 127.0.0.1:$PORT, else 127.0.0.1:3000");
                std::process::exit(0);
            }
            other => fail(format!("unknown argument {other}")),
        }
    }
    let listen =
        listen.unwrap_or_else(|| format!("127.0.0.1:{}", std::env::var("PORT").unwrap_or_else(|_| "3000".into())));
    (listen, buffer, current_thread)
}

fn main() -> std::io::Result<()> {
    let (addr, buffer, current_thread) = parse_args();
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?
    };
    runtime.block_on(serve(addr, buffer))
}

async fn serve(addr: String, buffer: Option<usize>) -> std::io::Result<()> {
    let (svc, io) = match buffer {
        Some(n) => SocketIo::builder().max_buffer_size(n).build_svc(),
        None => SocketIo::new_svc(),
    };
    io.ns("/", (async || {}).with(register));
    let listener = TcpListener::bind(&addr).await?;
    println!("socketioxide listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: keep serving the others.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades();
            let _ = conn.await;
        });
    }
}
