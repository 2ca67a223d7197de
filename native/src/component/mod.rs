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
mod convert;
pub(crate) mod reload;

use bindings::exports::parlor::edge::machine as wit;
use bindings::{Edge, EdgePre};
use bytes::Bytes;
use parlor_core::host::{Input, Output, TEXT_PLAIN};
use parlor_core::service::{Machine, Metrics};
use parlor_core::snapshot::SnapshotError;
use parlor_core::time::Instant;
use parlor_core::ConnId;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

/// How often the epoch clock ticks: the resolution of the step timeout.
const TICK: Duration = Duration::from_millis(10);
/// The last good snapshot is refreshed at most this often (ms), after a step.
const SNAPSHOT_EVERY_MS: u64 = 1_000;
/// A failed instance is recreated at most this often (ms).
const RETRY_EVERY_MS: u64 = 1_000;
/// What the first line of a `.cwasm` cache file says, before its key.
const CACHE_MAGIC: &[u8; 13] = b"parlor-cwasm\n";

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
fn to_anyhow(e: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::msg(format!("{e:#}"))
}

/// `FILE.wasm` → `FILE.wasm.cwasm`.
fn cache_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".cwasm");
    PathBuf::from(name)
}

fn load_cached(engine: &Engine, cache: &Path, key: u64) -> Option<Component> {
    let bytes = std::fs::read(cache).ok()?;
    let rest = bytes.strip_prefix(CACHE_MAGIC.as_slice())?;
    let (found, artifact) = rest.split_first_chunk::<8>()?;
    if u64::from_le_bytes(*found) != key {
        tracing::debug!(cache = %cache.display(), "compiled component cache is stale");
        return None;
    }
    // SAFETY: the artifact was written by `store_cache` of this host for a component file
    // with the same hash, under an engine with the same compatibility hash (that is the
    // key); wasmtime checks its own header and the engine's settings again. The file sits
    // next to the component and is as trusted as the component itself.
    match unsafe { Component::deserialize(engine, artifact) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(cache = %cache.display(), error = %e, "compiled component cache unreadable; compiling");
            None
        }
    }
}

