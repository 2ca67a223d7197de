//! Settings: what the server runs with, resolved from flags, environment, a TOML file and
//! defaults, in that order of precedence.
//!
//! The TOML file uses the flags' names in kebab-case, all optional:
//!
//! ```toml
//! listen = "0.0.0.0:3000"
//! path = "/socket.io/"
//! ping-interval = 25000
//! ping-timeout = 20000
//! max-payload = 1000000
//! cors-origin = ["https://app.example.com"]   # or one string; "*" = any origin
//! recovery-window = 0                         # ms; 0 = recovery off (the default)
//! connect-timeout = 45000
//! upgrade-timeout = 10000
//! max-connections = 200000
//! outbound-limit = 1048576
//! max-attachments = 10
//! max-rooms-per-socket = 1000
//! max-namespaces-per-connection = 16
//! # what one client may hold and cost (see the README's "Limits and hostile clients")
//! inbound-budget = 65536
//! body-timeout = 10000
//! body-min-rate = 1024                         # 0 = any rate
//! body-budget = 67108864
//! attachment-timeout = 30000
//! attachment-budget = 67108864
//! max-handshakes-per-ip = 0                    # 0 = unlimited
//! max-sessions-per-ip = 0                      # 0 = unlimited
//! metrics-token = "a long random string"       # none: /metrics is open
//! log = "info"
//! threads = 2                                  # default: the CPUs the process may run on
//! # the room service
//! auth-key = ["keys/2025.pub", "old=keys/2024.pub"]  # or one string; none = dev mode
//! auth-leeway = 0
//! typing-timeout = 5000
//! rate-limit = 100
//! typing-rate-limit = 600
//! rate-window = 60000
//! event-rate-limit = 2000
//! event-rate-window = 10000
//! max-document-len = 100000
//! document-log-bytes = 1048576
//! document-log-total = 67108864
//! document-transform-work = 100000
//! data-dir = "./parlor-data"
//! history-keep = 1000
//! static = "native/web/dist"                    # a folder served at /; none = off
//! redis = "redis://127.0.0.1:6379/0"            # cluster mode; none = the node runs alone
//! cluster-prefix = "parlor"
//! node-id = "node-1"                            # none = random
//! cluster-query-timeout = 2000
//! redis-wait = 0                                # replicas a write must reach
//! socketio-emitter-key = "socket.io"            # none = off
//! # the core from a WebAssembly component instead of the linked one
//! component = "target/wasm32-wasip2/release/parlor_edge.wasm"
//! component-memory-mb = 1024
//! component-step-timeout = 2000
//! ```
//!
//! Relative paths (`auth-key`, `data-dir`, `static`) are relative to the working directory, wherever
//! they are given.
//!
//! Unknown keys are an error, so a typo does not silently leave a default in place.

use crate::http::cors::Cors;
use crate::keys::KeySpec;
use anyhow::{bail, Context};
use clap::Args;
use parlor_core::app::ratelimit::Limit;
use parlor_core::app::AppConfig;
use parlor_core::config::Config;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where `serve` listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// Socket.IO's default path.
pub const DEFAULT_PATH: &str = "/socket.io/";
/// Bytes queued per WebSocket before the client is closed as too slow.
pub const DEFAULT_OUTBOUND_LIMIT: usize = 1 << 20;
/// Where the embedded store lives unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./parlor-data";
/// Messages kept per room.
pub const DEFAULT_HISTORY_KEEP: usize = 1000;
/// Bytes of a `document-state` besides its text: the cursors and the framing.
const DOC_STATE_SLACK: usize = 64 << 10;

/// Declares the settings: each one is written once, as a doc comment (its help), its type,
/// its clap attributes (`env`, `value_name`) and how it lands in [`Settings`]. From that
/// come the clap field of its group, the [`FileConfig`] key (kebab-case, or the `as` name),
/// the merge flag > environment > file > default, the `[default: ...]` of its help (rendered
/// from [`Settings::default`], so it cannot go stale) and, for `nonzero` ones, the check.
///
/// How a value lands:
/// - `value(a.b)`: it is `settings.a.b`, whose default the help shows;
/// - `optional(a.b, "text")`: `settings.a.b` is `Some(value)`; the help shows `text`;
/// - `with(f, shown)`: `f(&mut settings, value)?` converts or checks it; the help shows
///   `shown` (no default shown without it).
macro_rules! declare_settings {
    ($(
        $(#[doc = $gdoc:literal])*
        pub struct $group:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[arg($($arg:tt)*)])*
                $field:ident $(as $key:literal)?: $ty:ty = $kind:ident($($how:tt)*) $(, $nonzero:ident)?;
            )*
        } $({ $($extra:tt)* })?
    )*) => {
        $(
            $(#[doc = $gdoc])*
            #[derive(Debug, Clone, Default, Args)]
            pub struct $group {
                $(
                    #[arg(
                        long $(= $key)?,
                        help = declare_settings!(@help concat!($($doc),*), $kind($($how)*))
                        $(, $($arg)*)*
                    )]
                    pub $field: Option<$ty>,
                )*
                $($($extra)*)?
            }

            impl $group {
                /// Puts the settings of this group that the flags, the environment or
                /// `file` give into `settings`: a flag (or its variable) wins over the
                /// file. Takes the values it uses out of `file`.
                pub fn apply(&self, file: &mut FileConfig, settings: &mut Settings) -> anyhow::Result<()> {
                    $(
                        let given: Option<$ty> =
                            self.$field.clone().or_else(|| file.$field.take().map(FromFile::from_file));
                        declare_settings!(@apply settings, given, $kind($($how)*));
                    )*
                    Ok(())
                }
            }
        )*

        /// The TOML file's contents: the flags' names in kebab-case, every key optional.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct FileConfig {
            $($(
                #[doc = concat!($($doc),*)]
                $(#[serde(rename = $key)])?
                pub $field: Option<<$ty as FromFile>::Raw>,
            )*)*
        }

        impl FileConfig {
            /// Every key the file may have, in declaration order.
            pub fn keys() -> Vec<String> {
                vec![$($(key_name(stringify!($field), None $(.or(Some($key)))?),)*)*]
            }

            /// The keys this file leaves out.
            pub fn missing_keys(&self) -> Vec<String> {
                let mut missing = Vec::new();
                $($(
                    if self.$field.is_none() {
                        missing.push(key_name(stringify!($field), None $(.or(Some($key)))?));
                    }
                )*)*
                missing
            }
        }

        /// Refuses a 0 in a setting declared `nonzero`, naming it.
        fn check_nonzero(settings: &Settings) -> anyhow::Result<()> {
            $($(
                declare_settings!(@check settings, stringify!($field), $kind($($how)*) $($nonzero)?);
            )*)*
            Ok(())
        }
    };

    (@help $doc:expr, value($($p:ident).+)) => {
        with_default($doc, Show::show(&Settings::default().$($p).+))
    };
    (@help $doc:expr, optional($($p:ident).+, $shown:literal)) => { with_default($doc, $shown) };
    (@help $doc:expr, optional($($p:ident).+)) => { $doc.trim_start() };
    (@help $doc:expr, with($f:expr, $shown:expr)) => { with_default($doc, $shown) };
    (@help $doc:expr, with($f:expr)) => { $doc.trim_start() };

    (@apply $s:ident, $given:ident, value($($p:ident).+)) => {
        if let Some(v) = $given {
            $s.$($p).+ = v;
        }
    };
    (@apply $s:ident, $given:ident, optional($($p:ident).+ $(, $shown:literal)?)) => {
        if let Some(v) = $given {
            $s.$($p).+ = Some(v);
        }
    };
    (@apply $s:ident, $given:ident, with($f:expr $(, $shown:expr)?)) => {
        if let Some(v) = $given {
            $f($s, v)?;
        }
    };

    (@check $s:ident, $field:expr, value($($p:ident).+) nonzero) => {
        let value = $s.$($p).+ as u128;
        if value == 0 {
            bail!("{} must be greater than 0 (got {value})", key_name($field, None));
        }
    };
    (@check $($t:tt)*) => {};
}

