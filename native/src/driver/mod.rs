//! The driver: one task per mount that owns its [`Machine`] and follows the drain rule.
//!
//! Connection tasks never touch the machine. They send [`Command`]s through the mount's
//! [`inbox`] (bounded, so a flood of frames slows the readers down instead of growing
//! memory). The driver takes everything queued at once and, for each command: calls
//! `handle`, drains `poll_output` until `None` routing every output by its `ConnId`, and
//! re-arms its one timer at `poll_timeout`. When that timer fires it calls
//! `handle_timeout` and drains again. Nothing else moves the machine's state.
//!
//! Routing: an HTTP request waits on a oneshot for its first output ([`FirstOutput`]). A
//! `Respond` ends it; an `Accept` turns the route into the WebSocket's
//! [`Outbound`](crate::queues::outbound::Outbound) queue,
//! created here and handed to the request task, so frames the core emits in the same drain
//! are already queued in order. Pushing never blocks; an overflowing queue becomes
//! `Ended{Backpressure}` fed back to the machine after the drain.
//!
//! Storage: an `Output::Store` goes to the mount's [`Store`] (its thread runs requests in
//! order); the answer comes back on the driver's own unbounded channel and is fed as
//! `Input::Stored`. A mount without a store answers every request `Failed` at once.
//!
//! Cluster: in cluster mode the mount has a [`crate::cluster`] link; `Output::Cluster`
//! goes to it (never waiting: its queue is bounded and counts what it drops) and what it
//! reports comes back as `Input::Cluster`.
//!
//! Wall clock: `Input::WallClock` is fed before anything else and then every second.
//!
//! Parts: [`commands`] (what connections send, and [`DriverHandle`]), [`routing`]
//! (outputs to connections), [`effects`] (outputs to the store and the cluster link).

mod commands;
mod effects;
mod routing;

pub(crate) use self::commands::{
    Command, DriverHandle, NotQueued, OwnedApi, OwnedFrame, OwnedRequest, FirstOutput, SwapResult,
};
use self::commands::{Control, INBOX_BYTES, INBOX_CAPACITY};
use self::routing::Destination;
use crate::clock;
use crate::cluster::{Event, Events, LinkConfig, LinkHandle};
use crate::queues::inbox::{self, Taken};
use crate::metrics::MountMetrics;
use crate::store::Store;
use parlor_core::host::{ApiRequest, ClusterInput, ConnId, Frame, Input, Request, StoreAnswer, StoreId, TransportEnd};
use parlor_core::idhash::IdMap;
use parlor_core::service::Machine;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Cluster messages handled per wake-up after the first, before the inbox gets a turn.
const LINK_BATCH: usize = 256;

/// The link's next event; never, without a link.
async fn next_event(events: &mut Option<Events>) -> Option<Event> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// How often the machine is told the wall clock (at least).
const WALL_CLOCK_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts the driver task for `machine`. It runs until every handle is dropped; `done`
/// is held until then, so the server can wait for it at shutdown. `store` carries out the
/// machine's storage requests; without one they all fail.
pub(crate) fn spawn(
    machine: Box<dyn Machine + Send>,
    store: Option<Store>,
    link: Option<LinkConfig>,
    outbound_limit: usize,
    mount: String,
    done: mpsc::Sender<()>,
) -> DriverHandle {
    let (inbox_tx, inbox) = inbox::channel(INBOX_CAPACITY, INBOX_BYTES);
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let (link, events) = match link {
        Some(config) => {
            tracing::info!(redis = %config.address(), db = config.db(), mount = %mount, "cluster mode");
            let (handle, events) = crate::cluster::spawn(config);
            (Some(handle), Some(events))
        }
        None => (None, None),
    };
    let driver = Driver {
        link,
        machine,
        routes: IdMap::default(),
        outbound_limit,
        ended: Vec::new(),
        store,
        answers: answers_tx,
        unstored: Vec::new(),
        overflows: 0,
        mount,
    };
    tokio::spawn(driver.run(inbox, answers, events, done));
    DriverHandle { inbox: inbox_tx }
}

