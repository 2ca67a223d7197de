//! parlor's native host: tokio + hyper around the sans-IO `parlor-core`.
//!
//! The core decides everything; this crate moves bytes and time. Connection tasks parse
//! HTTP and WebSocket traffic into the core's `Input`s, one driver task per mount owns a
//! [`Machine`] and follows the drain rule, and every `Output` is routed back to the
//! connection it names.
//!
//! # Layout
//!
//! Settings and the command line:
//! - [`cli`]: the `parlor` command line; [`ServeArgs`] is reusable by other binaries.
//! - [`config`]: [`Settings`], each setting declared once and resolved flag > environment >
//!   TOML file > default.
//! - [`keys`]: key files and tokens (`parlor keygen`, `parlor token`, `--auth-key`).
//!
//! Serving, from the socket inwards:
//! - `server`: listener, accept loop, connection cap, graceful shutdown.
//! - `http`: routing (`/healthz`, `/metrics`, `/admin/reload`, Engine.IO polling and
//!   upgrades, `/api/`); `http::bodies` (request bodies within their time and byte
//!   budgets), [`cors`] (the CORS policy of the Engine.IO paths), `http::static_files`
//!   (the folder `--static` serves at `/`, never a path outside it).
//! - `ws`: one WebSocket's reader, writer and close handshake, on the bare TCP stream; the
//!   RFC 6455 framing is `parlor-rfc6455`'s (`rfc6455/`), the codec the load generator
//!   uses too.
//! - `driver`: one task per mount that owns the machine and follows the drain rule;
//!   `driver::commands` (what connections send it, and the handle they send it through),
//!   `driver::routing` (outputs to the connections they name), `driver::effects` (storage
//!   requests to the store).
//! - [`queues`]: what tasks share, and all that loom checks: the driver's inbox, the
//!   per-WebSocket outbound queue, the inbound credit, the `sync` facade.
//! - [`cluster`]: the link to Redis that carries the cluster's traffic (the cluster's logic is
//!   the core's): publish, subscribe and resubscribe, reconnect with backoff, report up/down,
//!   every queue bounded and every drop counted.
//! - [`store`]: the embedded store (SQLite, one thread) behind the core's storage requests.
//! - [`component`]: the wasmtime host that runs the core from a WebAssembly component
//!   (`--component`): its runtime, compile cache, machine (trap recovery), the conversion
//!   to and from WIT, and the live swap (`reload`).
//! - `metrics`: the Prometheus text for `/metrics`.
//! - [`clock`]: the core's `Instant` (milliseconds since the process started).
//!
//! And `parlor bench`, the load generator: the `parlor-bench` crate (`bench/`), which this
//! binary runs as a subcommand.
//!
//! # Running your own handler
//!
//! The `parlor` binary serves the room service; any `parlor_core::socketio::Handler`
//! can be served the same way, with the same flags:
//!
//! ```no_run
//! use clap::Parser;
//! use parlor::{Mount, ServeArgs};
//! use parlor_core::service::Machine;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     serve: ServeArgs,
//! }
//!
//! # fn my_machine(_: parlor_core::config::Config, _: [u8; 32], _: parlor_core::time::Instant)
//! #     -> Box<dyn Machine + Send> { unimplemented!() }
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let settings = Cli::parse().serve.settings()?;
//!     parlor::init_tracing(settings.log.as_deref())?;
//!     // e.g. parlor_core::Service::new(config, seed, now, MyHandler::new())
//!     let machine = my_machine(settings.core.clone(), parlor::random_seed(), parlor::clock::now());
//!     let mounts = vec![Mount::boxed(settings.path.clone(), machine)];
//!     parlor::run(settings, mounts, parlor::shutdown_signal()).await
//! }
//! ```

