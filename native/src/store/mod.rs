//! The embedded store: the core's storage requests (the room service's records, see
//! `parlor_core::app::records`) carried out on SQLite by one dedicated thread, strictly in
//! order.
//!
//! [`Store::open`] opens (creating if needed) `DIR/parlor.db` before the server starts, so a
//! bad data directory is an error at startup. The driver hands every `Output::Store` to
//! [`Store::submit`] with a callback that puts the answer on the driver's own channel; it
//! never waits for the store. The thread takes requests first in, first out, runs whatever
//! is queued as one batch (see [`db`]) and calls each callback once the batch is committed.
//!
//! Every submitted request is answered exactly once: a request that cannot run (the store
//! is closed, the thread is gone) answers `Failed`, never silence, so the core never waits
//! forever. [`Store::close`] lets the thread finish everything queued before it, then stops.

pub mod db;
pub mod redis;

use self::db::Db;
use self::redis::{RedisSettings, RedisStore};
use crate::metrics::{RequestKind, StoreLatency};
use parlor_core::app::records::RoomRequest;
use parlor_core::host::{StoreAnswer, StoreRequest};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// At most this many queued requests share one transaction.
const MAX_BATCH: usize = 256;

/// The callback that receives a request's answer.
type Callback = Box<dyn FnOnce(StoreAnswer) + Send>;

/// Delivers an answer exactly once: dropped unanswered (a request left in the queue of a
/// stopped thread), it answers `Failed`.
pub(crate) struct Answerer(Option<Callback>);

impl Answerer {
    pub(crate) fn send(mut self, answer: StoreAnswer) {
        if let Some(f) = self.0.take() {
            f(answer);
        }
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(StoreAnswer::Failed("the store is closed".into()));
        }
    }
}

struct Job {
    request: StoreRequest,
    reply: Answerer,
}

enum Msg {
    Job(Job),
    /// Finish what is queued before this, then stop.
    Close,
}

/// A handle on the store; clones share it: the embedded SQLite store (its thread), or in
/// cluster mode the records in Redis ([`redis`]).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Submit to answer, per kind of request (for `/metrics`).
    latency: StoreLatency,
}

#[derive(Clone)]
enum Backend {
    Sqlite(Arc<Inner>),
    /// Records in Redis; documents still in the node's own SQLite store (one node per
    /// document holds its edits: until documents move between nodes by a lease, sharing
    /// their saved state would let two nodes' edits overwrite each other).
    Redis { redis: Arc<RedisStore>, documents: Arc<Inner> },
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Sqlite(inner) => f.debug_struct("Store").field("path", &inner.path).finish_non_exhaustive(),
            Backend::Redis { redis, .. } => f.debug_tuple("Store").field(redis).finish(),
        }
    }
}

impl Store {
    /// Opens `dir/parlor.db` (creating `dir` and the schema if needed) and starts the store
    /// thread. `history_keep`: messages kept per room.
    pub fn open(dir: &Path, history_keep: usize) -> anyhow::Result<Store> {
        let db = Db::open(dir, history_keep)?;
        let path = db.path().to_owned();
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new().name("parlor-store".into()).spawn(move || run(db, &rx))?;
        tracing::info!(path = %path.display(), history_keep, "store open");
        let backend = Backend::Sqlite(Arc::new(Inner { tx, thread: Mutex::new(Some(thread)), path }));
        Ok(Store { backend, latency: crate::metrics::store_latency() })
    }

    /// The records in Redis (cluster mode), run by a task on the current tokio runtime;
    /// documents go to `documents` (see [`Store::open`]).
    pub fn redis(settings: RedisSettings, documents: Store) -> anyhow::Result<Store> {
        let Backend::Sqlite(documents) = documents.backend else {
            anyhow::bail!("documents need the embedded store");
        };
        let backend = Backend::Redis { redis: Arc::new(RedisStore::start(settings)?), documents };
        Ok(Store { backend, latency: crate::metrics::store_latency() })
    }

