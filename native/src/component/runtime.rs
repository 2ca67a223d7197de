//! The wasmtime side that every component shares: one [`Runtime`] per process (engine,
//! epoch ticker, WASI linker, [`Limits`]) and the [`Program`]s it compiles.

use super::bindings::{Edge, EdgePre};
use parlor_core::time::Instant;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};
use super::cache::{cache_path, load_cached, store_cache};

/// How often the epoch clock ticks: the resolution of the step timeout.
const TICK: Duration = Duration::from_millis(10);

/// Resource limits for every guest instance.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory one instance may have.
    pub memory_bytes: usize,
    /// A step (or snapshot, or restore) that runs longer traps.
    pub step_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 1 << 30, step_timeout: Duration::from_secs(2) }
    }
}

/// The wasmtime engine, the WASI linker and the limits, shared by every component loaded
/// in this process (reloads included). Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<State>,
    limits: Limits,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("limits", &self.inner.limits).finish_non_exhaustive()
    }
}

impl Runtime {
    /// An engine with epoch interruption, and a thread that ticks its epoch until the
    /// engine is dropped.
    pub fn new(limits: Limits) -> anyhow::Result<Runtime> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(to_anyhow)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(to_anyhow)?;
        let weak = engine.weak();
        std::thread::Builder::new().name("parlor-epoch".into()).spawn(move || loop {
            std::thread::sleep(TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })?;
        Ok(Runtime { inner: Arc::new(RuntimeInner { engine, linker, limits }) })
    }

    #[must_use]
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Epoch ticks a call may run.
    fn deadline_ticks(&self) -> u64 {
        let ticks = self.inner.limits.step_timeout.as_millis() / TICK.as_millis();
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// Loads a component file: from its compiled cache when that is current, else compiled
    /// (and the cache rewritten).
    pub fn load(&self, path: &Path) -> anyhow::Result<Arc<Program>> {
        let started = std::time::Instant::now();
        let wasm = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read component {}: {e}", path.display()))?;
        let engine = &self.inner.engine;
        let key = {
            let mut h = std::hash::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            wasm.hash(&mut h);
            h.finish()
        };
        let cache = cache_path(path);
        let (component, cached) = match load_cached(engine, &cache, key) {
            Some(component) => (component, true),
            None => {
                let component = Component::new(engine, &wasm)
                    .with_context(|| format!("{} is not a loadable component", path.display()))
                    .map_err(to_anyhow)?;
                store_cache(&component, &cache, key);
                (component, false)
            }
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(EdgePre::new)
            .with_context(|| format!("{} does not implement parlor:edge/machine", path.display()))
            .map_err(to_anyhow)?;
        tracing::info!(
            path = %path.display(),
            cached,
            ms = started.elapsed().as_millis() as u64,
            "component loaded"
        );
        Ok(Arc::new(Program { runtime: self.clone(), pre, path: path.to_owned() }))
    }
}

/// wasmtime's own error type as an `anyhow` one (its chain flattened into the message).
pub(super) fn to_anyhow(e: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::msg(format!("{e:#}"))
}


/// A compiled component, ready to instantiate.
pub struct Program {
    pub(super) runtime: Runtime,
    pre: EdgePre<State>,
    path: PathBuf,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Program {
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new instance in its own store, with the memory cap and epoch deadline set.
    pub(super) fn instantiate(&self) -> wasmtime::Result<Instance> {
        let limits = self.runtime.inner.limits;
        let state = State {
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).trap_on_grow_failure(true).build(),
        };
        let mut store = Store::new(&self.runtime.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.runtime.deadline_ticks());
        let edge = self.pre.instantiate(&mut store)?;
        Ok(Instance { store, edge, ticks: self.runtime.deadline_ticks() })
    }
}

/// What a store holds: WASI (the guest's std wants stderr, clocks, random) and the limits.
pub(super) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// One instance: its store and its exports. Every call re-arms the epoch deadline first.
pub(super) struct Instance {
    pub(super) store: Store<State>,
    pub(super) edge: Edge,
    pub(super) ticks: u64,
}

impl Instance {
    pub(super) fn create(&mut self, kind: &str, config_json: &str, seed: &[u8], now: Instant) -> wasmtime::Result<ResourceAny> {
        self.store.set_epoch_deadline(self.ticks);
        let api = self.edge.parlor_edge_machine().service();
        api.call_create(&mut self.store, kind, config_json, seed, now.0)?.map_err(wasmtime::Error::msg)
    }

    /// `Ok(Err(why))`: the guest refused the snapshot; `Err`: it trapped.
    pub(super) fn restore(
        &mut self,
        kind: &str,
        config_json: &str,
        bytes: &[u8],
        now: Instant,
    ) -> wasmtime::Result<Result<ResourceAny, String>> {
        self.store.set_epoch_deadline(self.ticks);
        let api = self.edge.parlor_edge_machine().service();
        api.call_restore(&mut self.store, kind, config_json, bytes, now.0)
    }
}