declare_settings! {
    /// The flags of `parlor serve`. Turn them into [`Settings`] with [`ServeArgs::settings`].
    pub struct ServeArgs {
        /// Address to listen on, `host:port`
        #[arg(env = "PARLOR_LISTEN", value_name = "ADDR")]
        listen: String = value(listen);
        /// The Engine.IO path
        #[arg(env = "PARLOR_PATH", value_name = "PATH")]
        path: String = with(set_path, Settings::default().path);
        /// Heartbeat: a ping every MS milliseconds
        #[arg(env = "PARLOR_PING_INTERVAL", value_name = "MS")]
        ping_interval: u64 = value(core.ping_interval_ms), nonzero;
        /// Close a session whose pong is this late
        #[arg(env = "PARLOR_PING_TIMEOUT", value_name = "MS")]
        ping_timeout: u64 = value(core.ping_timeout_ms), nonzero;
        /// Largest packet, WebSocket message or polling POST body
        #[arg(env = "PARLOR_MAX_PAYLOAD", value_name = "BYTES")]
        max_payload: usize = value(core.max_payload), nonzero;
        /// A browser origin allowed to connect (repeatable; `*` = any, without credentials).
        /// None: same-origin pages only
        #[arg(env = "PARLOR_CORS_ORIGIN", value_name = "ORIGIN", value_delimiter = ',')]
        cors_origin: Vec<String> = with(set_cors);
        /// Connection state recovery window (e.g. 120000); 0 = off. With it on, every event without
        /// an ack carries one more, trailing argument (an offset only socket.io-client uses)
        #[arg(env = "PARLOR_RECOVERY_WINDOW", value_name = "MS")]
        recovery_window: u64 = value(core.recovery_window_ms);
        /// A client must CONNECT to a namespace within this time
        #[arg(env = "PARLOR_CONNECT_TIMEOUT", value_name = "MS")]
        connect_timeout: u64 = value(core.connect_timeout_ms), nonzero;
        /// A transport upgrade must complete within this time
        #[arg(env = "PARLOR_UPGRADE_TIMEOUT", value_name = "MS")]
        upgrade_timeout: u64 = value(core.upgrade_timeout_ms), nonzero;
        /// Open connections at most; beyond it new ones get HTTP 503
        #[arg(env = "PARLOR_MAX_CONNECTIONS", value_name = "N")]
        max_connections: usize = value(core.max_connections), nonzero;
        /// Bytes queued for one WebSocket client before it is closed as too slow
        #[arg(env = "PARLOR_OUTBOUND_LIMIT", value_name = "BYTES")]
        outbound_limit: usize = value(outbound_limit), nonzero;
        /// Binary attachments per packet
        #[arg(env = "PARLOR_MAX_ATTACHMENTS", value_name = "N")]
        max_attachments: usize = value(core.max_attachments);
        /// Rooms one socket may join
        #[arg(env = "PARLOR_MAX_ROOMS_PER_SOCKET", value_name = "N")]
        max_rooms_per_socket: usize = value(core.max_rooms_per_socket);
        /// Namespaces one connection may join
        #[arg(env = "PARLOR_MAX_NAMESPACES_PER_CONNECTION", value_name = "N")]
        max_namespaces_per_connection: usize = value(core.max_namespaces_per_connection), nonzero;
        /// Bytes of one WebSocket's frames waiting for the server; past it the server stops
        /// reading that socket (TCP slows the sender)
        #[arg(env = "PARLOR_INBOUND_BUDGET", value_name = "BYTES")]
        inbound_budget: usize = value(host.inbound_budget), nonzero;
        /// A request body (polling POST, /api/) must arrive whole within this time, or 408 and
        /// the connection closed
        #[arg(env = "PARLOR_BODY_TIMEOUT", value_name = "MS")]
        body_timeout: u64 = value(host.body_timeout_ms), nonzero;
        /// After its first 2 s, a request body must keep arriving at this many bytes per second
        /// on average, or 408 and the connection closed; 0: any rate
        #[arg(env = "PARLOR_BODY_MIN_RATE", value_name = "BYTES_PER_SEC")]
        body_min_rate: u64 = value(host.body_min_rate);
        /// Bytes of partly read request bodies over the whole node; past it 503
        #[arg(env = "PARLOR_BODY_BUDGET", value_name = "BYTES")]
        body_budget: usize = value(host.body_budget), nonzero;
        /// A binary packet's attachments must all arrive within this time, or the session is
        /// closed
        #[arg(env = "PARLOR_ATTACHMENT_TIMEOUT", value_name = "MS")]
        attachment_timeout: u64 = value(core.attachment_timeout_ms), nonzero;
        /// Bytes of attachments of incomplete binary packets over the whole node; the one that
        /// would pass it closes its session
        #[arg(env = "PARLOR_ATTACHMENT_BUDGET", value_name = "BYTES")]
        attachment_budget: usize = value(core.attachment_budget_bytes), nonzero;
        /// New connections per client IP per minute, 0 = unlimited; over it 403
        #[arg(env = "PARLOR_MAX_HANDSHAKES_PER_IP", value_name = "N")]
        max_handshakes_per_ip: u32 = value(core.max_new_connections_per_ip_per_min);
        /// Sessions open at once per client IP, 0 = unlimited; over it 403
        #[arg(env = "PARLOR_MAX_SESSIONS_PER_IP", value_name = "N")]
        max_sessions_per_ip: u32 = value(core.max_sessions_per_ip);
        /// `/metrics` answers only requests with `Authorization: Bearer TOKEN` (else 401)
        #[arg(env = "PARLOR_METRICS_TOKEN", value_name = "TOKEN")]
        metrics_token: String = optional(host.metrics_token, "open to anyone who reaches the port");
        /// A public key that may sign tokens, PEM (repeatable): `FILE`, whose kid is the file's
        /// stem (`keys/2025.pub` → `2025`), or `KID=FILE`. None: dev mode, anyone may connect
        #[arg(env = "PARLOR_AUTH_KEY", value_name = "[KID=]FILE", value_delimiter = ',')]
        auth_key: Vec<String> = with(set_auth_keys);
        /// Seconds of slack when checking a token's `exp` and `nbf`
        #[arg(env = "PARLOR_AUTH_LEEWAY", value_name = "SECS")]
        auth_leeway: u64 = value(room.auth_leeway_secs);
        /// A typing state ends by itself after this long without `typing-start`
        #[arg(env = "PARLOR_TYPING_TIMEOUT", value_name = "MS")]
        typing_timeout: u64 = value(room.typing_timeout_ms), nonzero;
        /// Chat messages, private messages and document edits per user per window
        #[arg(env = "PARLOR_RATE_LIMIT", value_name = "N")]
        rate_limit: u32 = value(room.rate_limit), nonzero;
        /// Typing, cursor and selection events per user per window
        #[arg(env = "PARLOR_TYPING_RATE_LIMIT", value_name = "N")]
        typing_rate_limit: u32 = value(room.typing_rate_limit), nonzero;
        /// The rate limits' window
        #[arg(env = "PARLOR_RATE_WINDOW", value_name = "MS")]
        rate_window: u64 = value(room.rate_window_ms), nonzero;
        /// Events of any kind per socket per event window, before the buckets above
        #[arg(env = "PARLOR_EVENT_RATE_LIMIT", value_name = "N")]
        event_rate_limit: u32 = value(room.event_rate_limit), nonzero;
        /// The per-socket event limit's window
        #[arg(env = "PARLOR_EVENT_RATE_WINDOW", value_name = "MS")]
        event_rate_window: u64 = value(room.event_rate_window_ms), nonzero;
        /// Largest collaborative document, in UTF-16 code units; 6 bytes per unit must fit the
        /// outbound limit
        #[arg(env = "PARLOR_MAX_DOCUMENT_LEN", value_name = "UNITS")]
        max_document_len: usize = value(room.max_doc_len), nonzero;
        /// Bytes of recent ops kept per open document for late edits
        #[arg(env = "PARLOR_DOCUMENT_LOG_BYTES", value_name = "BYTES")]
        document_log_bytes: usize = value(room.doc_log_bytes), nonzero;
        /// Bytes of recent ops kept over all open documents
        #[arg(env = "PARLOR_DOCUMENT_LOG_TOTAL", value_name = "BYTES")]
        document_log_total: usize = value(room.doc_log_total_bytes), nonzero;
        /// Op steps one late edit may cost to catch up; past it `STALE_VERSION`
        #[arg(env = "PARLOR_DOCUMENT_TRANSFORM_WORK", value_name = "N")]
        document_transform_work: usize = value(room.doc_transform_work), nonzero;
        /// Where the embedded store keeps `parlor.db`; created on first start
        #[arg(env = "PARLOR_DATA_DIR", value_name = "DIR")]
        data_dir: PathBuf = value(data_dir);
        /// Messages kept per room; older ones are deleted
        #[arg(env = "PARLOR_HISTORY_KEEP", value_name = "N")]
        history_keep: usize = value(history_keep), nonzero;
        /// Serve this folder at `/` (the demo web app: `native/web/dist`); the routes above keep
        /// their paths, and no path outside the folder is ever served
        #[arg(env = "PARLOR_STATIC", value_name = "DIR")]
        static_dir as "static": PathBuf = optional(static_dir, "off");
        /// Cluster mode: share rooms with the other nodes on this Redis (`redis://HOST:PORT/DB`)
        #[arg(env = "PARLOR_REDIS", value_name = "URL")]
        redis: String = optional(cluster.redis, "off: the node runs alone");
        /// Every Redis channel and key of the cluster starts with this
        #[arg(env = "PARLOR_CLUSTER_PREFIX", value_name = "PREFIX")]
        cluster_prefix: String = value(cluster.prefix);
        /// This node's id in the cluster: printable ASCII without blanks, at most 64 bytes
        #[arg(env = "PARLOR_NODE_ID", value_name = "ID")]
        node_id: String = optional(cluster.node_id, "random");
        /// How long a question to the other nodes (who is in a room that opens here) waits
        /// before it is answered with what arrived, naming the nodes that did not answer
        #[arg(env = "PARLOR_CLUSTER_QUERY_TIMEOUT", value_name = "MS")]
        cluster_query_timeout: u64 = value(cluster.query_timeout_ms), nonzero;
        /// Cluster mode: also deliver the broadcasts `@socket.io/redis-emitter` publishes with
        /// this key (its `key` option; the Node default is `socket.io`)
        #[arg(env = "PARLOR_SOCKETIO_EMITTER_KEY", value_name = "KEY")]
        socketio_emitter_key: String = optional(cluster.emitter_key, "off");
        /// Cluster mode: a write is acknowledged as stored only after `WAIT` saw this many
        /// Redis replicas take it (0: once the primary has it)
        #[arg(env = "PARLOR_REDIS_WAIT", value_name = "N")]
        redis_wait: u32 = value(cluster.redis_wait);
        /// Log filter: a level (`info`, `debug`) or tracing directives
        #[arg(env = "PARLOR_LOG", value_name = "LEVEL")]
        log: String = optional(log, "RUST_LOG, else info");
    } {
        #[command(flatten)]
        pub component: ComponentArgs,
        /// TOML file with any of these settings (kebab-case keys, e.g. `ping-interval = 25000`)
        #[arg(long, env = "PARLOR_CONFIG", value_name = "FILE")]
        pub config: Option<PathBuf>,
        #[command(flatten)]
        pub runtime: RuntimeArgs,
    }

    /// Where the logic runs from, when not from the linked core: flags of `serve` and
    /// `conformance`.
    pub struct ComponentArgs {
        /// Run the logic from this WebAssembly component (parlor_edge.wasm) instead of the
        /// linked core; SIGHUP or `POST /admin/reload` swaps in the file's new version live
        #[arg(env = "PARLOR_COMPONENT", value_name = "FILE")]
        component: PathBuf = optional(component);
        /// The component's memory cap
        #[arg(env = "PARLOR_COMPONENT_MEMORY_MB", value_name = "MB")]
        component_memory_mb: u64 = with(set_component_memory, ComponentLimits::default().memory_bytes >> 20);
        /// A component step that runs longer traps (and the state is restored)
        #[arg(env = "PARLOR_COMPONENT_STEP_TIMEOUT", value_name = "MS")]
        component_step_timeout: u64 =
            with(set_component_step_timeout, ComponentLimits::default().step_timeout.as_millis());
    }

    /// How many threads serve: a flag of `serve` and `conformance`.
    pub struct RuntimeArgs {
        /// Threads serving connections; 1 runs everything on one thread
        #[arg(env = "PARLOR_THREADS", value_name = "N")]
        threads: usize = optional(threads, "the CPUs this process may run on");
    }
}

