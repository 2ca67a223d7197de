//! `parlor bench`: a load generator for Socket.IO servers (Engine.IO v4 / Socket.IO v5 over
//! WebSocket), written to stay out of the way of what it measures.
//!
//! It speaks the protocol itself over raw TCP (RFC 6455 frames from `parlor-rfc6455`, the
//! codec the server uses too; [`proto`] packets, [`client`] connections): no per-message JSON parsing, one read and one write per batch
//! of frames, TCP_NODELAY on every socket. Clients run on `--threads` single-threaded
//! tokio runtimes (default one: pin the generator to one core with `taskset`), and record
//! into per-thread [`stats::Histogram`]s, merged at the end.
//!
//! The server must have the bench handlers (`bench/examples/bench_server.rs`): `join`
//! (ack), `message` `{room, payload}` → `message` `payload` to the room, `echo` (ack).
//!
//! Scenarios ([`Scenario`]): `fanout`, `echo`, `idle`, `storm`, `rooms`. Each prints one
//! JSON line starting with `{"scenario":` and, without `--json`, a short table. With
//! `--server-pid` the server's CPU time (utime + stime from `/proc/PID/stat`) is sampled
//! around the measured phase and divided by the operations, and its RSS (`VmRSS`) is read;
//! the generator's own CPU time (`getrusage`) is reported the same way next to it.
//!
//! # Layout
//!
//! - [`BenchArgs`], [`Scenario`] and [`run`]: the flags of `parlor bench` and its entry
//!   point; [`Pool`], the event-loop threads, and [`Local`], what each one records.
//! - `scenarios`: the five scenarios, each setting up its clients and measuring one phase.
//! - [`client`]: one connection: TCP, the WebSocket handshake, buffered frames in and out.
//! - [`proto`]: the Engine.IO and Socket.IO packets the scenarios send and recognise.
//! - [`stats`]: latency histograms, process CPU and memory samples, the open-file limit.
//! - `report`: the JSON summary line and the table.
//! - [`rng`]: the seeded random numbers (masking keys, nonces, choices).
//!
//! Beside the crate: `examples/bench_server.rs` (the three bench handlers on parlor's Rust
//! API), `tests/bench.rs` (every scenario end to end against it), and the scripts that run
//! the benchmarks: `run.sh` (every scenario, pinned, medians), `idle_nodes.sh` (idle
//! connections over several servers), `cluster.sh` (fanout over three nodes on Redis,
//! beside one node) and `lib.sh` (what they and
//! `native/benches/peers/compare.sh` share).

pub mod client;
pub mod proto;
mod report;
pub mod rng;
mod scenarios;
pub mod stats;

use clap::{Args, ValueEnum};
use std::cell::RefCell;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

/// The flags of `parlor bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The scenario to run
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The server (the Engine.IO path defaults to /socket.io/); several, comma-separated,
    /// for the nodes of a cluster: client i connects to the i-th modulo their number (the
    /// fanout publisher to the first)
    #[arg(long, default_value = "http://127.0.0.1:3000", value_name = "URL[,URL...]")]
    pub url: String,
    /// The server's process id: report its CPU time per operation (from /proc/PID/stat)
    /// and its resident memory (VmRSS); several, comma-separated, are summed (a cluster's
    /// nodes)
    #[arg(long, value_name = "PID[,PID...]", value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Print only the one-line JSON summary
    #[arg(long)]
    pub json: bool,
    /// Clients [default: fanout 1000 receivers, echo 50, idle 10000, storm 50 workers,
    /// rooms: rooms × members]
    #[arg(long, value_name = "N")]
    pub clients: Option<usize>,
    /// fanout: messages the publisher sends
    #[arg(long, default_value_t = 2000, value_name = "M")]
    pub messages: u64,
    /// Payload bytes per message (fanout, echo; rooms: chat messages average this)
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub size: usize,
    /// fanout: messages the publisher keeps outstanding (sent and not yet back to it)
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub in_flight: u64,
    /// echo, storm, rooms: how long to measure; idle: how long to hold the connections
    /// after they are up [default: 10; idle: 30, past one default ping interval]
    #[arg(long, value_name = "SECS")]
    pub seconds: Option<f64>,
    /// rooms: how many rooms
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub rooms: usize,
    /// rooms: members per room
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub members: usize,
    /// rooms: a member's mean pause between messages (0: send again as soon as its own
    /// message is back)
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub think_ms: u64,
    /// Event loops of the generator (threads, each a single-threaded runtime)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
    /// Connection setups in progress at once
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub connect_concurrency: usize,
    /// Give up on a connection setup, or on a fanout that makes no progress, after this
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
}

