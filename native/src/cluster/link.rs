//! The link: one task that owns the connection to Redis and moves the cluster's bytes.
//!
//! It knows nothing of parlor's messages: channels and keys are strings, payloads are bytes.
//! The driver's loop calls a [`LinkHandle`], whose calls never block and never wait for Redis,
//! and reads [`Event`]s: messages on subscribed channels, and [`Event::Up`] / [`Event::Down`]
//! as the connection comes and goes.
//!
//! # What it guarantees
//!
//! - **Bounded memory, whatever Redis or the owner does.** Commands wait in one queue bounded
//!   both in count and in bytes; a command that does not fit is dropped at the call and counted
//!   ([`LinkStats::dropped`]). Messages wait for the owner in a queue bounded the same way
//!   (by default as much as Redis itself holds for a slow subscriber before it disconnects
//!   one); beyond it they are dropped and counted ([`LinkStats::dropped_events`]). Holding
//!   them back instead would not slow Redis down: the client keeps reading the socket into a
//!   buffer of its own, without bound. Nothing else grows with an outage or a slow owner.
//! - **Subscriptions survive reconnects.** Subscribing changes the link's *desired* set; the task
//!   reconciles the connection against it whenever it changes and after every reconnect, before
//!   it reports [`Event::Up`]. (socketioxide's Redis adapter does not resubscribe, so a node
//!   silently stops hearing the cluster after a blip.) A message on a channel no longer desired
//!   is not delivered, even if Redis sent it before the unsubscribe reached it.
//! - **Order.** Commands go out in the order they were queued, in pipelined batches on one
//!   connection, so the publishes of one link reach Redis (and every subscriber) in order.
//! - **One `Down` per outage**, then backoff with jitter ([`LinkConfig::backoff_min`] doubling
//!   to [`LinkConfig::backoff_max`]) until a connection and its resubscription succeed.
//! - **At most once.** A batch in flight when the connection fails is counted as lost
//!   ([`LinkStats::lost`]) and never resent: Redis may or may not have run it, and the
//!   cluster's recovery (offsets and backfill, in the core) is what repairs gaps, not a resend.
//!
//! # How
//!
//! One RESP3 connection carries commands and subscriptions both: RESP3 lets a subscribed
//! connection keep running commands, and its pushes reach a callback inside the client's
//! reader, which filters them and hands them to the bounded event queue without a copy and
//! without an unbounded channel in between. The client's connection manager is not used: it
//! reconnects out of sight, and the link must see each outage to report it, count what it
//! cost and resubscribe before saying `Up`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::{mpsc, Notify};

use super::backoff::Backoff;

/// Channels per SUBSCRIBE / UNSUBSCRIBE command when reconciling: a node in many rooms
/// resubscribes in a few commands rather than one per room, without one huge command.
const SUBSCRIBE_CHUNK: usize = 512;

/// Where the link connects and how far its queues may grow.
///
/// [`LinkConfig::parse`] gives the defaults; the fields can be changed before [`spawn`].
#[derive(Debug, Clone)]
pub struct LinkConfig {
    client: Client,
    /// Commands (publish, set, delete) that may wait for Redis; more are dropped and counted.
    pub queue_commands: usize,
    /// Bytes (channels, keys, payloads, values) that may wait for Redis; more are dropped and
    /// counted. One command larger than this still goes through when the queue is empty.
    pub queue_bytes: usize,
    /// Events (messages, up, down) the owner may leave unread; further messages are dropped and
    /// counted. `Up` and `Down` are never dropped: the task waits for room for them.
    pub events: usize,
    /// Bytes (channels and payloads) of the messages the owner may leave unread; a message
    /// that does not fit is dropped and counted (one larger than this still passes when none
    /// wait). The default matches Redis's own hard limit for a subscriber's output buffer
    /// (`client-output-buffer-limit pubsub 32mb`): a node never holds more than Redis would.
    pub events_bytes: usize,
    /// The largest pipelined batch, in bytes (a batch holds at least one command).
    pub batch_bytes: usize,
    /// The first reconnect delay; it doubles with each failed attempt of an outage.
    pub backoff_min: Duration,
    /// The longest reconnect delay.
    pub backoff_max: Duration,
    /// How long one connection attempt (TCP connect and handshake) may take.
    pub connect_timeout: Duration,
    /// How long Redis may take to answer a command before the link counts it as gone.
    pub response_timeout: Duration,
    /// An idle link pings this often, so that a connection that died without a word (a
    /// partition, a paused server) is noticed within `ping_every + response_timeout`.
    pub ping_every: Duration,
    /// Seeds the backoff jitter; `None`: from the OS.
    pub seed: Option<u64>,
}

