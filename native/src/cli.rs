//! The command line: `parlor serve`, `parlor conformance`, `parlor keygen`, `parlor token`,
//! and [`ServeArgs`], the serve flags that other binaries (examples) can reuse with
//! `#[command(flatten)]`.
//!
//! Every flag can also come from the environment as `PARLOR_<FLAG>` (`--ping-interval` →
//! `PARLOR_PING_INTERVAL`; `PARLOR_CORS_ORIGIN` takes a comma-separated list) and from the
//! TOML file named by `--config` (see [`crate::config::FileConfig`]). Precedence: flag >
//! environment > file > built-in default. That is why every field here is optional: an
//! absent flag must not hide the file's value behind a default.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// parlor: a real-time room service that speaks Socket.IO.
#[derive(Debug, Parser)]
#[command(name = "parlor", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at startup: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve the room service over Socket.IO.
    Serve(ServeArgs),
    /// Serve what the official Engine.IO and Socket.IO conformance suites expect:
    /// a raw Engine.IO echo at /engine.io/ and the test app at /socket.io/.
    Conformance(ConformanceArgs),
    /// Create a signing key pair: DIR/parlor.key (PKCS#8 PEM private key, mode 0600) and
    /// DIR/parlor.pub (SPKI PEM public key, for `serve --auth-key`).
    Keygen(KeygenArgs),
    /// Print a signed token (a JWT, alg EdDSA) for a user.
    Token(TokenArgs),
    /// Load-test a Socket.IO server that has the bench handlers (examples/bench_server.rs).
    Bench(crate::bench::BenchArgs),
}