/// What `parlor bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// C receivers in one room, one publisher sends M messages of S bytes with a window
    /// of in-flight messages: delivered msgs/s, loss, latency, CPU per delivered message
    Fanout,
    /// K clients doing emit-with-ack round trips for T seconds: acks/s, latency, CPU per ack
    Echo,
    /// N connections in a room answering pings: server RSS per connection
    Idle,
    /// K workers connecting, joining a room and disconnecting for T seconds:
    /// connections/s, failures
    Storm,
    /// R rooms of M members each exchanging chat and typing-sized messages for T
    /// seconds: delivered msgs/s, latency
    Rooms,
}

impl Scenario {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Echo => "echo",
            Scenario::Idle => "idle",
            Scenario::Storm => "storm",
            Scenario::Rooms => "rooms",
        }
    }
}

/// Runs the scenario and prints its summary. Blocking: the generator's runtimes live on
/// threads of their own (callable from inside another runtime).
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.threads == 0 || args.connect_concurrency == 0 {
        anyhow::bail!("--threads and --connect-concurrency must be at least 1");
    }
    std::thread::Builder::new()
        .name("bench-main".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(scenarios::run(args))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("the bench coordinator panicked"))?
}

/// Nanoseconds since the generator started: the clock of the stamps in payloads (one
/// process sends and receives them).
#[must_use]
pub fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What one event-loop thread recorded; merged across threads at the end.
#[derive(Debug, Default)]
pub struct Local {
    pub latency: stats::Histogram,
    /// Operations counted (deliveries, acks, connections).
    pub ops: u64,
    /// Pings answered.
    pub pings: u64,
}

impl Local {
    fn merge(&mut self, other: &Local) {
        self.latency.merge(&other.latency);
        self.ops += other.ops;
        self.pings += other.pings;
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// Records into this thread's [`Local`].
pub fn with_local<R>(f: impl FnOnce(&mut Local) -> R) -> R {
    LOCAL.with(|l| f(&mut l.borrow_mut()))
}

/// The generator's event loops: `n` threads, each driving a single-threaded runtime.
pub struct Pool {
    handles: Vec<tokio::runtime::Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    pub fn new(n: usize) -> anyhow::Result<Pool> {
        let mut pool = Pool { handles: Vec::new(), stops: Vec::new(), threads: Vec::new() };
        for i in 0..n.max(1) {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let thread = std::thread::Builder::new().name(format!("bench-loop-{i}")).spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                let _ = rt.block_on(stop_rx);
                // Dropping the runtime drops its tasks: their connections close.
            })?;
            pool.handles.push(handle_rx.recv()??);
            pool.stops.push(stop_tx);
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Spawns `fut` on event loop `i % n`.
    pub fn spawn<F>(&self, i: usize, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[i % self.handles.len()].spawn(fut)
    }

    /// Takes every thread's [`Local`] (leaving them empty) and merges them.
    pub async fn take_locals(&self) -> Local {
        let mut all = Local::default();
        for h in &self.handles {
            if let Ok(local) = h.spawn(async { with_local(std::mem::take) }).await {
                all.merge(&local);
            }
        }
        all
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
