//! The shared store of cluster mode: the room service's records in Redis, so every node
//! reads the same history, notifications and read marks.
//!
//! One task owns one connection and runs the queued requests in order, in pipelined
//! batches (each request one command; the multi-step ones are Lua scripts, which Redis runs
//! whole). A request is answered after Redis answered it: "stored" means Redis has it (and,
//! with `wait`, that `WAIT` saw that many replicas take the batch). A request Redis did
//! not take (down, refused, not enough replicas) answers `Failed`, which the room service
//! turns into an error ack, never a false success. The queue is bounded: a request that
//! does not fit answers `Failed` at once.
//!
//! Keys (after the cluster prefix; names carry their lengths, so no two records share one):
//! `history:LEN:SCOPE:ROOM` (a list, newest last, trimmed to `history_keep`),
//! `notes:LEN:USER` (id → JSON), `notes-order:LEN:USER` (a sorted set, by arrival),
//! `notes-read:LEN:USER` (the ids read), `notes-seq` (the arrival counter),
//! `doc:LEN:SCOPE:DOC` (content, version).

use super::db::NOTIFICATIONS_KEEP;
use super::Answerer;
use parlor_core::app::records::{RoomAnswer, RoomRequest};
use parlor_core::host::{StoreAnswer, StoreRequest};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Client, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Requests waiting for the task; past it a request fails at once.
const QUEUE: usize = 16_384;
/// At most this many requests share one round trip.
const MAX_BATCH: usize = 256;
/// How long a connection attempt, or a batch, may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long `WAIT` waits for the replicas (inside the batch's own time).
const WAIT_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed connection attempt, requests fail at once for this long rather than each
/// waiting out a connect of its own.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Stores a notification under its id; the same id again replaces it but keeps its place
/// and read mark; a user's oldest beyond the bound go.
const PUT_NOTIFICATION: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
end
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('HDEL', KEYS[1], id)
    redis.call('SREM', KEYS[3], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
return 1";

/// The newest `limit` notifications, newest first: JSON and read mark, flat.
const LOAD_NOTIFICATIONS: &str = r"
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)) do
  local json = redis.call('HGET', KEYS[1], id)
  if json then
    out[#out + 1] = json
    out[#out + 1] = redis.call('SISMEMBER', KEYS[3], id)
  end
end
return out";

/// Marks one read: 1 if it exists (read before or not), 0 if there is no such one.
const MARK_READ: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0";

/// Marks all read: how many were unread.
const MARK_ALL_READ: &str = r"
local n = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('SADD', KEYS[3], id)
end
return n";

/// Appends a message and keeps the newest `keep`.
const APPEND_MESSAGE: &str = r"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
return 1";

struct Job {
    request: StoreRequest,
    reply: Answerer,
}

/// The handle on the Redis store's task.
pub struct RedisStore {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    /// Says when the task has answered everything queued and stopped.
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("url", &self.url).finish_non_exhaustive()
    }
}

/// What the task needs to name keys and keep bounds.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: String,
    pub prefix: String,
    pub history_keep: usize,
    /// `WAIT` for this many replicas after each batch that writes (`--redis-wait`).
    pub wait_replicas: u32,
}

impl RedisStore {
    /// Starts the task on the current tokio runtime. The URL is checked now; the
    /// connection is made on the first request (and again after a failure).
    pub fn start(settings: RedisSettings) -> anyhow::Result<RedisStore> {
        let client = Client::open(settings.url.as_str())?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let url = settings.url.clone();
        tokio::spawn(async move {
            Task { client, settings, con: None, failed_at: None }.run(rx).await;
            let _ = done_tx.send(());
        });
        tracing::info!(url = %url, "store: the cluster's records in Redis");
        Ok(RedisStore { tx: Mutex::new(Some(tx)), done: Mutex::new(Some(done_rx)), url })
    }