struct Driver {
    machine: Box<dyn Machine + Send>,
    /// The cluster link, in cluster mode: the core's cluster effects go there.
    link: Option<LinkHandle>,
    routes: IdMap<ConnId, Destination>,
    outbound_limit: usize,
    /// Transports found dead while routing (overflowed queues, abandoned upgrades), fed
    /// to the machine once the current drain is over.
    ended: Vec<(ConnId, TransportEnd)>,
    store: Option<Store>,
    /// Where the store thread puts its answers (the driver's receiving end is in `run`).
    answers: mpsc::UnboundedSender<(StoreId, StoreAnswer)>,
    /// Storage requests to answer as failed after the current drain (no store).
    unstored: Vec<StoreId>,
    overflows: u64,
    mount: String,
}

impl Driver {
    async fn run(
        mut self,
        inbox: inbox::Receiver<Command, Control>,
        mut answers: mpsc::UnboundedReceiver<(StoreId, StoreAnswer)>,
        mut events: Option<Events>,
        _done: mpsc::Sender<()>,
    ) {
        // The wall clock before anything else, so the first timestamps are right.
        self.handle(Input::WallClock { unix_ms: unix_ms() });
        let mut wall_fed = tokio::time::Instant::now();
        let (mut urgent, mut commands) = (Vec::new(), Vec::with_capacity(INBOX_CAPACITY));
        // One timer, moved only when the deadline moves: arming a fresh one each time the
        // inbox runs dry cost a timer-wheel insert and removal per wake-up under load.
        let mut armed = wall_fed + WALL_CLOCK_EVERY;
        let mut sleep = Box::pin(tokio::time::sleep_until(armed));
        loop {
            if wall_fed.elapsed() >= WALL_CLOCK_EVERY {
                self.handle(Input::WallClock { unix_ms: unix_ms() });
                wall_fed = tokio::time::Instant::now();
            }
            // Expired timers first: a busy inbox must not starve the heartbeat.
            let now = clock::now();
            if self.machine.poll_timeout().is_some_and(|t| t <= now) {
                self.machine.handle_timeout(now);
                self.drain();
            }
            match inbox.try_take(&mut urgent, &mut commands) {
                Taken::Some => {
                    // Control first: metrics and shutdown answer promptly under load.
                    for request in urgent.drain(..) {
                        self.control(request);
                    }
                    // Store answers before new work: they unblock acks the clients wait for.
                    while let Ok((id, answer)) = answers.try_recv() {
                        self.handle(Input::Stored { id, answer });
                    }
                    for cmd in commands.drain(..) {
                        self.command(cmd);
                    }
                    continue;
                }
                // Every handle is gone: nobody can reach this mount any more.
                Taken::Done => break,
                Taken::Empty => {}
            }
            let next_wall = wall_fed + WALL_CLOCK_EVERY;
            let deadline = self.machine.poll_timeout().map_or(next_wall, |t| clock::deadline(t).min(next_wall));
            if deadline != armed || sleep.is_elapsed() {
                armed = deadline;
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                Some((id, answer)) = answers.recv() => self.handle(Input::Stored { id, answer }),
                Some(event) = next_event(&mut events) => {
                    self.link_event(event);
                    // What else arrived meanwhile, at most a batch, before new work.
                    for _ in 0..LINK_BATCH {
                        let Some(Ok(event)) = events.as_mut().map(Events::try_recv) else { break };
                        self.link_event(event);
                    }
                }
                () = inbox.changed() => {}
                () = &mut sleep => {}
            }
        }
        tracing::debug!(mount = %self.mount, "driver stopped");
    }

    /// What the cluster link reports, as the core's cluster input.
    fn link_event(&mut self, event: Event) {
        match event {
            Event::Message { channel, payload } => {
                self.handle(Input::Cluster(ClusterInput::Message { channel: &channel, payload: &payload }));
            }
            Event::Up => {
                tracing::info!(mount = %self.mount, "cluster link up");
                self.handle(Input::Cluster(ClusterInput::Up));
            }
            Event::Down { reason } => {
                tracing::warn!(mount = %self.mount, %reason, "cluster link down; local clients are still served");
                self.handle(Input::Cluster(ClusterInput::Down));
            }
        }
    }