/// A URL the link cannot use.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("bad Redis URL {url:?}: {reason}")]
    Url { url: String, reason: String },
}

impl LinkConfig {
    /// The link to `url` (`redis://HOST:PORT/DB`, as the `redis` crate reads it: also
    /// `redis://:PASSWORD@HOST`, `redis+unix:///PATH`, `?protocol=...` is overridden to RESP3),
    /// with the default bounds and timings.
    pub fn parse(url: &str) -> Result<LinkConfig, LinkError> {
        let refuse = |err: redis::RedisError| LinkError::Url {
            // Whatever precedes an `@` may be a password: keep it out of logs.
            url: url.rsplit_once('@').map_or_else(|| url.to_owned(), |(_, host)| format!("…@{host}")),
            reason: err.to_string(),
        };
        let info = url.into_connection_info().map_err(refuse)?;
        let redis = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        // Opening a client connects nothing: it holds the settings (and checks them again).
        let client = Client::open(info.set_redis_settings(redis)).map_err(refuse)?;
        Ok(LinkConfig {
            client,
            queue_commands: 4096,
            queue_bytes: 16 << 20,
            events: 65536,
            events_bytes: 32 << 20,
            batch_bytes: 1 << 20,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            ping_every: Duration::from_secs(5),
            seed: None,
        })
    }

    /// `HOST:PORT` (or the socket path), for logs and `/healthz`; never the password.
    pub fn address(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    /// The database number from the URL's path (0 without one).
    pub fn db(&self) -> i64 {
        self.client.get_connection_info().redis_settings().db()
    }
}

/// What the link tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message on a channel the link wants (see [`LinkHandle::subscribe`]).
    Message { channel: String, payload: Bytes },
    /// Connected, and subscribed to every channel wanted when the connection was made
    /// (channels wanted later follow without another `Up`).
    Up,
    /// The connection failed or could not be made; sent once per outage, the first failed
    /// attempt included. The link keeps trying until it is `Up` again.
    Down { reason: String },
}

/// The owner's end of the event queue (a bounded tokio channel that also keeps count of the
/// bytes waiting in it).
pub struct Events {
    events: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
}

impl Events {
    /// The next event; `None` once the task has ended (every [`LinkHandle`] dropped and what
    /// was queued sent). Cancel-safe, like the channel's: usable in `select!`.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.events.recv().await;
        self.taken(event.as_ref());
        event
    }

    /// The next event if one is waiting (for a driver that drains after a wake-up).
    pub fn try_recv(&mut self) -> Result<Event, mpsc::error::TryRecvError> {
        let event = self.events.try_recv();
        self.taken(event.as_ref().ok());
        event
    }

    /// Events waiting now.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// No event waits.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn taken(&self, event: Option<&Event>) {
        if let Some(Event::Message { channel, payload }) = event {
            self.shared.events_bytes.fetch_sub(channel.len() + payload.len(), Ordering::Relaxed);
        }
    }
}

