//! The command line: `parlor serve`, `parlor conformance`, `parlor keygen`, `parlor token`,
//! and [`ServeArgs`], the serve flags that other binaries (examples) can reuse with
//! `#[command(flatten)]`.
//!
//! Every flag can also come from the environment as `PARLOR_<FLAG>` (`--ping-interval` →
//! `PARLOR_PING_INTERVAL`; `PARLOR_CORS_ORIGIN` takes a comma-separated list) and from the
//! TOML file named by `--config` (see [`crate::config::FileConfig`]). Precedence: flag >
//! environment > file > built-in default. That is why every setting is optional on the
//! command line: an absent flag must not hide the file's value behind a default. The serve
//! settings are declared once, in [`crate::config`].

pub use crate::config::{ComponentArgs, RuntimeArgs, ServeArgs};
use clap::{Args, Parser};
use std::path::PathBuf;

/// parlor: a real-time room service that speaks Socket.IO.
#[derive(Debug, Parser)]
#[command(name = "parlor", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Subcommand,
}

#[derive(Debug, clap::Subcommand)]
// Parsed once at startup: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Subcommand {
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
    /// Load-test a Socket.IO server that has the bench handlers (bench/examples/bench_server.rs).
    Bench(parlor_bench::BenchArgs),
}

/// The flags of `parlor conformance`: only where to listen and how much to log; the
/// settings are fixed by the suites.
#[derive(Debug, Clone, Default, Args)]
pub struct ConformanceArgs {
    /// Address to listen on, `host:port`
    #[arg(long, env = "PARLOR_LISTEN", value_name = "ADDR",
          help = format!("Address to listen on, `host:port` [default: {}]", crate::config::DEFAULT_LISTEN))]
    pub listen: Option<String>,
    /// Log filter [default: RUST_LOG, else info]
    #[arg(long, env = "PARLOR_LOG", value_name = "LEVEL")]
    pub log: Option<String>,
    #[command(flatten)]
    pub component: ComponentArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
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