    pub(super) fn submit(&self, request: StoreRequest, reply: Answerer) {
        let tx = self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let Some(tx) = tx else { return reply.send(StoreAnswer::Failed("the store is closed".into())) };
        if let Err(err) = tx.try_send(Job { request, reply }) {
            let (mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) = err;
            job.reply.send(StoreAnswer::Failed("the Redis store's queue is full".into()));
        }
    }

    /// Lets the task answer everything queued, then waits for it to stop (blocking).
    pub(super) fn close(&self) {
        self.tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let done = self.done.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(done) = done {
            let _ = done.recv();
            tracing::info!(url = %self.url, "Redis store closed");
        }
    }
}

struct Task {
    client: Client,
    settings: RedisSettings,
    con: Option<MultiplexedConnection>,
    failed_at: Option<Instant>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                let Ok(job) = rx.try_recv() else { break };
                batch.push(job);
            }
            self.execute(&mut batch).await;
        }
    }

    async fn connection(&mut self) -> Result<&mut MultiplexedConnection, String> {
        if self.con.is_none() {
            if self.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
                return Err("Redis is unreachable".into());
            }
            // The client's own response timeout is shorter than a batch that waits for
            // replicas may take; this task keeps the time itself.
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(TIMEOUT))
                .set_response_timeout(Some(TIMEOUT + WAIT_TIMEOUT));
            match tokio::time::timeout(TIMEOUT, self.client.get_multiplexed_async_connection_with_config(&config)).await {
                Ok(Ok(con)) => {
                    self.con = Some(con);
                    self.failed_at = None;
                }
                Ok(Err(err)) => {
                    self.failed_at = Some(Instant::now());
                    return Err(format!("Redis: {err}"));
                }
                Err(_) => {
                    self.failed_at = Some(Instant::now());
                    return Err(format!("Redis: no connection within {TIMEOUT:?}"));
                }
            }
        }
        self.con.as_mut().ok_or_else(|| "no connection".into())
    }

    /// Runs a batch as one pipeline and answers each request.
    async fn execute(&mut self, batch: &mut Vec<Job>) {
        let mut pipe = redis::pipe();
        let mut kinds = Vec::with_capacity(batch.len());
        let mut writes = false;
        for job in batch.iter() {
            match RoomRequest::from_store(&job.request) {
                Ok(request) => {
                    writes |= request.writes();
                    self.command(&mut pipe, &request);
                    kinds.push(Some(request));
                }
                Err(_) => kinds.push(None),
            }
        }
        let commands = kinds.iter().filter(|k| k.is_some()).count();
        let wait = writes && self.settings.wait_replicas > 0;
        if wait {
            pipe.cmd("WAIT").arg(self.settings.wait_replicas).arg(WAIT_TIMEOUT.as_millis() as u64);
        }
        let expected = commands + usize::from(wait);
        let answers = if expected == 0 {
            Ok(Vec::new())
        } else {
            match self.connection().await {
                Ok(con) => tokio::time::timeout(TIMEOUT + WAIT_TIMEOUT, con.req_packed_commands(&pipe, 0, expected))
                    .await
                    .unwrap_or_else(|_| Err(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            }
        };
        let mut answers = match answers {
            Ok(a) => a.into_iter(),
            Err(reason) => {
                // The connection is not to be trusted after a failure: the next batch
                // makes a new one.
                self.con = None;
                tracing::warn!(%reason, requests = batch.len(), "the Redis store failed a batch");
                for job in batch.drain(..) {
                    job.reply.send(StoreAnswer::Failed(reason.clone()));
                }
                return;
            }
        };
        let mut results: Vec<StoreAnswer> = kinds
            .iter()
            .map(|kind| match kind {
                None => StoreAnswer::Failed("not a room record request".into()),
                Some(request) => match answers.next() {
                    Some(Value::ServerError(err)) => StoreAnswer::Failed(format!("Redis refused: {err:?}")),
                    Some(value) => match answer(request, value) {
                        Ok(a) => a.into(),
                        Err(e) => StoreAnswer::Failed(e),
                    },
                    None => StoreAnswer::Failed("Redis gave no answer".into()),
                },
            })
            .collect();
        if wait {
            let replicas = answers.next().and_then(|v| redis::from_redis_value::<u64>(v).ok()).unwrap_or(0);
            if replicas < u64::from(self.settings.wait_replicas) {
                let reason = format!("only {replicas} of {} replicas confirmed", self.settings.wait_replicas);
                for (result, kind) in results.iter_mut().zip(&kinds) {
                    if kind.as_ref().is_some_and(RoomRequest::writes) && matches!(result, StoreAnswer::Done(_)) {
                        *result = StoreAnswer::Failed(reason.clone());
                    }
                }
            }
        }
        for (job, result) in batch.drain(..).zip(results) {
            job.reply.send(result);
        }
    }

    fn key(&self, kind: &str, parts: &[&str]) -> String {
        let mut key = format!("{}:{kind}", self.settings.prefix);
        if let Some((last, first)) = parts.split_last() {
            for p in first {
                key.push_str(&format!(":{}:{p}", p.len()));
            }
            key.push(':');
            key.push_str(last);
        }
        key
    }

    /// The notification keys of a user: records, order, read marks, the counter.
    fn notes(&self, user: &str) -> [String; 4] {
        [
            self.key("notes", &[user, ""]),
            self.key("notes-order", &[user, ""]),
            self.key("notes-read", &[user, ""]),
            self.key("notes-seq", &[]),
        ]
    }

    fn command(&self, pipe: &mut redis::Pipeline, request: &RoomRequest) {
        match request {
            RoomRequest::AppendMessage { scope, room, message } => {
                let key = self.key("history", &[scope, room]);
                pipe.cmd("EVAL").arg(APPEND_MESSAGE).arg(1).arg(key).arg(message).arg(self.settings.history_keep.max(1));
            }
            RoomRequest::LoadHistory { scope, room, limit } => {
                let key = self.key("history", &[scope, room]);
                // `LRANGE key -0 -1` would be everything: a limit of 0 asks for an empty range.
                let start = if *limit == 0 { 1 } else { -i64::try_from(*limit).unwrap_or(i64::MAX) };
                let stop = if *limit == 0 { 0 } else { -1 };
                pipe.cmd("LRANGE").arg(key).arg(start).arg(stop);
            }
            RoomRequest::PutNotification { user, id, notification } => {
                let keys = self.notes(user);
                pipe.cmd("EVAL").arg(PUT_NOTIFICATION).arg(4).arg(&keys).arg(id).arg(notification).arg(NOTIFICATIONS_KEEP);
            }
            RoomRequest::LoadNotifications { user, limit } => {
                let keys = self.notes(user);
                pipe.cmd("EVAL").arg(LOAD_NOTIFICATIONS).arg(3).arg(&keys[..3]).arg((*limit).min(NOTIFICATIONS_KEEP));
            }
            RoomRequest::MarkRead { user, id } => {
                let [records, _, read, _] = self.notes(user);
                pipe.cmd("EVAL").arg(MARK_READ).arg(2).arg(records).arg(read).arg(id);
            }
            RoomRequest::MarkAllRead { user } => {
                let keys = self.notes(user);
                pipe.cmd("EVAL").arg(MARK_ALL_READ).arg(3).arg(&keys[..3]);
            }
            RoomRequest::SaveDocument { scope, doc, content, version } => {
                let key = self.key("doc", &[scope, doc]);
                pipe.cmd("HSET").arg(key).arg("content").arg(content).arg("version").arg(*version);
            }
            RoomRequest::LoadDocument { scope, doc } => {
                pipe.cmd("HMGET").arg(self.key("doc", &[scope, doc])).arg("content").arg("version");
            }
        }
    }
}

/// Redis' answer to one request, as the room service's record.
fn answer(request: &RoomRequest, value: Value) -> Result<RoomAnswer, String> {
    let parse = |e: redis::ParsingError| format!("unexpected answer from Redis: {e}");
    Ok(match request {
        RoomRequest::AppendMessage { .. }
        | RoomRequest::PutNotification { .. }
        | RoomRequest::SaveDocument { .. } => RoomAnswer::Done,
        RoomRequest::LoadHistory { .. } => RoomAnswer::Messages(redis::from_redis_value(value).map_err(parse)?),
        RoomRequest::LoadNotifications { .. } => {
            let flat: Vec<Value> = redis::from_redis_value(value).map_err(parse)?;
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut items = flat.into_iter();
            while let (Some(json), Some(read)) = (items.next(), items.next()) {
                let json: String = redis::from_redis_value(json).map_err(parse)?;
                let read: i64 = redis::from_redis_value(read).map_err(parse)?;
                out.push((json, read == 1));
            }
            RoomAnswer::Notifications(out)
        }
        RoomRequest::MarkRead { .. } | RoomRequest::MarkAllRead { .. } => {
            RoomAnswer::Updated(redis::from_redis_value(value).map_err(parse)?)
        }
        RoomRequest::LoadDocument { .. } => {
            let (content, version): (Option<String>, Option<u64>) = redis::from_redis_value(value).map_err(parse)?;
            match (content, version) {
                (Some(c), Some(v)) => RoomAnswer::Document(Some((c, v))),
                _ => RoomAnswer::Document(None),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_dir::TestDir;
    use super::super::Store;
    use super::*;
    use parlor_core::app::records::Answer;

    /// The local Redis, with keys of a prefix of this run's; the runtime the task runs on.
    struct Fixture {
        store: Store,
        prefix: String,
        _rt: tokio::runtime::Runtime,
        _dir: TestDir,
    }

    fn fixture(name: &str, url: &str, keep: usize, wait: u32) -> Fixture {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let _guard = rt.enter();
        let dir = TestDir::new(name);
        let prefix = format!("parlor-test-store-{name}-{}", std::process::id());
        let settings = RedisSettings { url: url.into(), prefix: prefix.clone(), history_keep: keep, wait_replicas: wait };
        let store = Store::redis(settings, Store::open(dir.path(), keep).unwrap()).unwrap();
        Fixture { store, prefix, _rt: rt, _dir: dir }
    }

    impl Fixture {
        fn call(&self, request: RoomRequest) -> Answer {
            RoomAnswer::from_store(self.store.call(request.into()))
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            if let Ok(mut c) = Client::open("redis://127.0.0.1:6379/0").and_then(|c| c.get_connection()) {
                let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query(&mut c).unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
                }
            }
        }
    }

    const REDIS: &str = "redis://127.0.0.1:6379/0";

    fn append(f: &Fixture, room: &str, n: u64) {
        let message = format!("{{\"n\":{n}}}");
        assert_eq!(f.call(RoomRequest::AppendMessage { scope: "/".into(), room: room.into(), message }), Ok(RoomAnswer::Done));
    }

    fn history(f: &Fixture, room: &str, limit: u64) -> Vec<String> {
        match f.call(RoomRequest::LoadHistory { scope: "/".into(), room: room.into(), limit }) {
            Ok(RoomAnswer::Messages(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn notifications(f: &Fixture, user: &str, limit: u64) -> Vec<(String, bool)> {
        match f.call(RoomRequest::LoadNotifications { user: user.into(), limit }) {
            Ok(RoomAnswer::Notifications(n)) => n,
            other => panic!("{other:?}"),
        }
    }

    fn put(f: &Fixture, user: &str, id: &str, text: &str) {
        let request = RoomRequest::PutNotification { user: user.into(), id: id.into(), notification: text.into() };
        assert_eq!(f.call(request), Ok(RoomAnswer::Done));
    }

    #[test]
    fn history_is_per_room_newest_n_oldest_first_and_trimmed() {
        let f = fixture("history", REDIS, 3, 0);
        for n in 0..5 {
            append(&f, "r", n);
        }
        append(&f, "other", 9);
        assert_eq!(history(&f, "r", 10), ["{\"n\":2}", "{\"n\":3}", "{\"n\":4}"], "the newest 3 kept");
        assert_eq!(history(&f, "r", 2), ["{\"n\":3}", "{\"n\":4}"]);
        assert!(history(&f, "r", 0).is_empty(), "a limit of 0 is nothing, not everything");
        assert_eq!(history(&f, "other", 10), ["{\"n\":9}"]);
        assert!(history(&f, "nobody", 10).is_empty());
    }

    #[test]
    fn notifications_keep_their_place_and_read_marks_newest_first() {
        let f = fixture("notes", REDIS, 10, 0);
        for id in ["a", "b", "c"] {
            put(&f, "u", id, &format!("note {id}"));
        }
        assert_eq!(f.call(RoomRequest::MarkRead { user: "u".into(), id: "a".into() }), Ok(RoomAnswer::Updated(1)));
        assert_eq!(f.call(RoomRequest::MarkRead { user: "u".into(), id: "zz".into() }), Ok(RoomAnswer::Updated(0)));
        // The same id again replaces it, keeping its place and read mark.
        put(&f, "u", "a", "note a again");
        let list = notifications(&f, "u", 10);
        let expect = [("note c", false), ("note b", false), ("note a again", true)];
        assert_eq!(list, expect.map(|(t, r)| (t.to_owned(), r)));
        assert_eq!(notifications(&f, "u", 1).len(), 1);
        assert_eq!(f.call(RoomRequest::MarkAllRead { user: "u".into() }), Ok(RoomAnswer::Updated(2)));
        assert!(notifications(&f, "u", 10).iter().all(|(_, read)| *read));
        assert!(notifications(&f, "someone else", 10).is_empty());
    }

    #[test]
    fn a_users_notifications_are_bounded() {
        let f = fixture("bound", REDIS, 10, 0);
        for i in 0..=NOTIFICATIONS_KEEP {
            put(&f, "u", &format!("n{i}"), "x");
        }
        assert_eq!(notifications(&f, "u", NOTIFICATIONS_KEEP + 10).len() as u64, NOTIFICATIONS_KEEP);
        assert_eq!(f.call(RoomRequest::MarkRead { user: "u".into(), id: "n0".into() }), Ok(RoomAnswer::Updated(0)), "the oldest went");
    }

    #[test]
    fn documents_stay_in_the_nodes_own_store() {
        let f = fixture("docs", REDIS, 10, 0);
        let save = RoomRequest::SaveDocument { scope: "/".into(), doc: "d".into(), content: "text".into(), version: 3 };
        assert_eq!(f.call(save), Ok(RoomAnswer::Done));
        let load = RoomRequest::LoadDocument { scope: "/".into(), doc: "d".into() };
        assert_eq!(f.call(load), Ok(RoomAnswer::Document(Some(("text".into(), 3)))));
        let mut c = Client::open(REDIS).unwrap().get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:doc*", f.prefix)).query(&mut c).unwrap();
        assert!(keys.is_empty(), "{keys:?}");
    }

    #[test]
    fn without_redis_or_without_the_replicas_asked_for_a_write_fails_and_is_never_acked() {
        let away = fixture("away", "redis://127.0.0.1:1/0", 10, 0);
        let answer = away.call(RoomRequest::AppendMessage { scope: "/".into(), room: "r".into(), message: "{}".into() });
        assert!(answer.is_err(), "{answer:?}");
        // The local Redis has no replicas: a write that must reach one fails, a read does not.
        let f = fixture("wait", REDIS, 10, 1);
        let answer = f.call(RoomRequest::AppendMessage { scope: "/".into(), room: "r".into(), message: "{}".into() });
        assert!(matches!(&answer, Err(e) if e.contains("replicas")), "{answer:?}");
        assert_eq!(history(&f, "r", 10).len(), 1, "(Redis has it; the ack said it is not safe yet)");
    }
}