/// A snapshot of the link's counters, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connected and resubscribed.
    pub up: bool,
    /// PUBLISH commands Redis accepted.
    pub published: u64,
    /// SET and DEL commands Redis accepted.
    pub stored: u64,
    /// Messages handed to the owner.
    pub received: u64,
    /// Commands dropped at the call: the queue was full (in commands or bytes), or the task
    /// had ended.
    pub dropped: u64,
    /// Messages dropped because the owner's event queue was full (in events or bytes).
    pub dropped_events: u64,
    /// Commands in flight when the connection failed: Redis may or may not have run them.
    pub lost: u64,
    /// Commands Redis answered with an error (the connection stays up).
    pub refused: u64,
    /// Connections made after the first one.
    pub reconnects: u64,
    /// Channels the connection is subscribed to now (0 while down).
    pub subscriptions: u64,
    /// Channel and payload bytes of the messages handed to the owner.
    pub bytes_in: u64,
    /// Channel or key, and payload or value, bytes of the commands Redis accepted.
    pub bytes_out: u64,
    /// Commands waiting in the queue now.
    pub queued: usize,
    /// Their bytes.
    pub queued_bytes: usize,
    /// Channel and payload bytes of the messages waiting for the owner now.
    pub events_bytes: usize,
}

/// Starts the link task (on the current tokio runtime) and returns the handle to drive it and
/// the events it reports. The task ends when every clone of the handle is dropped: at once if
/// Redis is away, else after sending what is queued.
///
/// # Panics
/// Outside a tokio runtime.
pub fn spawn(config: LinkConfig) -> (LinkHandle, Events) {
    let (commands_tx, commands) = mpsc::channel(config.queue_commands.max(1));
    let (events_tx, events) = mpsc::channel(config.events.max(1));
    let shared = Arc::new(Shared {
        wanted: Mutex::new(HashSet::new()),
        wake: Notify::new(),
        closed: AtomicBool::new(false),
        up: AtomicBool::new(false),
        queue_bytes: config.queue_bytes,
        queued_bytes: AtomicUsize::new(0),
        events_bound: config.events_bytes,
        events_bytes: AtomicUsize::new(0),
        counters: Counters::default(),
        round_trips: crate::metrics::latency_histogram(),
    });
    let seed = config.seed.unwrap_or_else(|| {
        let mut bytes = [0; 8];
        // Without OS randomness the jitter is merely the same on every node.
        let _ = getrandom::getrandom(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let client = config.client.clone();
    let task = Task {
        backoff: Backoff::new(config.backoff_min, config.backoff_max, seed),
        client,
        config,
        shared: Arc::clone(&shared),
        commands,
        events: events_tx,
        held: HashSet::new(),
    };
    tokio::spawn(task.run());
    let handle = LinkHandle {
        commands: commands_tx,
        shared: Arc::clone(&shared),
        _closer: Arc::new(Closer(Arc::clone(&shared))),
    };
    (handle, Events { events, shared })
}

/// The driver's side of the link: every call returns at once.
///
/// Clones share one link; the link ends when the last clone is dropped.
#[derive(Clone)]
pub struct LinkHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
}

impl LinkHandle {
    /// The round trips of the link's command batches (for `/metrics`).
    #[must_use]
    pub fn round_trips(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.shared.round_trips.clone()
    }

    /// Queues `PUBLISH channel payload`. `false`: dropped (and counted) because the queue is
    /// full; publishes that were queued go out in the order of these calls.
    pub fn publish(&self, channel: String, payload: Bytes) -> bool {
        self.queue(Command::Publish { channel, payload })
    }

    /// Queues `SET key value PX ttl_ms` (the node registry's heartbeat: the key vanishes unless
    /// refreshed). A `ttl_ms` of 0, which Redis refuses, is sent as 1. `false`: dropped.
    pub fn set_expiring(&self, key: String, value: Bytes, ttl_ms: u64) -> bool {
        self.queue(Command::SetExpiring { key, value, ttl_ms: ttl_ms.max(1) })
    }

    /// Queues `DEL key`. `false`: dropped.
    pub fn delete(&self, key: String) -> bool {
        self.queue(Command::Delete { key })
    }

    /// Adds `channel` to the channels the link wants, now and after every reconnect; its
    /// messages are delivered once Redis confirms (see [`LinkStats::subscriptions`]).
    /// `false`: it was wanted already (the set does not count references; the core does).
    pub fn subscribe(&self, channel: impl Into<String>) -> bool {
        let added = self.shared.wanted().insert(channel.into());
        if added {
            self.shared.wake.notify_one();
        }
        added
    }

    /// Removes `channel` from the wanted set. No message on it is delivered after this call,
    /// even one already on its way. `false`: it was not wanted.
    pub fn unsubscribe(&self, channel: &str) -> bool {
        let removed = self.shared.wanted().remove(channel);
        if removed {
            self.shared.wake.notify_one();
        }
        removed
    }

    /// Connected and resubscribed (between an [`Event::Up`] and the next [`Event::Down`]).
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Relaxed)
    }

    /// Commands waiting in the queue now; never more than [`LinkHandle::queue_bound`].
    pub fn queued(&self) -> usize {
        self.commands.max_capacity() - self.commands.capacity()
    }

    /// The most commands the queue holds ([`LinkConfig::queue_commands`]).
    pub fn queue_bound(&self) -> usize {
        self.commands.max_capacity()
    }

    /// The counters now.
    pub fn stats(&self) -> LinkStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LinkStats {
            up: self.is_up(),
            published: get(&c.published),
            stored: get(&c.stored),
            received: get(&c.received),
            dropped: get(&c.dropped),
            dropped_events: get(&c.dropped_events),
            lost: get(&c.lost),
            refused: get(&c.refused),
            reconnects: get(&c.reconnects),
            subscriptions: get(&c.subscriptions),
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            queued: self.queued(),
            queued_bytes: self.shared.queued_bytes.load(Ordering::Relaxed),
            events_bytes: self.shared.events_bytes.load(Ordering::Relaxed),
        }
    }

    fn queue(&self, command: Command) -> bool {
        let size = command.size();
        let shared = &self.shared;
        // Reserve the bytes first, so that concurrent callers cannot overshoot the bound together.
        let before = shared.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before > 0 && before + size > shared.queue_bytes {
            shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.commands.try_send(command).is_err() {
            shared.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Tells the task, when the last handle goes, to stop (a task waiting out a backoff would
/// otherwise never notice, as it does not read the queue while Redis is away).
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Relaxed);
        self.0.wake.notify_one();
    }
}

/// What the handles and the task share.
struct Shared {
    /// The channels the owner wants: the task subscribes the connection to exactly these.
    wanted: Mutex<HashSet<String>>,
    /// The wanted set changed, or the last handle went.
    wake: Notify,
    closed: AtomicBool,
    up: AtomicBool,
    queue_bytes: usize,
    queued_bytes: AtomicUsize,
    /// [`LinkConfig::events_bytes`], and the message bytes waiting for the owner now.
    events_bound: usize,
    events_bytes: AtomicUsize,
    counters: Counters,
    /// How long each batch of commands took, sent to answered.
    round_trips: prometheus_client::metrics::histogram::Histogram,
}

impl Shared {
    fn wanted(&self) -> MutexGuard<'_, HashSet<String>> {
        // A panic while holding this lock leaves a set, not a broken invariant.
        self.wanted.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, counter: impl Fn(&Counters) -> &AtomicU64, n: u64) {
        counter(&self.counters).fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    stored: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
    dropped_events: AtomicU64,
    lost: AtomicU64,
    refused: AtomicU64,
    reconnects: AtomicU64,
    subscriptions: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

enum Command {
    Publish { channel: String, payload: Bytes },
    SetExpiring { key: String, value: Bytes, ttl_ms: u64 },
    Delete { key: String },
}

impl Command {
    /// The bytes this command holds while queued (and, near enough, puts on the wire).
    fn size(&self) -> usize {
        match self {
            Command::Publish { channel, payload } => channel.len() + payload.len(),
            Command::SetExpiring { key, value, .. } => key.len() + value.len(),
            Command::Delete { key } => key.len(),
        }
    }
}

/// Why a connection ended.
enum Ended {
    /// Every handle is gone and the queue is sent: the task is done.
    Closed,
    /// The connection failed; the link reconnects.
    Lost(String),
}

struct Task {
    config: LinkConfig,
    client: Client,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    backoff: Backoff,
    /// The channels the current connection is subscribed to (empty while down).
    held: HashSet<String>,
}

impl Task {
    async fn run(mut self) {
        let address = self.config.address();
        // Whether the current outage has been reported; the link starts down, unreported.
        let mut reported = false;
        let mut connected_before = false;
        loop {
            // Closed while Redis is known to be away (or with nothing to send): what is queued
            // would wait for a server that may never come back, for an owner that is gone.
            if self.shared.closed.load(Ordering::Relaxed) && (reported || self.commands.is_empty()) {
                return;
            }
            match self.connect().await {
                Ok((mut con, dead)) => {
                    self.backoff.reset();
                    if connected_before {
                        self.shared.count(|c| &c.reconnects, 1);
                    }
                    connected_before = true;
                    self.shared.up.store(true, Ordering::Relaxed);
                    tracing::info!(%address, subscriptions = self.held.len(), "cluster link up");
                    if self.events.send(Event::Up).await.is_err() {
                        return;
                    }
                    let ended = self.serve(&mut con, &dead).await;
                    self.shared.up.store(false, Ordering::Relaxed);
                    self.held.clear();
                    self.shared.counters.subscriptions.store(0, Ordering::Relaxed);
                    match ended {
                        Ended::Closed => return,
                        Ended::Lost(reason) => {
                            tracing::warn!(%address, %reason, "cluster link down");
                            reported = true;
                            if self.events.send(Event::Down { reason }).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(reason) => {
                    self.held.clear();
                    if !reported {
                        tracing::warn!(%address, %reason, "cluster link down");
                        reported = true;
                        if self.events.send(Event::Down { reason }).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if !self.wait_out_backoff().await {
                return;
            }
        }
    }

    /// Sleeps the next backoff delay; `false` if the last handle went meanwhile.
    async fn wait_out_backoff(&mut self) -> bool {
        let sleep = tokio::time::sleep(self.backoff.next_delay());
        tokio::pin!(sleep);
        loop {
            if self.shared.closed.load(Ordering::Relaxed) {
                return false;
            }
            tokio::select! {
                () = &mut sleep => return true,
                // Subscription changes need no action while down (the next connection takes the
                // whole wanted set); only the close matters here.
                () = self.shared.wake.notified() => {}
            }
        }
    }

    /// Connects and subscribes to the wanted set: the link is up when this returns `Ok`.
    /// The `Notify` fires when the client's reader sees the connection end.
    async fn connect(&mut self) -> Result<(MultiplexedConnection, Arc<Notify>), String> {
        let dead = Arc::new(Notify::new());
        let pushes = Pushes {
            shared: Arc::clone(&self.shared),
            events: self.events.downgrade(),
            dead: Arc::clone(&dead),
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.response_timeout))
            .set_push_sender(move |push: PushInfo| -> Result<(), redis::aio::SendError> {
                pushes.push(push);
                Ok(())
            });
        // The client's own timeout covers the TCP connect; this one also covers the handshake
        // with a server that accepts and then says nothing.
        let limit = self.config.connect_timeout + self.config.response_timeout;
        let mut con = tokio::time::timeout(limit, self.client.get_multiplexed_async_connection_with_config(&config))
            .await
            .map_err(|_| format!("no connection within {limit:?}"))?
            .map_err(|err| err.to_string())?;
        self.held.clear();
        self.reconcile(&mut con).await.map_err(|err| err.to_string())?;
        Ok((con, dead))
    }

    /// Runs one connection until it fails or the task is done.
    async fn serve(&mut self, con: &mut MultiplexedConnection, dead: &Notify) -> Ended {
        let mut batch = Vec::new();
        let ping = tokio::time::sleep(self.config.ping_every);
        tokio::pin!(ping);
        loop {
            tokio::select! {
                biased;
                () = dead.notified() => return Ended::Lost("connection closed".to_owned()),
                () = self.shared.wake.notified() => {
                    if let Err(err) = self.reconcile(con).await {
                        return Ended::Lost(err.to_string());
                    }
                }
                first = self.commands.recv() => {
                    let Some(first) = first else { return Ended::Closed };
                    batch.push(first);
                    self.fill(&mut batch);
                    if let Err(reason) = self.send(con, &mut batch).await {
                        return Ended::Lost(reason);
                    }
                    ping.as_mut().reset(tokio::time::Instant::now() + self.config.ping_every);
                }
                () = &mut ping => {
                    if let Err(err) = redis::cmd("PING").query_async::<()>(con).await {
                        return Ended::Lost(format!("ping: {err}"));
                    }
                    ping.as_mut().reset(tokio::time::Instant::now() + self.config.ping_every);
                }
            }
        }
    }

    /// Takes what else is queued into `batch`, up to [`LinkConfig::batch_bytes`]: under load the
    /// commands that piled up during one round trip share the next.
    fn fill(&mut self, batch: &mut Vec<Command>) {
        let mut bytes: usize = batch.iter().map(Command::size).sum();
        while bytes < self.config.batch_bytes {
            let Ok(command) = self.commands.try_recv() else { break };
            bytes += command.size();
            batch.push(command);
        }
    }

    /// Sends `batch` as one pipeline and counts the outcome; `Err`: the connection failed.
    async fn send(&mut self, con: &mut MultiplexedConnection, batch: &mut Vec<Command>) -> Result<(), String> {
        let queued: usize = batch.iter().map(Command::size).sum();
        self.shared.queued_bytes.fetch_sub(queued, Ordering::Relaxed);
        let mut pipe = redis::pipe();
        for command in batch.iter() {
            match command {
                Command::Publish { channel, payload } => pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]),
                Command::SetExpiring { key, value, ttl_ms } => {
                    pipe.cmd("SET").arg(key).arg(&value[..]).arg("PX").arg(*ttl_ms)
                }
                Command::Delete { key } => pipe.cmd("DEL").arg(key),
            };
        }
        // Not `query_async`, which turns one refused command into an error for the batch: here
        // each answer is counted for its own command, and only a failed connection is an `Err`.
        let started = std::time::Instant::now();
        let sent = con.req_packed_commands(&pipe, 0, batch.len()).await;
        self.shared.round_trips.observe(started.elapsed().as_secs_f64());
        let answers = match sent {
            Ok(answers) => answers,
            Err(err) => {
                self.shared.count(|c| &c.lost, batch.len() as u64);
                batch.clear();
                return Err(err.to_string());
            }
        };
        for (command, answer) in batch.drain(..).zip(answers) {
            if let Value::ServerError(err) = answer {
                self.shared.count(|c| &c.refused, 1);
                tracing::warn!(error = %err, "Redis refused a cluster command");
                continue;
            }
            match command {
                Command::Publish { .. } => self.shared.count(|c| &c.published, 1),
                Command::SetExpiring { .. } | Command::Delete { .. } => self.shared.count(|c| &c.stored, 1),
            }
            self.shared.count(|c| &c.bytes_out, command.size() as u64);
        }
        Ok(())
    }

    /// Subscribes and unsubscribes until the connection holds exactly the wanted set.
    async fn reconcile(&mut self, con: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let (add, remove): (Vec<String>, Vec<String>) = {
            let wanted = self.shared.wanted();
            (
                wanted.difference(&self.held).cloned().collect(),
                self.held.difference(&wanted).cloned().collect(),
            )
        };
        for chunk in add.chunks(SUBSCRIBE_CHUNK) {
            con.subscribe(chunk).await?;
            self.held.extend(chunk.iter().cloned());
            self.shared.counters.subscriptions.store(self.held.len() as u64, Ordering::Relaxed);
        }
        for chunk in remove.chunks(SUBSCRIBE_CHUNK) {
            con.unsubscribe(chunk).await?;
            for channel in chunk {
                self.held.remove(channel);
            }
            self.shared.counters.subscriptions.store(self.held.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What the client's reader calls for every push of one connection. It runs inside the
/// client's reader task, so it must not block: it filters and `try_send`s.
struct Pushes {
    shared: Arc<Shared>,
    /// Weak, so that the owner sees the queue end when the task ends, not when the client's
    /// reader (which holds this) gets round to stopping.
    events: mpsc::WeakSender<Event>,
    dead: Arc<Notify>,
}

impl Pushes {
    fn push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {}
            // Stored as a permit if the task is busy, so the next `select!` sees it.
            PushKind::Disconnection => return self.dead.notify_one(),
            // Subscription confirmations are also the commands' replies; nothing else is asked for.
            _ => return,
        }
        let mut data = push.data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) = (data.next(), data.next()) else {
            return;
        };
        // Only channels the owner named (always UTF-8) are subscribed to.
        let Ok(channel) = String::from_utf8(channel) else { return };
        if !self.shared.wanted().contains(&channel) {
            return;
        }
        let Some(events) = self.events.upgrade() else { return };
        let size = channel.len() + payload.len();
        // Reserved before the send, as the owner may take the message (and release its bytes)
        // the moment it is in the channel.
        let before = self.shared.events_bytes.fetch_add(size, Ordering::Relaxed);
        let fits = before == 0 || before + size <= self.shared.events_bound;
        if fits && events.try_send(Event::Message { channel, payload: Bytes::from(payload) }).is_ok() {
            self.shared.count(|c| &c.received, 1);
            self.shared.count(|c| &c.bytes_in, size as u64);
        } else {
            self.shared.events_bytes.fetch_sub(size, Ordering::Relaxed);
            self.shared.count(|c| &c.dropped_events, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_gives_host_port_and_database() {
        let config = LinkConfig::parse("redis://127.0.0.1:6380/3").unwrap();
        assert_eq!(config.address(), "127.0.0.1:6380");
        assert_eq!(config.db(), 3);
        let config = LinkConfig::parse("redis://localhost").unwrap();
        assert_eq!((config.address().as_str(), config.db()), ("localhost:6379", 0));
    }

    #[test]
    fn the_link_always_speaks_resp3() {
        let config = LinkConfig::parse("redis://127.0.0.1/?protocol=resp2").unwrap();
        assert_eq!(config.client.get_connection_info().redis_settings().protocol(), ProtocolVersion::RESP3);
    }

    #[test]
    fn bad_urls_are_refused_with_the_url_in_the_message() {
        for url in ["http://127.0.0.1:6379", "redis://127.0.0.1:6379/not-a-db", "redis://:99999", "not a url", ""] {
            let err = LinkConfig::parse(url).expect_err(url).to_string();
            assert!(err.contains(&format!("{url:?}")), "{err}");
        }
    }

    #[test]
    fn a_password_in_a_bad_url_stays_out_of_the_error() {
        let err = LinkConfig::parse("redis://user:s3cret@127.0.0.1:6379/x").unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("127.0.0.1:6379/x"), "{err}");
    }

    #[test]
    fn tls_urls_are_refused_without_tls_built_in() {
        assert!(LinkConfig::parse("rediss://127.0.0.1:6379").is_err());
    }
}