    /// Queues `request`; `reply` gets its answer, on the store thread, after every request
    /// submitted before it was answered. Never blocks. If the store is closed, `reply` gets
    /// `Failed` at once, on this thread.
    pub fn submit(&self, request: StoreRequest, reply: impl FnOnce(StoreAnswer) + Send + 'static) {
        let decoded = RoomRequest::from_store(&request);
        let kind = RequestKind { kind: if decoded.as_ref().is_ok_and(|r| !r.writes()) { "read" } else { "write" } };
        let (latency, started) = (self.latency.clone(), std::time::Instant::now());
        let reply = Answerer(Some(Box::new(move |answer| {
            latency.get_or_create(&kind).observe(started.elapsed().as_secs_f64());
            reply(answer);
        })));
        let document = matches!(decoded, Ok(RoomRequest::SaveDocument { .. } | RoomRequest::LoadDocument { .. }));
        let sqlite = match &self.backend {
            Backend::Sqlite(inner) => inner,
            Backend::Redis { documents, .. } if document => documents,
            Backend::Redis { redis, .. } => return redis.submit(request, reply),
        };
        // A refused message is dropped here, and its `Answerer` answers `Failed`.
        let _ = sqlite.tx.send(Msg::Job(Job { request, reply }));
    }

    /// How long requests took, per kind.
    #[must_use]
    pub fn latency(&self) -> StoreLatency {
        self.latency.clone()
    }

    /// Submits `request` and waits for the answer (tests, tools; not for async code).
    pub fn call(&self, request: StoreRequest) -> StoreAnswer {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(request, move |answer| {
            let _ = tx.send(answer);
        });
        rx.recv().unwrap_or_else(|_| StoreAnswer::Failed("the store is closed".into()))
    }

    /// Lets the thread finish every request queued so far, then stops it and waits for it.
    /// Requests submitted afterwards answer `Failed`. Safe to call more than once; blocks
    /// (from async code, call it through `spawn_blocking`).
    pub fn close(&self) {
        let inner = match &self.backend {
            Backend::Sqlite(inner) => inner,
            Backend::Redis { redis, documents } => {
                redis.close();
                documents
            }
        };
        let _ = inner.tx.send(Msg::Close);
        let thread = inner.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the store thread panicked");
            } else {
                tracing::info!(path = %inner.path.display(), "store closed");
            }
        }
    }
}

/// The store thread: batches of queued requests, in order, until closed or every handle
/// is gone. Requests still queued behind a `Close` answer `Failed` when `rx` is dropped.
fn run(mut db: Db, rx: &mpsc::Receiver<Msg>) {
    let mut closing = false;
    while !closing {
        let Ok(first) = rx.recv() else { break };
        let mut jobs = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Job(job) => jobs.push(job),
                // Nothing may be taken from behind a Close: that must answer Failed.
                Msg::Close => {
                    closing = true;
                    break;
                }
            }
            if jobs.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let (requests, replies): (Vec<_>, Vec<_>) = jobs.into_iter().map(|j| (j.request, j.reply)).unzip();
        let answers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.execute_batch(&requests)))
            .unwrap_or_else(|_| {
                tracing::error!("the store panicked running a batch");
                requests.iter().map(|_| StoreAnswer::Failed("internal store error".into())).collect()
            });
        for (reply, answer) in replies.into_iter().zip(answers) {
            reply.send(answer);
        }
    }
}