/// The flags of `parlor serve`. Turn them into [`crate::Settings`] with
/// [`ServeArgs::settings`].
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on, `host:port` [default: 127.0.0.1:3000]
    #[arg(long, env = "PARLOR_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// The Engine.IO path [default: /socket.io/]
    #[arg(long, env = "PARLOR_PATH", value_name = "PATH")]
    pub path: Option<String>,
    /// Heartbeat: a ping every MS milliseconds [default: 25000]
    #[arg(long, env = "PARLOR_PING_INTERVAL", value_name = "MS")]
    pub ping_interval: Option<u64>,
    /// Close a session whose pong is this late [default: 20000]
    #[arg(long, env = "PARLOR_PING_TIMEOUT", value_name = "MS")]
    pub ping_timeout: Option<u64>,
    /// Largest packet, WebSocket message or polling POST body [default: 1000000]
    #[arg(long, env = "PARLOR_MAX_PAYLOAD", value_name = "BYTES")]
    pub max_payload: Option<usize>,
    /// A browser origin allowed to connect (repeatable; `*` = any, without credentials).
    /// None: same-origin pages only.
    #[arg(long = "cors-origin", env = "PARLOR_CORS_ORIGIN", value_name = "ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Connection state recovery window (e.g. 120000); 0 = off. With it on, every event without
    /// an ack carries one more, trailing argument (an offset only socket.io-client uses) [default: 0]
    #[arg(long, env = "PARLOR_RECOVERY_WINDOW", value_name = "MS")]
    pub recovery_window: Option<u64>,
    /// A client must CONNECT to a namespace within this time [default: 45000]
    #[arg(long, env = "PARLOR_CONNECT_TIMEOUT", value_name = "MS")]
    pub connect_timeout: Option<u64>,
    /// A transport upgrade must complete within this time [default: 10000]
    #[arg(long, env = "PARLOR_UPGRADE_TIMEOUT", value_name = "MS")]
    pub upgrade_timeout: Option<u64>,
    /// Open connections at most; beyond it new ones get HTTP 503 [default: 200000]
    #[arg(long, env = "PARLOR_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Bytes queued for one WebSocket client before it is closed as too slow [default: 1048576]
    #[arg(long, env = "PARLOR_OUTBOUND_LIMIT", value_name = "BYTES")]
    pub outbound_limit: Option<usize>,
    /// Binary attachments per packet [default: 10]
    #[arg(long, env = "PARLOR_MAX_ATTACHMENTS", value_name = "N")]
    pub max_attachments: Option<usize>,
    /// Rooms one socket may join [default: 1000]
    #[arg(long, env = "PARLOR_MAX_ROOMS_PER_SOCKET", value_name = "N")]
    pub max_rooms_per_socket: Option<usize>,
    /// Namespaces one connection may join [default: 16]
    #[arg(long, env = "PARLOR_MAX_NAMESPACES_PER_CONNECTION", value_name = "N")]
    pub max_namespaces_per_connection: Option<usize>,
    /// Bytes of one WebSocket's frames waiting for the server; past it the server stops
    /// reading that socket (TCP slows the sender) [default: 65536]
    #[arg(long, env = "PARLOR_INBOUND_BUDGET", value_name = "BYTES")]
    pub inbound_budget: Option<usize>,
    /// A request body (polling POST, /api/) must arrive whole within this time, or 408 and
    /// the connection closed [default: 10000]
    #[arg(long, env = "PARLOR_BODY_TIMEOUT", value_name = "MS")]
    pub body_timeout: Option<u64>,
    /// After its first 2 s, a request body must keep arriving at this many bytes per second
    /// on average, or 408 and the connection closed; 0: any rate [default: 1024]
    #[arg(long, env = "PARLOR_BODY_MIN_RATE", value_name = "BYTES_PER_SEC")]
    pub body_min_rate: Option<u64>,
    /// Bytes of partly read request bodies over the whole node; past it 503 [default: 67108864]
    #[arg(long, env = "PARLOR_BODY_BUDGET", value_name = "BYTES")]
    pub body_budget: Option<usize>,
    /// A binary packet's attachments must all arrive within this time, or the session is
    /// closed [default: 30000]
    #[arg(long, env = "PARLOR_ATTACHMENT_TIMEOUT", value_name = "MS")]
    pub attachment_timeout: Option<u64>,
    /// Bytes of attachments of incomplete binary packets over the whole node; the one that
    /// would pass it closes its session [default: 67108864]
    #[arg(long, env = "PARLOR_ATTACHMENT_BUDGET", value_name = "BYTES")]
    pub attachment_budget: Option<usize>,
    /// New connections per client IP per minute, 0 = unlimited; over it 403 [default: 0]
    #[arg(long, env = "PARLOR_MAX_HANDSHAKES_PER_IP", value_name = "N")]
    pub max_handshakes_per_ip: Option<u32>,
    /// Sessions open at once per client IP, 0 = unlimited; over it 403 [default: 0]
    #[arg(long, env = "PARLOR_MAX_SESSIONS_PER_IP", value_name = "N")]
    pub max_sessions_per_ip: Option<u32>,
    /// `/metrics` answers only requests with `Authorization: Bearer TOKEN` (else 401)
    /// [default: open to anyone who reaches the port]
    #[arg(long, env = "PARLOR_METRICS_TOKEN", value_name = "TOKEN")]
    pub metrics_token: Option<String>,
    /// A public key that may sign tokens, PEM (repeatable): `FILE`, whose kid is the file's
    /// stem (`keys/2025.pub` → `2025`), or `KID=FILE`. None: dev mode, anyone may connect
    #[arg(long = "auth-key", env = "PARLOR_AUTH_KEY", value_name = "[KID=]FILE", value_delimiter = ',')]
    pub auth_key: Vec<String>,
    /// Seconds of slack when checking a token's `exp` and `nbf` [default: 0]
    #[arg(long, env = "PARLOR_AUTH_LEEWAY", value_name = "SECS")]
    pub auth_leeway: Option<u64>,
    /// A typing state ends by itself after this long without `typing-start` [default: 5000]
    #[arg(long, env = "PARLOR_TYPING_TIMEOUT", value_name = "MS")]
    pub typing_timeout: Option<u64>,
    /// Chat messages, private messages and document edits per user per window [default: 100]
    #[arg(long, env = "PARLOR_RATE_LIMIT", value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Typing, cursor and selection events per user per window [default: 600]
    #[arg(long, env = "PARLOR_TYPING_RATE_LIMIT", value_name = "N")]
    pub typing_rate_limit: Option<u32>,
    /// The rate limits' window [default: 60000]
    #[arg(long, env = "PARLOR_RATE_WINDOW", value_name = "MS")]
    pub rate_window: Option<u64>,
    /// Events of any kind per socket per event window, before the buckets above [default: 2000]
    #[arg(long, env = "PARLOR_EVENT_RATE_LIMIT", value_name = "N")]
    pub event_rate_limit: Option<u32>,
    /// The per-socket event limit's window [default: 10000]
    #[arg(long, env = "PARLOR_EVENT_RATE_WINDOW", value_name = "MS")]
    pub event_rate_window: Option<u64>,
    /// Largest collaborative document, in UTF-16 code units; 6 bytes per unit must fit the
    /// outbound limit [default: 100000]
    #[arg(long, env = "PARLOR_MAX_DOCUMENT_LEN", value_name = "UNITS")]
    pub max_document_len: Option<usize>,
    /// Bytes of recent ops kept per open document for late edits [default: 1048576]
    #[arg(long, env = "PARLOR_DOCUMENT_LOG_BYTES", value_name = "BYTES")]
    pub document_log_bytes: Option<usize>,
    /// Bytes of recent ops kept over all open documents [default: 67108864]
    #[arg(long, env = "PARLOR_DOCUMENT_LOG_TOTAL", value_name = "BYTES")]
    pub document_log_total: Option<usize>,
    /// Op steps one late edit may cost to catch up; past it `STALE_VERSION` [default: 100000]
    #[arg(long, env = "PARLOR_DOCUMENT_TRANSFORM_WORK", value_name = "N")]
    pub document_transform_work: Option<usize>,
    /// Where the embedded store keeps `parlor.db`; created on first start [default: ./parlor-data]
    #[arg(long, env = "PARLOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Messages kept per room; older ones are deleted [default: 1000]
    #[arg(long, env = "PARLOR_HISTORY_KEEP", value_name = "N")]
    pub history_keep: Option<usize>,
    /// Serve this folder at `/` (the demo web app: `native/web/dist`); the routes above keep
    /// their paths, and no path outside the folder is ever served [default: off]
    #[arg(long = "static", env = "PARLOR_STATIC", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    #[command(flatten)]
    pub component: ComponentArgs,
    /// TOML file with any of these settings (kebab-case keys, e.g. `ping-interval = 25000`)
    #[arg(long, env = "PARLOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter: a level (`info`, `debug`) or tracing directives [default: RUST_LOG, else info]
    #[arg(long, env = "PARLOR_LOG", value_name = "LEVEL")]
    pub log: Option<String>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// How many threads serve: a flag of `serve` and `conformance`.
