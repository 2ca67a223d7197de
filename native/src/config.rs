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

use crate::cli::ServeArgs;
use crate::cors::Cors;
use crate::keys::KeySpec;
use anyhow::{bail, Context};
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
            body_timeout_ms: crate::bodies::BODY_TIMEOUT_MS,
            body_min_rate: crate::bodies::BODY_MIN_RATE,
            body_budget: crate::bodies::BODY_BUDGET,
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
    pub fn resolve(args: &ServeArgs, file: FileConfig) -> anyhow::Result<Settings> {
        let d = Settings::default();
        let dc = &d.core;
        let core = Config {
            ping_interval_ms: args.ping_interval.or(file.ping_interval).unwrap_or(dc.ping_interval_ms),
            ping_timeout_ms: args.ping_timeout.or(file.ping_timeout).unwrap_or(dc.ping_timeout_ms),
            upgrade_timeout_ms: args.upgrade_timeout.or(file.upgrade_timeout).unwrap_or(dc.upgrade_timeout_ms),
            connect_timeout_ms: args.connect_timeout.or(file.connect_timeout).unwrap_or(dc.connect_timeout_ms),
            max_payload: args.max_payload.or(file.max_payload).unwrap_or(dc.max_payload),
            max_attachments: args.max_attachments.or(file.max_attachments).unwrap_or(dc.max_attachments),
            max_rooms_per_socket: args
                .max_rooms_per_socket
                .or(file.max_rooms_per_socket)
                .unwrap_or(dc.max_rooms_per_socket),
            max_namespaces_per_connection: args
                .max_namespaces_per_connection
                .or(file.max_namespaces_per_connection)
                .unwrap_or(dc.max_namespaces_per_connection),
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(dc.max_connections),
            attachment_timeout_ms: args
                .attachment_timeout
                .or(file.attachment_timeout)
                .unwrap_or(dc.attachment_timeout_ms),
            attachment_budget_bytes: args
                .attachment_budget
                .or(file.attachment_budget)
                .unwrap_or(dc.attachment_budget_bytes),
            max_new_connections_per_ip_per_min: args
                .max_handshakes_per_ip
                .or(file.max_handshakes_per_ip)
                .unwrap_or(dc.max_new_connections_per_ip_per_min),
            max_sessions_per_ip: args
                .max_sessions_per_ip
                .or(file.max_sessions_per_ip)
                .unwrap_or(dc.max_sessions_per_ip),
            recovery_window_ms: args.recovery_window.or(file.recovery_window).unwrap_or(dc.recovery_window_ms),
            ..dc.clone()
        };
        let origins = if args.cors_origin.is_empty() {
            file.cors_origin.map(OneOrMany::into_vec).unwrap_or_default()
        } else {
            args.cors_origin.clone()
        };
        let path = args.path.clone().or(file.path).unwrap_or(d.path);
        let key_specs = if args.auth_key.is_empty() {
            file.auth_key.map(OneOrMany::into_vec).unwrap_or_default()
        } else {
            args.auth_key.clone()
        };
        let dr = &d.room;
        let room = RoomSettings {
            auth_keys: key_specs.iter().map(|k| KeySpec::parse(k)).collect::<anyhow::Result<_>>()?,
            auth_leeway_secs: args.auth_leeway.or(file.auth_leeway).unwrap_or(dr.auth_leeway_secs),
            typing_timeout_ms: args.typing_timeout.or(file.typing_timeout).unwrap_or(dr.typing_timeout_ms),
            rate_limit: args.rate_limit.or(file.rate_limit).unwrap_or(dr.rate_limit),
            typing_rate_limit: args.typing_rate_limit.or(file.typing_rate_limit).unwrap_or(dr.typing_rate_limit),
            rate_window_ms: args.rate_window.or(file.rate_window).unwrap_or(dr.rate_window_ms),
            event_rate_limit: args.event_rate_limit.or(file.event_rate_limit).unwrap_or(dr.event_rate_limit),
            event_rate_window_ms: args.event_rate_window.or(file.event_rate_window).unwrap_or(dr.event_rate_window_ms),
            max_doc_len: args.max_document_len.or(file.max_document_len).unwrap_or(dr.max_doc_len),
            doc_log_bytes: args.document_log_bytes.or(file.document_log_bytes).unwrap_or(dr.doc_log_bytes),
            doc_log_total_bytes: args.document_log_total.or(file.document_log_total).unwrap_or(dr.doc_log_total_bytes),
            doc_transform_work: args
                .document_transform_work
                .or(file.document_transform_work)
                .unwrap_or(dr.doc_transform_work),
        };
        let dh = &d.host;
        let host = HostLimits {
            inbound_budget: args.inbound_budget.or(file.inbound_budget).unwrap_or(dh.inbound_budget),
            body_timeout_ms: args.body_timeout.or(file.body_timeout).unwrap_or(dh.body_timeout_ms),
            body_min_rate: args.body_min_rate.or(file.body_min_rate).unwrap_or(dh.body_min_rate),
            body_budget: args.body_budget.or(file.body_budget).unwrap_or(dh.body_budget),
            metrics_token: args.metrics_token.clone().or(file.metrics_token),
        };
        let settings = Settings {
            listen: args.listen.clone().or(file.listen).unwrap_or(d.listen),
            path: normalize_path(&path)?,
            core,
            cors: Cors::from_origins(&origins),
            outbound_limit: args.outbound_limit.or(file.outbound_limit).unwrap_or(d.outbound_limit),
            log: args.log.clone().or(file.log),
            room,
            data_dir: args.data_dir.clone().or(file.data_dir).unwrap_or(d.data_dir),
            history_keep: args.history_keep.or(file.history_keep).unwrap_or(d.history_keep),
            component: args.component.component.clone().or(file.component),
            component_limits: ComponentLimits::resolve(
                args.component.component_memory_mb.or(file.component_memory_mb),
                args.component.component_step_timeout.or(file.component_step_timeout),
            )?,
            threads: args.runtime.threads.or(file.threads),
            host,
            static_dir: args.static_dir.clone().or(file.static_dir),
        };
        settings.check()?;
        Ok(settings)
    }

    /// Rejects values the server cannot run with, naming the offending one.
    pub fn check(&self) -> anyhow::Result<()> {
        let c = &self.core;
        for (name, value) in [
            ("ping-interval", c.ping_interval_ms as u128),
            ("ping-timeout", c.ping_timeout_ms as u128),
            ("upgrade-timeout", c.upgrade_timeout_ms as u128),
            ("connect-timeout", c.connect_timeout_ms as u128),
            ("max-payload", c.max_payload as u128),
            ("max-connections", c.max_connections as u128),
            ("max-namespaces-per-connection", c.max_namespaces_per_connection as u128),
            ("outbound-limit", self.outbound_limit as u128),
            ("typing-timeout", self.room.typing_timeout_ms as u128),
            ("rate-limit", self.room.rate_limit as u128),
            ("typing-rate-limit", self.room.typing_rate_limit as u128),
            ("rate-window", self.room.rate_window_ms as u128),
            ("history-keep", self.history_keep as u128),
            ("threads", self.threads.unwrap_or(1) as u128),
            ("inbound-budget", self.host.inbound_budget as u128),
            ("body-timeout", u128::from(self.host.body_timeout_ms)),
            ("body-budget", self.host.body_budget as u128),
            ("attachment-timeout", u128::from(c.attachment_timeout_ms)),
            ("attachment-budget", c.attachment_budget_bytes as u128),
            ("event-rate-limit", u128::from(self.room.event_rate_limit)),
            ("event-rate-window", u128::from(self.room.event_rate_window_ms)),
            ("max-document-len", self.room.max_doc_len as u128),
            ("document-log-bytes", self.room.doc_log_bytes as u128),
            ("document-log-total", self.room.doc_log_total_bytes as u128),
            ("document-transform-work", self.room.doc_transform_work as u128),
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0 (got {value})");
            }
        }
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
        Ok(())
    }
}