/// Applies `#[cfg(not(loom))]` to every item inside: a loom build checks [`queues`] only,
/// and leaves out the host around it (tokio's networking, hyper, wasmtime).
macro_rules! not_under_loom {
    ($($item:item)*) => { $(#[cfg(not(loom))] $item)* };
}

pub mod queues;

not_under_loom! {
    pub mod cli;
    pub mod clock;
    pub mod cluster;
    pub mod component;
    pub mod config;
    mod driver;
    mod http;
    pub mod keys;
    mod metrics;
    mod server;
    pub mod store;
    mod ws;

    pub use self::{
        cli::ServeArgs, component::AdminAuth, config::Settings, http::cors, http::cors::Cors, server::shutdown_signal,
    };

    use parlor_core::service::Machine;

    /// A machine served at an Engine.IO path. Each mount gets its own driver task.
    pub struct Mount {
        /// The Engine.IO path, e.g. `/socket.io/` (also served without the trailing `/`).
        pub path: String,
        pub machine: Box<dyn Machine + Send>,
        /// Carries out the machine's storage requests. `None`: every request fails.
        pub store: Option<store::Store>,
        /// The machine also answers the HTTP API, `/api/...` (the first such mount does).
        pub api: bool,
        /// The machine runs from this component, which SIGHUP and `POST /admin/reload` load
        /// again and swap in live.
        pub component: Option<component::ComponentSpec>,
        /// Who may use the host's admin routes (`POST /admin/reload`); `None`: this mount
        /// does not say (with no mount saying, the routes are refused).
        pub admin: Option<AdminAuth>,
    }

    impl Mount {
        pub fn new(path: impl Into<String>, machine: impl Machine + Send + 'static) -> Mount {
            Mount::boxed(path, Box::new(machine))
        }

        /// [`Mount::new`] for a machine already boxed.
        pub fn boxed(path: impl Into<String>, machine: Box<dyn Machine + Send>) -> Mount {
            Mount { path: path.into(), machine, store: None, api: false, component: None, admin: None }
        }

        /// Storage requests go to `store`. The server closes it on shutdown, after the
        /// mount's connections (it finishes what is queued).
        #[must_use]
        pub fn with_store(mut self, store: store::Store) -> Mount {
            self.store = Some(store);
            self
        }

        /// Routes `/api/...` to this mount's machine as `Input::Api`.
        #[must_use]
        pub fn with_api(mut self) -> Mount {
            self.api = true;
            self
        }

        /// Admin tokens signed by `admin`'s keys may use the host's admin routes.
        #[must_use]
        pub fn with_admin(mut self, admin: AdminAuth) -> Mount {
            self.admin = Some(admin);
            self
        }

        /// The machine came from `spec` (a [`component::ComponentMachine`]): reloads swap in
        /// the file's new version.
        #[must_use]
        pub fn with_component(mut self, spec: component::ComponentSpec) -> Mount {
            self.component = Some(spec);
            self
        }
    }

    /// Serves `mounts` on `settings.listen` until `shutdown` resolves, then shuts down
    /// gracefully (bounded to a few seconds) and returns.
    ///
    /// Once bound it prints exactly one line to stdout, `parlor listening on http://ADDR`
    /// with the actual address (so `--listen 127.0.0.1:0` is usable); logs go to stderr.
    /// Besides the mounts it serves `GET /healthz`, `GET /metrics`, and `/api/...` for the mount
    /// that wants it. On the way out it closes the mounts' stores (queued requests finish).
    pub async fn run(
        settings: Settings,
        mounts: Vec<Mount>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        server::run(settings, mounts, shutdown).await
    }

    /// The whole program for a binary that serves one machine at `settings.path`: installs
    /// logging (`settings.log`), starts a multi-threaded runtime, builds the machine with
    /// `make(core_config, seed, now)` and serves it until SIGINT/SIGTERM.
    ///
    /// ```no_run
    /// # use parlor_core::service::Machine;
    /// # fn machine(_: parlor_core::config::Config, _: [u8; 32], _: parlor_core::time::Instant)
    /// #     -> Box<dyn Machine + Send> { unimplemented!() }
    /// fn main() -> anyhow::Result<()> {
    ///     let settings = parlor::ServeArgs::parse_from_env().settings()?;
    ///     // e.g. Box::new(parlor_core::Service::new(config, seed, now, MyHandler::default()))
    ///     parlor::run_blocking(settings, |config, seed, now| machine(config, seed, now))
    /// }
    /// ```
    pub fn run_blocking<F>(settings: Settings, make: F) -> anyhow::Result<()>
    where
        F: FnOnce(parlor_core::config::Config, [u8; 32], parlor_core::time::Instant) -> Box<dyn Machine + Send>,
    {
        init_tracing(settings.log.as_deref())?;
        runtime(settings.threads)?.block_on(async move {
            let machine = make(settings.core.clone(), random_seed(), clock::now());
            let mounts = vec![Mount::boxed(settings.path.clone(), machine)];
            run(settings, mounts, shutdown_signal()).await
        })
    }

    /// The tokio runtime for `threads` threads (`None`: one per CPU this process may run on,
    /// which honours `taskset` and cgroup CPU limits; `Settings::check` refuses 0). One thread
    /// gets tokio's current-thread runtime: on a single CPU the multi-thread scheduler only adds
    /// cross-thread bookkeeping to every wake-up (measured with the server pinned to one core:
    /// echo 6.1 → 5.1 µs of CPU per ack, see BENCHMARKS.md).
    ///
    /// # Errors
    ///
    /// If the runtime cannot be built (the OS refuses threads or an epoll instance).
    pub fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
        let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
        if threads <= 1 {
            tokio::runtime::Builder::new_current_thread().enable_all().build()
        } else {
            tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
        }
    }

    /// 32 bytes from the OS random number generator: the seed of a core's randomness
    /// (session ids, socket ids), so it must be unguessable.
    ///
    /// # Panics
    ///
    /// If the OS has no random number generator; serving guessable session ids is worse.
    #[must_use]
    pub fn random_seed() -> [u8; 32] {
        let mut seed = [0u8; 32];
        if let Err(e) = getrandom::getrandom(&mut seed) {
            panic!("the OS random number generator failed: {e}");
        }
        seed
    }

    /// Logs to stderr with `filter` (a level or tracing directives); without one, `RUST_LOG`,
    /// else `info`. Does nothing if a subscriber is already installed.
    pub fn init_tracing(filter: Option<&str>) -> anyhow::Result<()> {
        use std::io::IsTerminal;
        use tracing_subscriber::EnvFilter;
        let filter = match filter {
            Some(f) => EnvFilter::try_new(f).map_err(|e| anyhow::anyhow!("bad log filter {f:?}: {e}"))?,
            None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
        Ok(())
    }
}