/// Temporary directories for tests, removed on drop.
#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new(name: &str) -> TestDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("parlor-test-{name}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TestDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_dir::TestDir;
    use super::*;
    use parlor_core::app::records::{RoomAnswer, RoomRequest};
    use serde_json::json;

    fn msg(n: u64) -> StoreRequest {
        RoomRequest::AppendMessage { scope: "/".into(), room: "r".into(), message: json!({"n": n}).to_string() }.into()
    }

    fn load() -> StoreRequest {
        RoomRequest::LoadHistory { scope: "/".into(), room: "r".into(), limit: 10_000 }.into()
    }

    fn done() -> StoreAnswer {
        RoomAnswer::Done.into()
    }

    fn ns(answer: &StoreAnswer) -> Vec<u64> {
        match RoomAnswer::from_store(answer.clone()) {
            Ok(RoomAnswer::Messages(r)) => {
                r.iter().map(|m| serde_json::from_str::<serde_json::Value>(m).unwrap()["n"].as_u64().unwrap()).collect()
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_come_back_in_submission_order() {
        let dir = TestDir::new("store-order");
        let store = Store::open(dir.path(), 10_000).unwrap();
        let (tx, rx) = mpsc::channel();
        for n in 0..500u64 {
            let tx = tx.clone();
            let request = if n % 50 == 49 { load() } else { msg(n) };
            store.submit(request, move |answer| tx.send((n, answer)).unwrap());
        }
        drop(tx);
        let answers: Vec<(u64, StoreAnswer)> = rx.iter().collect();
        assert_eq!(answers.iter().map(|(n, _)| *n).collect::<Vec<_>>(), (0..500).collect::<Vec<_>>());
        for (n, answer) in &answers {
            if n % 50 == 49 {
                // A load sees exactly the writes submitted before it.
                let expected: Vec<u64> = (0..*n).filter(|i| i % 50 != 49).collect();
                assert_eq!(ns(answer), expected);
            } else {
                assert_eq!(*answer, done());
            }
        }
        store.close();
    }

    #[test]
    fn close_finishes_queued_requests_and_later_ones_fail() {
        let dir = TestDir::new("store-close");
        let store = Store::open(dir.path(), 10_000).unwrap();
        let (tx, rx) = mpsc::channel();
        for n in 0..300 {
            let tx = tx.clone();
            store.submit(msg(n), move |a| tx.send(a).unwrap());
        }
        store.close();
        let answers: Vec<StoreAnswer> = rx.try_iter().collect();
        assert_eq!(answers.len(), 300, "every queued request was answered before close returned");
        assert!(answers.iter().all(|a| *a == done()));
        assert!(matches!(store.call(msg(1000)), StoreAnswer::Failed(_)));
        store.close();

        let reopened = Store::open(dir.path(), 10_000).unwrap();
        assert_eq!(ns(&reopened.call(load())), (0..300).collect::<Vec<_>>());
        reopened.close();
    }

    #[test]
    fn dropping_every_handle_finishes_the_queue_too() {
        let dir = TestDir::new("store-drop");
        let store = Store::open(dir.path(), 100).unwrap();
        let (tx, rx) = mpsc::channel();
        for n in 0..50 {
            let tx = tx.clone();
            store.submit(msg(n), move |a| tx.send(a).unwrap());
        }
        drop(tx);
        drop(store);
        // The thread drains the queue, then sees every sender gone.
        assert_eq!(rx.iter().filter(|a| *a == done()).count(), 50);
    }

    #[test]
    fn history_keep_applies_through_the_thread() {
        let dir = TestDir::new("store-keep");
        let store = Store::open(dir.path(), 5).unwrap();
        for n in 0..20 {
            assert_eq!(store.call(msg(n)), done());
        }
        assert_eq!(ns(&store.call(load())), vec![15, 16, 17, 18, 19]);
        store.close();
    }
}

/// Timings on this machine's disk: `cargo test --release -p parlor store_speed -- --ignored
/// --nocapture`; `KEEP=N` (history kept, 1000) and `ROOMS=N` (rooms written, 10) vary it.
#[cfg(test)]
mod speed {
    use super::test_dir::TestDir;
    use super::*;
    use parlor_core::app::records::{RoomAnswer, RoomRequest};
    use serde_json::json;
    use std::time::Instant;

    #[test]
    #[ignore = "a measurement, not a check"]
    fn store_speed() {
        let dir = TestDir::new("store-speed");
        let env = |name: &str, default: u64| std::env::var(name).map_or(default, |v| v.parse().unwrap());
        let (keep, rooms) = (env("KEEP", 1000), env("ROOMS", 10));
        let store = Store::open(dir.path(), usize::try_from(keep).unwrap()).unwrap();
        let message = |n: u64| -> StoreRequest {
            RoomRequest::AppendMessage {
                scope: "/".into(),
                room: format!("room{}", n % rooms),
                message: json!({"id": n, "content": "hello there, a typical chat message", "sender": {"id": "u", "username": "User"}, "timestamp": 1_700_000_000_000u64}).to_string(),
            }
            .into()
        };
        let done: StoreAnswer = RoomAnswer::Done.into();
        let n = 500;
        let start = Instant::now();
        for i in 0..n {
            assert_eq!(store.call(message(i)), done);
        }
        let one_by_one = start.elapsed();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for i in 0..n * 20 {
            let tx = tx.clone();
            store.submit(message(i), move |a| tx.send(a).unwrap());
        }
        drop(tx);
        assert_eq!(rx.iter().filter(|a| *a == done).count() as u64, n * 20);
        let queued = start.elapsed();
        println!(
            "one at a time (a commit each): {:.3} ms per append; {} queued: {:.1} µs per append",
            one_by_one.as_secs_f64() * 1000.0 / n as f64,
            n * 20,
            queued.as_secs_f64() * 1e6 / (n * 20) as f64
        );
        store.close();
    }
}
