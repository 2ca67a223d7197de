//! [`ComponentMachine`]: the core run in a component instance behind the [`Machine`]
//! trait, with trap recovery from the last good snapshot.

use super::bindings::exports::parlor::edge::machine as wit;
use bytes::Bytes;
use parlor_core::host::{Input, Output, TEXT_PLAIN};
use parlor_core::service::{Machine, Metrics};
use parlor_core::snapshot::SnapshotError;
use parlor_core::time::Instant;
use parlor_core::ConnId;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use wasmtime::component::ResourceAny;
use wasmtime::Trap;
use super::convert;
use super::runtime::{to_anyhow, Instance, Program};

/// The last good snapshot is refreshed at most this often (ms), after a step.
const SNAPSHOT_EVERY_MS: u64 = 1_000;
/// A failed instance is recreated at most this often (ms).
const RETRY_EVERY_MS: u64 = 1_000;

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
            .field("path", &self.program.path())
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
            path = %self.program.path().display(),
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