/// Writes the cache next to the component (atomically: a temp file, then a rename). A
/// directory that is not writable only costs the next start a compile.
fn store_cache(component: &Component, cache: &Path, key: u64) {
    let write = || -> anyhow::Result<()> {
        let artifact = component.serialize().map_err(to_anyhow)?;
        let mut bytes = Vec::with_capacity(CACHE_MAGIC.len() + 8 + artifact.len());
        bytes.extend_from_slice(CACHE_MAGIC);
        bytes.extend_from_slice(&key.to_le_bytes());
        bytes.extend_from_slice(&artifact);
        let tmp = cache.with_extension(format!("cwasm.tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, cache)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(cache = %cache.display(), error = %e, "cannot write the compiled component cache");
    }
}

/// A compiled component, ready to instantiate.
pub struct Program {
    runtime: Runtime,
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
    fn instantiate(&self) -> wasmtime::Result<Instance> {
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
struct State {
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
struct Instance {
    store: Store<State>,
    edge: Edge,
    ticks: u64,
}

impl Instance {
    fn create(&mut self, kind: &str, config_json: &str, seed: &[u8], now: Instant) -> wasmtime::Result<ResourceAny> {
        self.store.set_epoch_deadline(self.ticks);
        let api = self.edge.parlor_edge_machine().service();
        api.call_create(&mut self.store, kind, config_json, seed, now.0)?.map_err(wasmtime::Error::msg)
    }

    /// `Ok(Err(why))`: the guest refused the snapshot; `Err`: it trapped.
    fn restore(
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

/// An instance with its live `service`.
struct Live {
    instance: Instance,
    service: ResourceAny,
}

impl Live {
    fn step(&mut self, input: &wit::Input, now: Instant) -> wasmtime::Result<wit::StepResult> {
        let Instance { store, edge, ticks } = &mut self.instance;
        store.set_epoch_deadline(*ticks);
        edge.parlor_edge_machine().service().call_step(store, self.service, input, now.0)
    }

    fn snapshot(&mut self) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let Instance { store, edge, ticks } = &mut self.instance;
        store.set_epoch_deadline(*ticks);
        edge.parlor_edge_machine().service().call_snapshot(store, self.service)
    }

    fn metrics(&mut self) -> wasmtime::Result<String> {
        let Instance { store, edge, ticks } = &mut self.instance;
        store.set_epoch_deadline(*ticks);
        edge.parlor_edge_machine().service().call_metrics(store, self.service)
    }
}

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

/// The core, run in a component instance. See the module docs.
pub struct ComponentMachine {
    program: Arc<Program>,
    kind: String,
    config_json: String,
    /// `None` after an instance failed and could not be replaced yet. A cell because
    /// `metrics` and `snapshot` take `&self` but call into the guest.
    live: RefCell<Option<Live>>,
    outputs: VecDeque<Output>,
    next_timeout: Option<Instant>,
    last_snapshot: Option<Vec<u8>>,
    snapshot_at: Instant,
    /// The kind cannot be snapshotted: recovery starts fresh.
    no_snapshots: bool,
    /// When recovery was last tried while there was no instance; `None`: try at once (the
    /// instance failed inside `metrics` or `snapshot`, which cannot replace it).
    retried_at: std::cell::Cell<Option<Instant>>,
    traps: u64,
}

impl std::fmt::Debug for ComponentMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentMachine")
            .field("path", &self.program.path)
            .field("kind", &self.kind)
            .field("traps", &self.traps)
            .finish_non_exhaustive()
    }
}

impl ComponentMachine {
    /// A new service of `kind` in a fresh instance of `program`.
    pub fn new(
        program: Arc<Program>,
        kind: &str,
        config_json: String,
        seed: [u8; 32],
        now: Instant,
    ) -> anyhow::Result<ComponentMachine> {
        let mut instance = program.instantiate().map_err(to_anyhow)?;
        let service = instance.create(kind, &config_json, &seed, now).map_err(to_anyhow)?;
        let mut machine = ComponentMachine::with(program, kind, config_json, Live { instance, service }, now);
        machine.take_snapshot(now);
        Ok(machine)
    }

    /// The service restored from `snapshot` in a fresh instance of `program`. An error
    /// says why not: the guest refused the snapshot (wrong kind, another format version,
    /// bytes that do not decode), or trapped.
    pub fn restore(
        program: Arc<Program>,
        kind: &str,
        config_json: String,
        snapshot: &[u8],
        now: Instant,
    ) -> anyhow::Result<ComponentMachine> {
        let mut instance = program.instantiate().map_err(to_anyhow)?;
        let service = instance
            .restore(kind, &config_json, snapshot, now)
            .map_err(to_anyhow)?
            .map_err(|why| anyhow::anyhow!("the component refused the snapshot: {why}"))?;
        let mut machine = ComponentMachine::with(program, kind, config_json, Live { instance, service }, now);
        machine.last_snapshot = Some(snapshot.to_vec());
        Ok(machine)
    }

    fn with(program: Arc<Program>, kind: &str, config_json: String, live: Live, now: Instant) -> ComponentMachine {
        ComponentMachine {
            program,
            kind: kind.to_owned(),
            config_json,
            live: RefCell::new(Some(live)),
            outputs: VecDeque::new(),
            // Unknown until the first step: ask for one at once.
            next_timeout: Some(now),
            last_snapshot: None,
            snapshot_at: now,
            no_snapshots: false,
            retried_at: std::cell::Cell::new(None),
            traps: 0,
        }
    }

    /// The component file this machine runs.
    #[must_use]
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Traps survived so far.
    #[must_use]
    pub fn traps(&self) -> u64 {
        self.traps
    }

    fn step(&mut self, input: &wit::Input, now: Instant) {
        if self.live.get_mut().is_none() && self.retried_at.get().is_none_or(|t| now.since(t) >= RETRY_EVERY_MS) {
            self.recover(now);
        }
        let result = match self.live.get_mut() {
            Some(live) => live.step(input, now),
            None => {
                self.refuse(input);
                return;
            }
        };
        match result {
            Ok(result) => {
                for output in result.outputs {
                    convert::output(output, &mut self.outputs);
                }
                self.next_timeout = result.next_timeout_ms.map(Instant);
                if now.since(self.snapshot_at) >= SNAPSHOT_EVERY_MS {
                    self.take_snapshot(now);
                }
            }
            Err(e) => {
                self.trapped(&e, "step");
                self.refuse(input);
                self.recover(now);
            }
        }
    }

    /// Refreshes the last good snapshot.
    fn take_snapshot(&mut self, now: Instant) {
        if self.no_snapshots {
            return;
        }
        self.snapshot_at = now;
        let Some(live) = self.live.get_mut() else { return };
        match live.snapshot() {
            Ok(Ok(bytes)) => {
                self.last_snapshot = Some(bytes);
            }
            Ok(Err(why)) => {
                tracing::warn!(kind = %self.kind, why, "this component cannot snapshot; a trap will start it afresh");
                self.no_snapshots = true;
            }
            Err(e) => {
                self.trapped(&e, "snapshot");
                self.recover(now);
            }
        }
    }

    fn trapped(&mut self, e: &wasmtime::Error, during: &str) {
        self.traps += 1;
        let why = match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                format!("ran past the step timeout of {:?}", self.program.runtime.limits().step_timeout)
            }
            Some(trap) => format!("trapped: {trap}"),
            None => "failed".to_owned(),
        };
        tracing::error!(
            path = %self.program.path.display(),
            kind = %self.kind,
            during,
            error = %format!("{e:#}"),
            "the component {why}; replacing the instance"
        );
        *self.live.get_mut() = None;
    }

    /// The input that failed gets an error answer rather than none.
    fn refuse(&mut self, input: &wit::Input) {
        let (conn, http) = match input {
            wit::Input::Request(r) => (r.conn, true),
            wit::Input::Api(a) => (a.conn, true),
            wit::Input::Frame(f) => (f.conn, false),
            _ => return,
        };
        let conn = ConnId(conn);
        self.outputs.push_back(if http {
            Output::Respond { conn, status: 500, content_type: TEXT_PLAIN, body: Bytes::from_static(b"internal error") }
        } else {
            Output::Close { conn, code: 1011, reason: "internal error" }
        });
    }

    /// A fresh instance with the last good snapshot, else a new service.
    fn recover(&mut self, now: Instant) {
        let restored = self.last_snapshot.as_deref().and_then(|snapshot| {
            let attempt = self.program.instantiate().and_then(|mut instance| {
                let service = instance
                    .restore(&self.kind, &self.config_json, snapshot, now)?
                    .map_err(|why| wasmtime::format_err!("snapshot refused: {why}"))?;
                Ok(Live { instance, service })
            });
            attempt
                .inspect_err(|e| tracing::error!(kind = %self.kind, error = %format!("{e:#}"), "restoring the last snapshot failed"))
                .ok()
        });
        let live = match restored {
            Some(live) => {
                tracing::warn!(kind = %self.kind, "restored the last good snapshot in a fresh instance");
                Some(live)
            }
            None => {
                let attempt = self.program.instantiate().and_then(|mut instance| {
                    let service = instance.create(&self.kind, &self.config_json, &crate::random_seed(), now)?;
                    Ok(Live { instance, service })
                });
                match attempt {
                    Ok(live) => {
                        tracing::error!(kind = %self.kind, "no usable snapshot: started a NEW, EMPTY service; clients reconnect");
                        Some(live)
                    }
                    Err(e) => {
                        tracing::error!(kind = %self.kind, error = %format!("{e:#}"), "cannot start the component again; retrying");
                        None
                    }
                }
            }
        };
        *self.live.get_mut() = live;
        self.retried_at.set(Some(now));
        // Re-learn the deadline with a timeout step.
        self.next_timeout = Some(now);
    }
}

impl Machine for ComponentMachine {
    fn handle(&mut self, input: Input<'_>, now: Instant) {
        let input = convert::input(&input);
        self.step(&input, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.step(&wit::Input::Timeout, now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.live.borrow().is_none() {
            return Some(self.retried_at.get().map_or(Instant(0), |t| t.plus(RETRY_EVERY_MS)));
        }
        self.next_timeout
    }

    fn metrics(&self) -> Metrics {
        let mut cell = self.live.borrow_mut();
        let Some(live) = cell.as_mut() else { return Metrics::default() };
        match live.metrics() {
            Ok(json) => convert::metrics(&json),
            Err(e) => {
                tracing::error!(kind = %self.kind, error = %format!("{e:#}"), "the component trapped in metrics()");
                *cell = None;
                self.retried_at.set(None);
                Metrics::default()
            }
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut cell = self.live.borrow_mut();
        let live = cell.as_mut().ok_or(SnapshotError::Unsupported)?;
        match live.snapshot() {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(why)) if why == SnapshotError::Unsupported.to_string() => Err(SnapshotError::Unsupported),
            Ok(Err(why)) => Err(SnapshotError::Decode(why)),
            Err(e) => {
                tracing::error!(kind = %self.kind, error = %format!("{e:#}"), "the component trapped in snapshot()");
                *cell = None;
                self.retried_at.set(None);
                Err(SnapshotError::Decode(format!("the component trapped: {e:#}")))
            }
        }
    }
}
