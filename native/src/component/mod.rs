//! The wasmtime host: the core run from a WebAssembly component (`--component FILE.wasm`)
//! instead of the linked crate, behind the same [`Machine`] trait, so the driver, the
//! sockets and the store do not know the difference.
//!
//! - [`Runtime`]: one wasmtime engine per process (component model, cranelift, epoch
//!   interruption with a ticker thread), the WASI p2 linker, and the [`Limits`].
//! - [`Program`]: a compiled component. Compiling takes tens of milliseconds, so the
//!   compiled artifact is cached next to the file as `FILE.wasm.cwasm`, keyed by the
//!   engine's compatibility hash and a hash of the `.wasm`; a stale or unreadable cache is
//!   compiled again and rewritten.
//! - [`ComponentMachine`]: one instance and its `service` resource. Each `handle*` is one
//!   `step` call; its outputs are buffered for `poll_output` and its deadline kept for
//!   `poll_timeout`. The driver task owns it (a wasmtime `Store` is used by one thread).
//!
//! Faults: a step that runs past the step timeout traps (epoch deadline), a guest that
//! grows its memory past the cap traps. A trap is logged, the input that caused it gets
//! an error answer (HTTP 500, or the WebSocket closed with 1011), and a fresh instance is
//! restored from the last good snapshot (refreshed after a step at most once a second),
//! or created anew if there is none. The host keeps running.
//!
//! Live swap ([`reload`]): SIGHUP or `POST /admin/reload` loads the file again, snapshots
//! the running instance and restores the snapshot in the new one, between two inputs; a
//! snapshot the new component refuses leaves the old instance running.

mod bindings {
    wasmtime::component::bindgen!({ path: "../edge/wit", world: "edge" });
}
mod cache;
mod convert;
mod machine;
pub(crate) mod reload;
mod runtime;

pub use self::machine::ComponentMachine;
pub use self::reload::AdminAuth;
pub use self::runtime::{Limits, Program, Runtime};

use parlor_core::time::Instant;
use std::path::PathBuf;
use std::sync::Arc;

/// What a mount needs to start its component, and to load it again on a reload.
#[derive(Clone, Debug)]
pub struct ComponentSpec {
    pub runtime: Runtime,
    pub path: PathBuf,
    /// `rooms`, `conformance` or `echo`.
    pub kind: String,
    /// `{"core": Config, "app": AppConfig}`.
    pub config_json: String,
}

impl ComponentSpec {
    /// Loads the file (or its cache).
    pub fn load(&self) -> anyhow::Result<Arc<Program>> {
        self.runtime.load(&self.path)
    }

    /// Loads the file and starts a new service in it.
    pub fn start(&self, seed: [u8; 32], now: Instant) -> anyhow::Result<ComponentMachine> {
        ComponentMachine::new(self.load()?, &self.kind, self.config_json.clone(), seed, now)
    }
}