/// The TOML file's contents: the flags' names in kebab-case, every key optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub path: Option<String>,
    pub ping_interval: Option<u64>,
    pub ping_timeout: Option<u64>,
    pub max_payload: Option<usize>,
    pub cors_origin: Option<OneOrMany>,
    pub recovery_window: Option<u64>,
    pub connect_timeout: Option<u64>,
    pub upgrade_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub outbound_limit: Option<usize>,
    pub max_attachments: Option<usize>,
    pub max_rooms_per_socket: Option<usize>,
    pub max_namespaces_per_connection: Option<usize>,
    pub inbound_budget: Option<usize>,
    pub body_timeout: Option<u64>,
    pub body_min_rate: Option<u64>,
    pub body_budget: Option<usize>,
    pub attachment_timeout: Option<u64>,
    pub attachment_budget: Option<usize>,
    pub max_handshakes_per_ip: Option<u32>,
    pub max_sessions_per_ip: Option<u32>,
    pub metrics_token: Option<String>,
    pub event_rate_limit: Option<u32>,
    pub event_rate_window: Option<u64>,
    pub max_document_len: Option<usize>,
    pub document_log_bytes: Option<usize>,
    pub document_log_total: Option<usize>,
    pub document_transform_work: Option<usize>,
    pub log: Option<String>,
    pub auth_key: Option<OneOrMany>,
    pub auth_leeway: Option<u64>,
    pub typing_timeout: Option<u64>,
    pub rate_limit: Option<u32>,
    pub typing_rate_limit: Option<u32>,
    pub rate_window: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub history_keep: Option<usize>,
    pub component: Option<PathBuf>,
    pub component_memory_mb: Option<u64>,
    pub component_step_timeout: Option<u64>,
    pub threads: Option<usize>,
    /// `static = "DIR"`: `static` is a Rust keyword, hence the rename.
    #[serde(rename = "static")]
    pub static_dir: Option<PathBuf>,
}

/// The component's limits; the name `crate::component::Limits` has the same fields.
pub type ComponentLimits = crate::component::Limits;

impl crate::component::Limits {
    /// The limits from `--component-memory-mb` and `--component-step-timeout` (ms), each
    /// defaulted when absent and refused when 0.
    pub fn resolve(memory_mb: Option<u64>, step_timeout_ms: Option<u64>) -> anyhow::Result<Self> {
        let d = Self::default();
        let memory_bytes = match memory_mb {
            None => d.memory_bytes,
            Some(0) => bail!("component-memory-mb must be greater than 0 (got 0)"),
            Some(mb) => usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        };
        let step_timeout = match step_timeout_ms {
            None => d.step_timeout,
            Some(0) => bail!("component-step-timeout must be greater than 0 (got 0)"),
            Some(ms) => std::time::Duration::from_millis(ms),
        };
        Ok(Self { memory_bytes, step_timeout })
    }
}

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
    use crate::cli::{Cli, Command};
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
            Command::Serve(args) => args,
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