#[derive(Debug, Clone, Default, Args)]
pub struct RuntimeArgs {
    /// Threads serving connections; 1 runs everything on one thread [default: the CPUs this
    /// process may run on]
    #[arg(long, env = "PARLOR_THREADS", value_name = "N")]
    pub threads: Option<usize>,
}

/// The flags of `parlor conformance`: only where to listen and how much to log; the
/// settings are fixed by the suites.
#[derive(Debug, Clone, Default, Args)]
pub struct ConformanceArgs {
    /// Address to listen on, `host:port` [default: 127.0.0.1:3000]
    #[arg(long, env = "PARLOR_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Log filter [default: RUST_LOG, else info]
    #[arg(long, env = "PARLOR_LOG", value_name = "LEVEL")]
    pub log: Option<String>,
    #[command(flatten)]
    pub component: ComponentArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Where the logic runs from, when not from the linked core: flags of `serve` and
/// `conformance`.
#[derive(Debug, Clone, Default, Args)]
pub struct ComponentArgs {
    /// Run the logic from this WebAssembly component (parlor_edge.wasm) instead of the
    /// linked core; SIGHUP or `POST /admin/reload` swaps in the file's new version live
    #[arg(long, env = "PARLOR_COMPONENT", value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// The component's memory cap [default: 1024]
    #[arg(long, env = "PARLOR_COMPONENT_MEMORY_MB", value_name = "MB")]
    pub component_memory_mb: Option<u64>,
    /// A component step that runs longer traps (and the state is restored) [default: 2000]
    #[arg(long, env = "PARLOR_COMPONENT_STEP_TIMEOUT", value_name = "MS")]
    pub component_step_timeout: Option<u64>,
}

/// The flags of `parlor keygen`.
#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Directory to write `parlor.key` and `parlor.pub` into (created if needed)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace existing key files
    #[arg(long)]
    pub force: bool,
}

/// The flags of `parlor token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The private key to sign with (PKCS#8 PEM, e.g. `parlor.key`)
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The user id (`sub` claim)
    #[arg(long, value_name = "ID")]
    pub sub: String,
    /// The display name (`name` claim) [default: the user id]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How long the token is valid: `90s`, `30m`, `1h`, `7d`, or seconds
    #[arg(long, value_name = "DUR")]
    pub ttl: String,
    /// Mark the token `admin: true` (the `/admin` namespace and the HTTP producer API)
    #[arg(long)]
    pub admin: bool,
    /// Put this `kid` in the token's header (needed when the server has several keys)
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
}

impl ServeArgs {
    /// Parses the process's arguments (and `PARLOR_*` environment) as a standalone
    /// command that takes exactly the serve flags: for binaries that only serve.
    #[must_use]
    pub fn parse_from_env() -> ServeArgs {
        /// Serve a parlor machine over Socket.IO.
        #[derive(Parser)]
        struct Standalone {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Standalone::parse().serve
    }
}