/// A key or flag name from a field's name (`ping_interval` → `ping-interval`), unless the
/// declaration names it (`static`).
fn key_name(field: &str, named: Option<&str>) -> String {
    named.map_or_else(|| field.replace('_', "-"), str::to_owned)
}

/// A help text (doc comments start with a space) followed by the default it shows.
fn with_default(doc: &str, shown: impl std::fmt::Display) -> String {
    format!("{} [default: {shown}]", doc.trim_start())
}

/// How a default reads in `--help`.
trait Show {
    fn show(&self) -> String;
}

macro_rules! show_by_display {
    ($($t:ty),*) => {$(
        impl Show for $t {
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
show_by_display!(u32, u64, usize, String);

impl Show for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

/// How a value is written in the file: mostly as on the command line, but a list may also
/// be one string.
pub trait FromFile: Sized {
    type Raw;
    fn from_file(raw: Self::Raw) -> Self;
}

macro_rules! from_file_as_is {
    ($($t:ty),*) => {$(
        impl FromFile for $t {
            type Raw = $t;
            fn from_file(raw: $t) -> $t {
                raw
            }
        }
    )*};
}
from_file_as_is!(u32, u64, usize, String, PathBuf);

impl FromFile for Vec<String> {
    type Raw = OneOrMany;
    fn from_file(raw: OneOrMany) -> Vec<String> {
        raw.into_vec()
    }
}

fn set_path(s: &mut Settings, path: String) -> anyhow::Result<()> {
    s.path = normalize_path(&path)?;
    Ok(())
}

fn set_cors(s: &mut Settings, origins: Vec<String>) -> anyhow::Result<()> {
    s.cors = Cors::from_origins(&origins);
    Ok(())
}

fn set_auth_keys(s: &mut Settings, specs: Vec<String>) -> anyhow::Result<()> {
    s.room.auth_keys = specs.iter().map(|k| KeySpec::parse(k)).collect::<anyhow::Result<_>>()?;
    Ok(())
}

fn set_component_memory(s: &mut Settings, mb: u64) -> anyhow::Result<()> {
    if mb == 0 {
        bail!("component-memory-mb must be greater than 0 (got 0)");
    }
    s.component_limits.memory_bytes = usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    Ok(())
}

fn set_component_step_timeout(s: &mut Settings, ms: u64) -> anyhow::Result<()> {
    if ms == 0 {
        bail!("component-step-timeout must be greater than 0 (got 0)");
    }
    s.component_limits.step_timeout = std::time::Duration::from_millis(ms);
    Ok(())
}

/// Everything the server runs with, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `host:port` to bind (port 0 picks a free one).
    pub listen: String,
    /// The Engine.IO path of the main mount, ending with `/`.
    pub path: String,
    /// The core's timings and limits (also the connection cap).
    pub core: Config,
    pub cors: Cors,
    /// Bytes queued per WebSocket before the client is closed as too slow.
    pub outbound_limit: usize,
    /// The log filter from `--log`, `PARLOR_LOG` or the file; `None` → `RUST_LOG`, else info.
    pub log: Option<String>,
    /// The room service's keys, timings and limits.
    pub room: RoomSettings,
    /// The embedded store's directory (`parlor.db` inside).
    pub data_dir: PathBuf,
    /// Messages kept per room.
    pub history_keep: usize,
    /// Run the core from this WebAssembly component instead of the linked crate.
    pub component: Option<PathBuf>,
    /// The component's memory cap and step timeout.
    pub component_limits: ComponentLimits,
    /// The runtime's threads; `None`: one per CPU this process may run on.
    pub threads: Option<usize>,
    /// What the host itself bounds for clients.
    pub host: HostLimits,
    /// The folder served at `/` (`--static`); `None`: no static files.
    pub static_dir: Option<PathBuf>,
    /// Cluster mode (`--redis`), off by default.
    pub cluster: ClusterSettings,
}

/// How the node joins a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The Redis URL; `None`: the node runs alone.
    pub redis: Option<String>,
    pub prefix: String,
    /// `None`: drawn at start.
    pub node_id: Option<String>,
    /// See [`parlor_core::config::ClusterConfig::query_timeout_ms`].
    pub query_timeout_ms: u64,
    /// Replicas a write must reach before it counts as stored (`--redis-wait`).
    pub redis_wait: u32,
    /// `--socketio-emitter-key`: `None`, off.
    pub emitter_key: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        let core = parlor_core::config::ClusterConfig::default();
        ClusterSettings {
            redis: None,
            prefix: core.prefix,
            node_id: None,
            query_timeout_ms: core.query_timeout_ms,
            redis_wait: 0,
            emitter_key: None,
        }
    }
}

impl ClusterSettings {
    /// The core's cluster configuration when the node is in a cluster: the given node id,
    /// or a fresh random one (16 hex digits).
    #[must_use]
    pub fn core_config(&self) -> Option<parlor_core::config::ClusterConfig> {
        self.redis.as_ref()?;
        let node_id = self.node_id.clone().unwrap_or_else(|| {
            let seed = crate::random_seed();
            seed[..8].iter().map(|b| format!("{b:02x}")).collect()
        });
        Some(parlor_core::config::ClusterConfig {
            node_id,
            prefix: self.prefix.clone(),
            query_timeout_ms: self.query_timeout_ms,
            emitter_key: self.emitter_key.clone(),
            ..parlor_core::config::ClusterConfig::default()
        })
    }
}

/// The host's budgets for what clients send (the core's are in [`Config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// Bytes of one WebSocket's frames waiting for the driver.
    pub inbound_budget: usize,
    /// A request body must arrive whole within this time.
    pub body_timeout_ms: u64,
    /// Bytes per second a body must keep up after its first seconds (0: any rate).
    pub body_min_rate: u64,
    /// Bytes held in partly read request bodies, over the node.
    pub body_budget: usize,
    /// The bearer token `/metrics` asks for; `None`: open.
    pub metrics_token: Option<String>,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            inbound_budget: crate::ws::INBOUND_BUDGET,
            body_timeout_ms: crate::http::bodies::BODY_TIMEOUT_MS,
            body_min_rate: crate::http::bodies::BODY_MIN_RATE,
            body_budget: crate::http::bodies::BODY_BUDGET,
            metrics_token: None,
        }
    }
}