    fn control(&mut self, request: Control) {
        match request {
            Control::Metrics(tx) => {
                let link = self.link.as_ref().map(LinkHandle::stats);
                let _ = tx.send(MountMetrics {
                    core: self.machine.metrics(),
                    overflows: self.overflows,
                    link,
                    round_trips: self.link.as_ref().map(LinkHandle::round_trips),
                    store: self.store.as_ref().map(Store::latency),
                });
            }
            Control::Shutdown => {
                tracing::info!(mount = %self.mount, "shutting down the core");
                self.handle(Input::Shutdown);
            }
            Control::Swap(swap, tx) => {
                let result = swap(&mut self.machine, clock::now());
                self.drain();
                let _ = tx.send(result);
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { req, reply } => {
                self.routes.insert(req.conn, Destination::Pending(reply));
                self.handle(Input::Request(Request {
                    conn: req.conn,
                    method: req.method,
                    query: &req.query,
                    body: &req.body,
                    too_large: req.too_large,
                    websocket: req.websocket,
                    remote: req.remote,
                }));
            }
            Command::Api { req, reply } => {
                self.routes.insert(req.conn, Destination::Pending(reply));
                self.handle(Input::Api(ApiRequest {
                    conn: req.conn,
                    method: req.method,
                    path: &req.path,
                    authorization: req.authorization.as_deref(),
                    body: &req.body,
                }));
            }
            Command::Frame { conn, frame, credit } => {
                let frame = match &frame {
                    OwnedFrame::Text(s) => Frame::Text(s),
                    OwnedFrame::Binary(b) => Frame::Binary(b),
                };
                self.handle(Input::Frame { conn, frame });
                // Handled: the connection may send more.
                drop(credit);
            }
            Command::Ended { conn, how } => {
                self.routes.remove(&conn);
                self.handle(Input::Ended { conn, how });
            }
        }
    }

    /// One input, then the drain rule.
    fn handle(&mut self, input: Input<'_>) {
        self.machine.handle(input, clock::now());
        self.drain();
    }

    /// Drains every output, then feeds back what routing found (storage requests without
    /// a store, transports that died) and drains after each of those too, until the
    /// machine is quiet.
    fn drain(&mut self) {
        self.route_outputs();
        loop {
            for id in std::mem::take(&mut self.unstored) {
                let answer = StoreAnswer::Failed("no store configured".into());
                self.feed_back(Input::Stored { id, answer });
            }
            if self.ended.is_empty() && self.unstored.is_empty() {
                return;
            }
            for (conn, how) in std::mem::take(&mut self.ended) {
                self.feed_back(Input::Ended { conn, how });
            }
        }
    }

    /// One input found while draining: handled, and its outputs routed at once.
    fn feed_back(&mut self, input: Input<'_>) {
        self.machine.handle(input, clock::now());
        self.route_outputs();
    }

    /// The poll-and-route loop: every output the machine has, to where it goes.
    fn route_outputs(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            self.route(output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queues::inflow::Credit;
    use crate::queues::outbound::Outbound;
    use crate::queues::sync::Arc;
    use crate::store::test_dir::TestDir;
    use bytes::Bytes;
    use parlor_core::app::records::{RoomAnswer, RoomRequest};
    use parlor_core::host::{Method, Output};
    use parlor_core::service::Metrics;
    use parlor_core::time::Instant;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// Records what it is fed; a text frame `save:<doc>` / `load:<doc>` asks the store.
    struct Recorder {
        log: std::sync::Arc<Mutex<Vec<String>>>,
        out: VecDeque<Output>,
        next: u64,
    }

    impl Machine for Recorder {
        fn handle(&mut self, input: Input<'_>, _now: Instant) {
            let entry = match input {
                Input::WallClock { unix_ms } => format!("wall {unix_ms}"),
                Input::Stored { id, answer } => match RoomAnswer::from_store(answer) {
                    Ok(answer) => format!("stored {} {answer:?}", id.0),
                    Err(why) => format!("stored {} Failed({why:?})", id.0),
                },
                Input::Frame { frame: Frame::Text(t), .. } => {
                    self.next += 1;
                    let id = StoreId(self.next);
                    let (scope, doc) = ("/".to_owned(), t[5..].to_owned());
                    let request = if t.starts_with("save:") {
                        RoomRequest::SaveDocument { scope, doc, content: "text".into(), version: self.next }
                    } else {
                        RoomRequest::LoadDocument { scope, doc }
                    };
                    self.out.push_back(Output::Store { id, request: request.into() });
                    format!("frame {t}")
                }
                Input::Api(req) => {
                    self.out.push_back(Output::Respond {
                        conn: req.conn,
                        status: 201,
                        content_type: parlor_core::host::APPLICATION_JSON,
                        body: Bytes::from(format!("{{\"path\":\"{}\"}}", req.path)),
                    });
                    format!("api {} {:?}", req.path, req.authorization)
                }
                other => format!("{other:?}"),
            };
            self.log.lock().unwrap().push(entry);
        }
        fn handle_timeout(&mut self, _now: Instant) {}
        fn snapshot(&self) -> Result<Vec<u8>, parlor_core::snapshot::SnapshotError> {
            Err(parlor_core::snapshot::SnapshotError::Unsupported)
        }
        fn poll_output(&mut self) -> Option<Output> {
            self.out.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn metrics(&self) -> Metrics {
            Metrics::default()
        }
    }

    fn start(store: Option<Store>) -> (DriverHandle, std::sync::Arc<Mutex<Vec<String>>>, mpsc::Receiver<()>) {
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let machine = Recorder { log: log.clone(), out: VecDeque::new(), next: 0 };
        let (done, done_rx) = mpsc::channel(1);
        (spawn(Box::new(machine), store, None, 1 << 20, "/t/".into(), done), log, done_rx)
    }

    async fn wait_for(log: &Mutex<Vec<String>>, n: usize) -> Vec<String> {
        for _ in 0..500 {
            let entries = log.lock().unwrap().clone();
            if entries.len() >= n {
                return entries;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("only {:?}", log.lock().unwrap());
    }

    /// A frame's credit, on a connection of its own.
    fn credit() -> Credit {
        Credit::take(Arc::new(Outbound::new(1)), 1)
    }

    fn now_ms() -> u64 {
        unix_ms()
    }

    #[tokio::test]
    async fn wall_clock_first_then_store_answers_in_order() {
        let dir = TestDir::new("driver-store");
        let store = Store::open(dir.path(), 10).unwrap();
        let (driver, log, _done) = start(Some(store.clone()));
        let conn = ConnId(1);
        for text in ["save:a", "load:a", "load:b"] {
            driver.push(Command::Frame { conn, frame: OwnedFrame::Text(text.into()), credit: credit() }).await.unwrap();
        }
        let entries = wait_for(&log, 7).await;
        let wall: u64 = entries[0].strip_prefix("wall ").expect("wall clock first").parse().unwrap();
        assert!(wall.abs_diff(now_ms()) < 5_000, "{wall}");
        let stored: Vec<&String> = entries.iter().filter(|e| e.starts_with("stored")).collect();
        assert_eq!(stored, ["stored 1 Done", "stored 2 Document(Some((\"text\", 1)))", "stored 3 Document(None)",]);
        drop(driver);
        store.close();
    }

    #[tokio::test]
    async fn without_a_store_requests_fail_at_once() {
        let (driver, log, _done) = start(None);
        driver
            .push(Command::Frame { conn: ConnId(1), frame: OwnedFrame::Text("load:x".into()), credit: credit() })
            .await
            .unwrap();
        let entries = wait_for(&log, 3).await;
        assert_eq!(entries[2], "stored 1 Failed(\"no store configured\")");
    }

    #[tokio::test]
    async fn the_wall_clock_is_fed_every_second() {
        let (_driver, log, _done) = start(None);
        let entries = wait_for(&log, 2).await;
        let walls: Vec<u64> = entries.iter().filter_map(|e| e.strip_prefix("wall ")?.parse().ok()).collect();
        assert_eq!(walls.len(), 2, "{entries:?}");
        assert!((900..3_000).contains(&(walls[1] - walls[0])), "{walls:?}");
    }

    #[tokio::test]
    async fn api_requests_reach_the_machine_and_its_answer_comes_back() {
        let (driver, log, _done) = start(None);
        let req = OwnedApi {
            conn: ConnId(9),
            method: Method::Post,
            path: "notifications".into(),
            authorization: Some("Bearer t".into()),
            body: Bytes::from_static(b"{}"),
        };
        let reply = driver.api(req).await.unwrap().await.unwrap();
        match reply {
            FirstOutput::Respond { status, body, .. } => {
                assert_eq!((status, &body[..]), (201, &br#"{"path":"notifications"}"#[..]));
            }
            FirstOutput::Accept(_) => panic!("accepted"),
        }
        assert!(log.lock().unwrap().contains(&"api notifications Some(\"Bearer t\")".to_owned()));
    }
}
