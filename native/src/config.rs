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
//! recovery-window = 120000                     # 0 = recovery off
//! connect-timeout = 45000
//! upgrade-timeout = 10000
//! max-connections = 200000
//! outbound-limit = 1048576
//! max-attachments = 10
//! max-rooms-per-socket = 1000
//! max-namespaces-per-connection = 16
//! log = "info"
//! ```
//!
//! Unknown keys are an error, so a typo does not silently leave a default in place.

use crate::cli::ServeArgs;
use crate::cors::Cors;
use anyhow::{bail, Context};
use parlor_core::config::Config;
use serde::Deserialize;
use std::path::Path;

/// Where `serve` listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// Socket.IO's default path.
pub const DEFAULT_PATH: &str = "/socket.io/";
/// Bytes queued per WebSocket before the client is closed as too slow.
pub const DEFAULT_OUTBOUND_LIMIT: usize = 1 << 20;

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
            recovery_window_ms: args.recovery_window.or(file.recovery_window).unwrap_or(dc.recovery_window_ms),
            ..dc.clone()
        };
        let origins = if args.cors_origin.is_empty() {
            file.cors_origin.map(Origins::into_vec).unwrap_or_default()
        } else {
            args.cors_origin.clone()
        };
        let path = args.path.clone().or(file.path).unwrap_or(d.path);
        let settings = Settings {
            listen: args.listen.clone().or(file.listen).unwrap_or(d.listen),
            path: normalize_path(&path)?,
            core,
            cors: Cors::from_origins(&origins),
            outbound_limit: args.outbound_limit.or(file.outbound_limit).unwrap_or(d.outbound_limit),
            log: args.log.clone().or(file.log),
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
        ] {
            if value == 0 {
                bail!("{name} must be greater than 0 (got {value})");
            }
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
    pub cors_origin: Option<Origins>,
    pub recovery_window: Option<u64>,
    pub connect_timeout: Option<u64>,
    pub upgrade_timeout: Option<u64>,
    pub max_connections: Option<usize>,
    pub outbound_limit: Option<usize>,
    pub max_attachments: Option<usize>,
    pub max_rooms_per_socket: Option<usize>,
    pub max_namespaces_per_connection: Option<usize>,
    pub log: Option<String>,
}

/// `cors-origin` in the file: one origin or a list.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Origins {
    One(String),
    Many(Vec<String>),
}

impl Origins {
    fn into_vec(self) -> Vec<String> {
        match self {
            Origins::One(o) => vec![o],
            Origins::Many(v) => v,
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

    const VARS: &[&str] =
        &["PARLOR_LISTEN", "PARLOR_PING_INTERVAL", "PARLOR_CORS_ORIGIN", "PARLOR_MAX_PAYLOAD", "PARLOR_PATH"];

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
            Command::Conformance(_) => panic!("not serve"),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let s = Settings::resolve(&serve_args(&[], &[]), FileConfig::default()).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.listen, "127.0.0.1:3000");
        assert_eq!(s.path, "/socket.io/");
        assert_eq!(s.core.recovery_window_ms, 120_000);
        assert_eq!(s.outbound_limit, 1_048_576);
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let _env = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let file = FileConfig::parse(
            "listen = \"0.0.0.0:1\"\nping-interval = 111\nmax-payload = 222\npath = \"/file\"\nrecovery-window = 0\n",
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
        assert_eq!(s.core.recovery_window_ms, 0, "0 turns recovery off");
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