/// The room service's settings, as given; [`RoomSettings::app_config`] loads the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    /// Public key files; empty = dev mode.
    pub auth_keys: Vec<KeySpec>,
    pub auth_leeway_secs: u64,
    pub typing_timeout_ms: u64,
    /// Chat bucket: events per window.
    pub rate_limit: u32,
    /// Typing/cursor bucket: events per window.
    pub typing_rate_limit: u32,
    pub rate_window_ms: u64,
    /// Per-socket bucket of every event: events per window.
    pub event_rate_limit: u32,
    pub event_rate_window_ms: u64,
    /// Documents: longest text (UTF-16 units), op log bytes per document and in all, and
    /// the op steps one late edit may cost.
    pub max_doc_len: usize,
    pub doc_log_bytes: usize,
    pub doc_log_total_bytes: usize,
    pub doc_transform_work: usize,
}

impl Default for RoomSettings {
    fn default() -> Self {
        let d = AppConfig::default();
        RoomSettings {
            auth_keys: Vec::new(),
            auth_leeway_secs: d.auth_leeway_secs,
            typing_timeout_ms: d.typing_timeout_ms,
            rate_limit: d.chat_limit.capacity,
            typing_rate_limit: d.typing_limit.capacity,
            rate_window_ms: d.chat_limit.window_ms,
            event_rate_limit: d.event_limit.capacity,
            event_rate_window_ms: d.event_limit.window_ms,
            max_doc_len: d.max_doc_len,
            doc_log_bytes: d.doc_log_bytes,
            doc_log_total_bytes: d.doc_log_total_bytes,
            doc_transform_work: d.doc_transform_work,
        }
    }
}

impl RoomSettings {
    /// The room service's configuration, with the public keys read from their files. A
    /// missing or malformed key file is an error that names it.
    pub fn app_config(&self) -> anyhow::Result<AppConfig> {
        Ok(AppConfig {
            auth_keys: crate::keys::load_auth_keys(&self.auth_keys)?,
            auth_leeway_secs: self.auth_leeway_secs,
            typing_timeout_ms: self.typing_timeout_ms,
            chat_limit: Limit { capacity: self.rate_limit, window_ms: self.rate_window_ms },
            typing_limit: Limit { capacity: self.typing_rate_limit, window_ms: self.rate_window_ms },
            event_limit: Limit { capacity: self.event_rate_limit, window_ms: self.event_rate_window_ms },
            max_doc_len: self.max_doc_len,
            doc_log_bytes: self.doc_log_bytes,
            doc_log_total_bytes: self.doc_log_total_bytes,
            doc_transform_work: self.doc_transform_work,
            ..AppConfig::default()
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: DEFAULT_LISTEN.to_owned(),
            path: DEFAULT_PATH.to_owned(),
            core: Config::default(),
            cors: Cors::SameOrigin,
            outbound_limit: DEFAULT_OUTBOUND_LIMIT,
            log: None,
            room: RoomSettings::default(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            history_keep: DEFAULT_HISTORY_KEEP,
            component: None,
            component_limits: ComponentLimits::default(),
            threads: None,
            host: HostLimits::default(),
            static_dir: None,
            cluster: ClusterSettings::default(),
        }
    }
}

impl Settings {
    /// What the official conformance suites expect: fast heartbeats (300/200 ms), a 1 s
    /// connect timeout, recovery off, any origin.
    #[must_use]
    pub fn conformance(listen: Option<String>, log: Option<String>) -> Settings {
        let core = Config {
            ping_interval_ms: 300,
            ping_timeout_ms: 200,
            max_payload: 1_000_000,
            connect_timeout_ms: 1_000,
            recovery_window_ms: 0,
            ..Config::default()
        };
        Settings {
            listen: listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            cors: Cors::Any,
            core,
            log,
            ..Settings::default()
        }
    }

    /// Applies the precedence rule: `args` (flags, with clap having filled in the
    /// environment) over `file` over defaults. Checks the result.
    pub fn resolve(args: &ServeArgs, mut file: FileConfig) -> anyhow::Result<Settings> {
        let mut settings = Settings::default();
        args.apply(&mut file, &mut settings)?;
        args.component.apply(&mut file, &mut settings)?;
        args.runtime.apply(&mut file, &mut settings)?;
        settings.check()?;
        // Decided once, so that every machine built from these settings (and a component
        // swapped in later) is the same node.
        settings.core.cluster = settings.cluster.core_config();
        Ok(settings)
    }

    /// Rejects values the server cannot run with, naming the offending one.
    pub fn check(&self) -> anyhow::Result<()> {
        check_nonzero(self)?;
        if self.threads == Some(0) {
            bail!("threads must be greater than 0 (got 0)");
        }
        let c = &self.core;
        // A joiner gets a document's state in one message: at its longest and with every
        // character escaped (6 JSON bytes per UTF-16 unit), plus room for the cursors, it
        // must fit what the node queues for one client.
        let state = self.room.max_doc_len.saturating_mul(6).saturating_add(DOC_STATE_SLACK);
        let queue = self.outbound_limit.min(c.max_buffered_bytes);
        if state > queue {
            bail!(
                "max-document-len {} needs up to {state} bytes per document state, over the {queue} bytes \
                 the node queues per client (outbound-limit); lower it or raise outbound-limit",
                self.room.max_doc_len
            );
        }
        if self.host.metrics_token.as_deref().is_some_and(|t| t.len() < 16) {
            bail!("metrics-token must be at least 16 characters");
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("data-dir must not be empty");
        }
        let cluster = &self.cluster;
        if let Some(url) = &cluster.redis {
            crate::cluster::LinkConfig::parse(url).map_err(|e| anyhow::anyhow!("redis: {e}"))?;
        }
        if cluster.node_id.as_deref().is_some_and(|id| parlor_core::cluster::NodeId::new(id).is_none()) {
            bail!("node-id must be 1 to 64 printable ASCII characters without blanks");
        }
        if cluster.prefix.is_empty() || cluster.prefix.contains(|c: char| c.is_whitespace() || c.is_control()) {
            bail!("cluster-prefix must be a non-empty word without blanks (got {:?})", cluster.prefix);
        }
        Ok(())
    }
}

/// The component's limits; the name `crate::component::Limits` has the same fields.
pub type ComponentLimits = crate::component::Limits;

/// `cors-origin` or `auth-key` in the file: one string or a list.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The name `cors-origin` values had first.
pub type Origins = OneOrMany;

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(o) => vec![o],
            OneOrMany::Many(v) => v,
        }
    }
}

impl FileConfig {
    pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        FileConfig::parse(&text).with_context(|| format!("bad config file {}", path.display()))
    }
}

impl ServeArgs {
    /// Resolves these flags (and the environment clap read) with the `--config` file, if
    /// any, into [`Settings`].
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Settings::resolve(self, file)
    }
}

/// An Engine.IO path as mounted: starts with `/`, ends with `/`.
pub fn normalize_path(path: &str) -> anyhow::Result<String> {
    if !path.starts_with('/') {
        bail!("path must start with '/' (got {path:?})");
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
        bail!("path must be a plain URL path (got {path:?})");
    }
    if path.ends_with('/') {
        Ok(path.to_owned())
    } else {
        Ok(format!("{path}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Subcommand};
    use clap::Parser;
    use std::sync::Mutex;

    /// clap reads `PARLOR_*` from the process environment, which tests share: every test
    /// that parses flags holds this lock.
    static ENV: Mutex<()> = Mutex::new(());

    const VARS: &[&str] = &[
        "PARLOR_LISTEN",
        "PARLOR_PING_INTERVAL",
        "PARLOR_CORS_ORIGIN",
        "PARLOR_MAX_PAYLOAD",
        "PARLOR_PATH",
        "PARLOR_AUTH_KEY",
        "PARLOR_AUTH_LEEWAY",
        "PARLOR_TYPING_TIMEOUT",
        "PARLOR_RATE_LIMIT",
        "PARLOR_TYPING_RATE_LIMIT",
        "PARLOR_RATE_WINDOW",
        "PARLOR_DATA_DIR",
        "PARLOR_HISTORY_KEEP",
        "PARLOR_COMPONENT",
        "PARLOR_COMPONENT_MEMORY_MB",
        "PARLOR_COMPONENT_STEP_TIMEOUT",
        "PARLOR_THREADS",
        "PARLOR_MAX_HANDSHAKES_PER_IP",
        "PARLOR_DOCUMENT_TRANSFORM_WORK",
        "PARLOR_STATIC",
    ];

    fn serve_args(argv: &[&str], env: &[(&str, &str)]) -> ServeArgs {
        for var in VARS {
            std::env::remove_var(var);
        }
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        let cli = Cli::try_parse_from(["parlor", "serve"].iter().chain(argv));
        for var in VARS {
            std::env::remove_var(var);
        }
        match cli.expect("flags parse").command {
            Subcommand::Serve(args) => args,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let s = Settings::resolve(&serve_args(&[], &[]), FileConfig::default()).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.listen, "127.0.0.1:3000");
        assert_eq!(s.path, "/socket.io/");
        assert_eq!(s.core.recovery_window_ms, 0, "recovery off: no offsets for stock clients to trip on");
        assert_eq!(s.outbound_limit, 1_048_576);
    }

    #[test]
    fn the_budgets_for_hostile_clients_are_settable_and_checked() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let file = FileConfig::parse(
            "body-timeout = 5000\nbody-min-rate = 0\nattachment-budget = 1000\nmax-sessions-per-ip = 8\nmetrics-token = \"0123456789abcdef\"\n",
        )
        .unwrap();
        let args = serve_args(
            &["--inbound-budget", "4096", "--event-rate-limit", "50", "--max-document-len", "1000"],
            &[("PARLOR_MAX_HANDSHAKES_PER_IP", "30"), ("PARLOR_DOCUMENT_TRANSFORM_WORK", "77")],
        );
        let s = Settings::resolve(&args, file).unwrap();
        assert_eq!((s.host.inbound_budget, s.host.body_timeout_ms, s.host.body_min_rate), (4096, 5000, 0));
        assert_eq!(s.host.metrics_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!((s.core.attachment_budget_bytes, s.core.max_sessions_per_ip), (1000, 8));
        assert_eq!(s.core.max_new_connections_per_ip_per_min, 30);
        let app = s.room.app_config().unwrap();
        assert_eq!((app.event_limit.capacity, app.max_doc_len, app.doc_transform_work), (50, 1000, 77));
        assert_eq!(s.core.attachment_timeout_ms, 30_000, "default");

        // A document whose state could not fit one client's queue is refused at startup.
        let err = Settings::resolve(&serve_args(&["--max-document-len", "200000"], &[]), FileConfig::default());
        assert!(err.unwrap_err().to_string().contains("outbound-limit"));
        let ok = serve_args(&["--max-document-len", "200000", "--outbound-limit", "2000000"], &[]);
        assert!(Settings::resolve(&ok, FileConfig::default()).is_err(), "the core's polling buffer bounds it too");
        let short = FileConfig::parse("metrics-token = \"short\"").unwrap();
        assert!(Settings::resolve(&serve_args(&[], &[]), short).is_err());
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let file = FileConfig::parse(
            "listen = \"0.0.0.0:1\"\nping-interval = 111\nmax-payload = 222\npath = \"/file\"\nrecovery-window = 60000\n",
        )
        .unwrap();
        let args = serve_args(
            &["--listen", "127.0.0.1:9"],
            &[("PARLOR_LISTEN", "127.0.0.1:8"), ("PARLOR_PING_INTERVAL", "333")],
        );
        let s = Settings::resolve(&args, file).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9", "flag over env and file");
        assert_eq!(s.core.ping_interval_ms, 333, "env over file");
        assert_eq!(s.core.max_payload, 222, "file over default");
        assert_eq!(s.path, "/file/", "file path, normalized");
        assert_eq!(s.core.recovery_window_ms, 60_000, "file over default (recovery on)");
        assert_eq!(s.core.ping_timeout_ms, 20_000, "default");
    }

    #[test]
    fn cors_origins_come_from_repeated_flags_or_a_comma_separated_env() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let flags = serve_args(&["--cors-origin", "https://a.example", "--cors-origin", "https://b.example"], &[]);
        let s = Settings::resolve(&flags, FileConfig::default()).unwrap();
        assert_eq!(s.cors, Cors::Origins(vec!["https://a.example".into(), "https://b.example".into()]));

        let env = serve_args(&[], &[("PARLOR_CORS_ORIGIN", "https://c.example,https://d.example")]);
        let file = FileConfig::parse("cors-origin = \"*\"").unwrap();
        let s = Settings::resolve(&env, file.clone()).unwrap();
        assert_eq!(s.cors, Cors::Origins(vec!["https://c.example".into(), "https://d.example".into()]));

        let s = Settings::resolve(&serve_args(&[], &[]), file).unwrap();
        assert_eq!(s.cors, Cors::Any, "file used when neither flag nor env");
    }

    #[test]
    fn file_accepts_a_list_of_origins() {
        let file = FileConfig::parse("cors-origin = [\"https://a.example\", \"https://b.example\"]").unwrap();
        assert_eq!(file.cors_origin, Some(Origins::Many(vec!["https://a.example".into(), "https://b.example".into()])));
    }

    #[test]
    fn room_settings_default_to_the_design() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let s = Settings::resolve(&serve_args(&[], &[]), FileConfig::default()).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("./parlor-data"));
        assert_eq!(s.history_keep, 1000);
        let app = s.room.app_config().unwrap();
        assert_eq!(app, AppConfig::default(), "no key: dev mode, and the core's defaults");
        assert_eq!(app.chat_limit, Limit { capacity: 100, window_ms: 60_000 });
        assert_eq!(app.typing_limit, Limit { capacity: 600, window_ms: 60_000 });
        assert_eq!((app.typing_timeout_ms, app.auth_leeway_secs), (5000, 0));
    }

    #[test]
    fn room_flags_beat_env_beat_file() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let file = FileConfig::parse(
            "auth-key = \"file.pub\"\nauth-leeway = 1\ntyping-timeout = 2\nrate-limit = 3\ntyping-rate-limit = 4\n\
             rate-window = 5\ndata-dir = \"/file/data\"\nhistory-keep = 6\n",
        )
        .unwrap();
        let s = Settings::resolve(&serve_args(&[], &[]), file.clone()).unwrap();
        assert_eq!(s.room.auth_keys, vec![KeySpec { kid: "file".into(), path: "file.pub".into() }]);
        assert_eq!(
            (s.room.auth_leeway_secs, s.room.typing_timeout_ms, s.room.rate_limit, s.room.typing_rate_limit),
            (1, 2, 3, 4)
        );
        assert_eq!((s.room.rate_window_ms, s.data_dir.to_str(), s.history_keep), (5, Some("/file/data"), 6));

        let env = [
            ("PARLOR_AUTH_KEY", "a=k/one.pub,k/two.pub"),
            ("PARLOR_AUTH_LEEWAY", "11"),
            ("PARLOR_TYPING_TIMEOUT", "12"),
            ("PARLOR_RATE_LIMIT", "13"),
            ("PARLOR_TYPING_RATE_LIMIT", "14"),
            ("PARLOR_RATE_WINDOW", "15"),
            ("PARLOR_DATA_DIR", "/env/data"),
            ("PARLOR_HISTORY_KEEP", "16"),
        ];
        let s = Settings::resolve(&serve_args(&[], &env), file.clone()).unwrap();
        let kids: Vec<&str> = s.room.auth_keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["a", "two"]);
        assert_eq!(
            (s.room.auth_leeway_secs, s.room.typing_timeout_ms, s.room.rate_limit, s.room.typing_rate_limit),
            (11, 12, 13, 14)
        );
        assert_eq!((s.room.rate_window_ms, s.data_dir.to_str(), s.history_keep), (15, Some("/env/data"), 16));

        let flags = [
            "--auth-key",
            "x.pub",
            "--auth-key",
            "y=z.pub",
            "--auth-leeway",
            "21",
            "--typing-timeout",
            "22",
            "--rate-limit",
            "23",
            "--typing-rate-limit",
            "24",
            "--rate-window",
            "25",
            "--data-dir",
            "/flag/data",
            "--history-keep",
            "26",
        ];
        let s = Settings::resolve(&serve_args(&flags, &env), file).unwrap();
        let kids: Vec<&str> = s.room.auth_keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["x", "y"]);
        assert_eq!(
            (s.room.auth_leeway_secs, s.room.typing_timeout_ms, s.room.rate_limit, s.room.typing_rate_limit),
            (21, 22, 23, 24)
        );
        assert_eq!((s.room.rate_window_ms, s.data_dir.to_str(), s.history_keep), (25, Some("/flag/data"), 26));
        let app = RoomSettings { auth_keys: Vec::new(), ..s.room }.app_config().unwrap();
        assert_eq!(app.chat_limit, Limit { capacity: 23, window_ms: 25 });
        assert_eq!(app.typing_limit, Limit { capacity: 24, window_ms: 25 });
        assert_eq!((app.typing_timeout_ms, app.auth_leeway_secs), (22, 21));
    }

    #[test]
    fn threads_come_from_flag_env_or_file_and_zero_is_rejected() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let s = Settings::resolve(&serve_args(&[], &[]), FileConfig::default()).unwrap();
        assert_eq!(s.threads, None, "default: one per CPU, decided when the runtime is built");
        let file = FileConfig::parse("threads = 3").unwrap();
        assert_eq!(Settings::resolve(&serve_args(&[], &[]), file.clone()).unwrap().threads, Some(3));
        let env = [("PARLOR_THREADS", "2")];
        assert_eq!(Settings::resolve(&serve_args(&[], &env), file.clone()).unwrap().threads, Some(2));
        let flag = ["--threads", "1"];
        assert_eq!(Settings::resolve(&serve_args(&flag, &env), file).unwrap().threads, Some(1));
        let err = Settings::resolve(&serve_args(&["--threads", "0"], &[]), FileConfig::default()).unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
    }

    #[test]
    fn file_accepts_a_list_of_auth_keys() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let file = FileConfig::parse("auth-key = [\"a.pub\", \"k=b.pem\"]").unwrap();
        let s = Settings::resolve(&serve_args(&[], &[]), file).unwrap();
        let kids: Vec<&str> = s.room.auth_keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["a", "k"]);
    }

    #[test]
    fn zero_room_limits_and_missing_key_files_are_rejected() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        for flag in ["--rate-limit", "--typing-rate-limit", "--rate-window", "--typing-timeout", "--history-keep"] {
            let err = Settings::resolve(&serve_args(&[flag, "0"], &[]), FileConfig::default()).unwrap_err();
            assert!(err.to_string().contains(&flag[2..]), "{flag}: {err}");
        }
        let s =
            Settings::resolve(&serve_args(&["--auth-key", "/nonexistent/k.pub"], &[]), FileConfig::default()).unwrap();
        let err = s.room.app_config().unwrap_err();
        assert!(err.to_string().contains("/nonexistent/k.pub"), "{err}");
    }

    #[test]
    fn component_flags_beat_the_file_and_zero_limits_are_rejected() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let s = Settings::resolve(&serve_args(&[], &[]), FileConfig::default()).unwrap();
        assert_eq!((s.component, s.component_limits), (None, ComponentLimits::default()));
        assert_eq!(s.component_limits.memory_bytes, 1 << 30);
        assert_eq!(s.component_limits.step_timeout, std::time::Duration::from_secs(2));
        let file =
            FileConfig::parse("component = \"file.wasm\"\ncomponent-memory-mb = 8\ncomponent-step-timeout = 9\n")
                .unwrap();
        let s = Settings::resolve(&serve_args(&[], &[]), file.clone()).unwrap();
        assert_eq!(s.component.as_deref(), Some(Path::new("file.wasm")));
        assert_eq!(s.component_limits.memory_bytes, 8 << 20);
        assert_eq!(s.component_limits.step_timeout, std::time::Duration::from_millis(9));
        let flags = ["--component", "flag.wasm", "--component-memory-mb", "64", "--component-step-timeout", "500"];
        let s = Settings::resolve(&serve_args(&flags, &[]), file).unwrap();
        assert_eq!(s.component.as_deref(), Some(Path::new("flag.wasm")));
        assert_eq!(s.component_limits.memory_bytes, 64 << 20);
        assert_eq!(s.component_limits.step_timeout, std::time::Duration::from_millis(500));
        for flag in ["--component-memory-mb", "--component-step-timeout"] {
            let err = Settings::resolve(&serve_args(&[flag, "0"], &[]), FileConfig::default()).unwrap_err();
            assert!(err.to_string().contains(&flag[2..]), "{flag}: {err}");
        }
    }

    #[test]
    fn the_static_folder_is_off_by_default_and_comes_from_flag_env_or_file() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let s = Settings::resolve(&serve_args(&[], &[]), FileConfig::default()).unwrap();
        assert_eq!(s.static_dir, None, "off by default");
        let file = FileConfig::parse("static = \"file/dist\"").unwrap();
        let s = Settings::resolve(&serve_args(&[], &[]), file.clone()).unwrap();
        assert_eq!(s.static_dir.as_deref(), Some(Path::new("file/dist")));
        let env = [("PARLOR_STATIC", "env/dist")];
        let s = Settings::resolve(&serve_args(&[], &env), file.clone()).unwrap();
        assert_eq!(s.static_dir.as_deref(), Some(Path::new("env/dist")), "env over file");
        let s = Settings::resolve(&serve_args(&["--static", "flag/dist"], &env), file).unwrap();
        assert_eq!(s.static_dir.as_deref(), Some(Path::new("flag/dist")), "flag over env");
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let err = FileConfig::parse("ping_intervall = 5").unwrap_err();
        assert!(format!("{err:#}").contains("ping_intervall"), "{err:#}");
    }

    #[test]
    fn zero_limits_are_rejected_with_the_name() {
        let file = FileConfig::parse("max-payload = 0").unwrap();
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let err = Settings::resolve(&serve_args(&[], &[]), file).unwrap_err();
        assert!(err.to_string().contains("max-payload"), "{err}");
    }

    #[test]
    fn paths_are_normalized_and_checked() {
        assert_eq!(normalize_path("/socket.io").unwrap(), "/socket.io/");
        assert_eq!(normalize_path("/x/").unwrap(), "/x/");
        assert!(normalize_path("socket.io").is_err());
        assert!(normalize_path("/a?b").is_err());
    }

    /// The serve command's flags as clap sees them, without clap's own `--help`/`--version`.
    fn serve_flags() -> Vec<clap::Arg> {
        let cli = <Cli as clap::CommandFactory>::command();
        let serve = cli.find_subcommand("serve").expect("serve").clone();
        serve.get_arguments().filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version")).cloned().collect()
    }

    /// What `[default: ...]` says in a flag's help, if it says anything.
    fn shown_default(arg: &clap::Arg) -> Option<String> {
        let help = arg.get_help()?.to_string();
        let (_, rest) = help.split_once("[default: ")?;
        Some(rest.strip_suffix(']').unwrap_or(rest).to_owned())
    }

    #[test]
    fn every_setting_is_a_flag_with_its_variable_and_a_file_key() {
        let flags = serve_flags();
        let keys = FileConfig::keys();
        for key in &keys {
            let arg = flags.iter().find(|a| a.get_long() == Some(key)).unwrap_or_else(|| panic!("no --{key}"));
            let env = format!("PARLOR_{}", key.replace('-', "_").to_uppercase());
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()), "--{key}");
        }
        // Besides the settings, only --config (which names the file) is a flag.
        let extra: Vec<&str> =
            flags.iter().filter_map(clap::Arg::get_long).filter(|l| !keys.iter().any(|k| k == l)).collect();
        assert_eq!(extra, ["config"]);
    }

    #[test]
    fn help_shows_the_real_defaults() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let flags = serve_flags();
        let help = |flag: &str| {
            let arg = flags.iter().find(|a| a.get_long() == Some(flag)).expect(flag);
            shown_default(arg).unwrap_or_else(|| panic!("--{flag} shows no default"))
        };
        // Resolved from nothing, the settings are the defaults the help must show.
        let s = Settings::resolve(&serve_args(&[], &[]), FileConfig::default()).unwrap();
        let (c, r, h) = (&s.core, &s.room, &s.host);
        for (flag, value) in [
            ("listen", s.listen.clone()),
            ("path", s.path.clone()),
            ("ping-interval", c.ping_interval_ms.to_string()),
            ("ping-timeout", c.ping_timeout_ms.to_string()),
            ("max-payload", c.max_payload.to_string()),
            ("recovery-window", c.recovery_window_ms.to_string()),
            ("connect-timeout", c.connect_timeout_ms.to_string()),
            ("upgrade-timeout", c.upgrade_timeout_ms.to_string()),
            ("max-connections", c.max_connections.to_string()),
            ("outbound-limit", s.outbound_limit.to_string()),
            ("max-attachments", c.max_attachments.to_string()),
            ("max-rooms-per-socket", c.max_rooms_per_socket.to_string()),
            ("max-namespaces-per-connection", c.max_namespaces_per_connection.to_string()),
            ("inbound-budget", h.inbound_budget.to_string()),
            ("body-timeout", h.body_timeout_ms.to_string()),
            ("body-min-rate", h.body_min_rate.to_string()),
            ("body-budget", h.body_budget.to_string()),
            ("attachment-timeout", c.attachment_timeout_ms.to_string()),
            ("attachment-budget", c.attachment_budget_bytes.to_string()),
            ("max-handshakes-per-ip", c.max_new_connections_per_ip_per_min.to_string()),
            ("max-sessions-per-ip", c.max_sessions_per_ip.to_string()),
            ("auth-leeway", r.auth_leeway_secs.to_string()),
            ("typing-timeout", r.typing_timeout_ms.to_string()),
            ("rate-limit", r.rate_limit.to_string()),
            ("typing-rate-limit", r.typing_rate_limit.to_string()),
            ("rate-window", r.rate_window_ms.to_string()),
            ("event-rate-limit", r.event_rate_limit.to_string()),
            ("event-rate-window", r.event_rate_window_ms.to_string()),
            ("max-document-len", r.max_doc_len.to_string()),
            ("document-log-bytes", r.doc_log_bytes.to_string()),
            ("document-log-total", r.doc_log_total_bytes.to_string()),
            ("document-transform-work", r.doc_transform_work.to_string()),
            ("data-dir", s.data_dir.display().to_string()),
            ("history-keep", s.history_keep.to_string()),
            ("component-memory-mb", (s.component_limits.memory_bytes >> 20).to_string()),
            ("component-step-timeout", s.component_limits.step_timeout.as_millis().to_string()),
        ] {
            assert_eq!(help(flag), value, "--{flag}");
        }
        assert_eq!(help("ping-interval"), "25000", "Socket.IO's default");
        // The settings without a value by default say what happens instead.
        for (flag, shown) in [
            ("metrics-token", "open to anyone who reaches the port"),
            ("static", "off"),
            ("log", "RUST_LOG, else info"),
            ("threads", "the CPUs this process may run on"),
        ] {
            assert_eq!(help(flag), shown, "--{flag}");
        }
    }

    #[test]
    fn the_toml_sample_in_the_docs_parses_and_has_every_key() {
        let source = include_str!("config.rs");
        let doc: Vec<&str> = source.lines().map_while(|l| l.strip_prefix("//!")).collect();
        let start = doc.iter().position(|l| l.trim() == "```toml").expect("a TOML sample") + 1;
        let len = doc[start..].iter().position(|l| l.trim() == "```").expect("its end");
        let sample: String = doc[start..start + len].iter().map(|l| format!("{}\n", l.trim_start())).collect();
        let file = FileConfig::parse(&sample).unwrap_or_else(|e| panic!("the sample does not parse: {e:#}"));
        assert_eq!(file.missing_keys(), Vec::<String>::new(), "keys the sample leaves out");
    }

    #[test]
    fn the_readme_lists_every_serve_flag_with_its_default() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        // Rows of the options tables: | `--flag VALUE` | default | meaning |
        let rows: Vec<(&str, &str)> = readme
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix("| `--")?.split(" | ");
                let flag = cells.next()?.split([' ', '`']).next()?;
                Some((flag, cells.next()?))
            })
            .collect();
        for arg in serve_flags() {
            let flag = arg.get_long().unwrap();
            let (_, default) = rows.iter().find(|(f, _)| *f == flag).unwrap_or_else(|| panic!("README lacks --{flag}"));
            // A default the README writes as a plain value (`25000`) is the one the help shows.
            let plain = default.strip_prefix('`').and_then(|d| d.split('`').next());
            if let (Some(readme), Some(help)) = (plain, shown_default(&arg)) {
                if !help.contains(' ') {
                    assert_eq!(readme, help, "--{flag}: README vs --help");
                }
            }
        }
    }

    #[test]
    fn conformance_settings_match_the_suites() {
        let s = Settings::conformance(None, None);
        assert_eq!((s.core.ping_interval_ms, s.core.ping_timeout_ms), (300, 200));
        assert_eq!(s.core.max_payload, 1_000_000);
        assert_eq!(s.core.recovery_window_ms, 0);
        assert_eq!(s.cors, Cors::Any);
        assert_eq!(s.listen, DEFAULT_LISTEN);
    }
}
