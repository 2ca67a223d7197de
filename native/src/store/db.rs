//! The SQLite database behind the embedded store: schema, pragmas, and how each of the
//! room service's records ([`RoomRequest`]) is carried out. Synchronous; [`super::Store`] runs it on its own thread.
//!
//! One file, `parlor.db`, in WAL mode with `synchronous = FULL`: a commit returns only once
//! the WAL is on disk, so an answer that says "stored" survives a crash or a power loss
//! (`NORMAL` would be crash-safe but could lose the last commits on power loss).
//!
//! Requests run in batches (group commit): every request queued at the time runs inside one
//! transaction, each under its own savepoint, so one that fails is undone alone and answers
//! `Failed`, and the batch costs one fsync instead of one per request. No answer is given
//! before the batch's commit returned; if the commit fails, every request of the batch
//! answers `Failed` (nothing of it was changed).

use parlor_core::app::records::{Answer, RoomAnswer, RoomRequest};
use parlor_core::host::{StoreAnswer, StoreRequest};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file inside the data directory.
pub const DB_FILE: &str = "parlor.db";

/// The schema this build writes; kept in `PRAGMA user_version`. A database from a newer
/// build is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 1;

/// Version 1. `seq` columns are AUTOINCREMENT: never reused, even after pruning, so they
/// are the send (or creation) order across restarts.
const SCHEMA_V1: &str = "
CREATE TABLE messages (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    room  TEXT NOT NULL,
    json  TEXT NOT NULL
);
CREATE INDEX messages_by_room ON messages (scope, room, seq);
CREATE TABLE notifications (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    id   TEXT NOT NULL,
    json TEXT NOT NULL,
    read INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user, id)
);
CREATE INDEX notifications_by_user ON notifications (user, seq);
CREATE TABLE documents (
    scope   TEXT NOT NULL,
    doc     TEXT NOT NULL,
    content TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (scope, doc)
) WITHOUT ROWID;
";

/// Bytes the WAL file keeps after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// How long a statement waits for a lock held by another connection (another process on
/// the same file) before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open database.
pub struct Db {
    conn: Connection,
    /// Messages kept per room; older ones are deleted when a new one is appended.
    history_keep: usize,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).field("history_keep", &self.history_keep).finish()
    }
}

/// Why a request failed (the message goes into `StoreAnswer::Failed`).
#[derive(Debug)]
struct Error(String);

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error(format!("sqlite: {e}"))
    }
}

type Result<T> = std::result::Result<T, Error>;

impl Db {
    /// Opens (creating if needed) `dir/parlor.db`, creating `dir` too (mode 0700 on Unix:
    /// it holds users' messages).
    pub fn open(dir: &Path, history_keep: usize) -> anyhow::Result<Db> {
        use anyhow::Context;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let db = Db { conn, history_keep: history_keep.max(1), path };
        db.setup().with_context(|| format!("cannot set up {}", db.path.display()))?;
        Ok(db)
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn setup(&self) -> anyhow::Result<()> {
        let c = &self.conn;
        c.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = c.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            anyhow::bail!("the database refused WAL mode (journal_mode is {mode})");
        }
        c.pragma_update(None, "synchronous", "FULL")?;
        // The WAL is reused after each checkpoint; past this size it is cut back.
        c.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        let version: i64 = c.pragma_query_value(None, "user_version", |row| row.get(0))?;
        match version {
            0 => {
                // A new file (or one with no tables of ours): create the schema at once.
                let tx = c.unchecked_transaction()?;
                tx.execute_batch(SCHEMA_V1)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                tx.commit()?;
            }
            SCHEMA_VERSION => {}
            newer => anyhow::bail!("schema version {newer} is newer than this build's ({SCHEMA_VERSION})"),
        }
        Ok(())
    }

    /// Carries out one request in its own transaction (tests and tools).
    pub fn execute(&mut self, request: &RoomRequest) -> Answer {
        let answer = self.execute_batch(&[request.clone().into()]).pop();
        RoomAnswer::from_store(answer.unwrap_or(StoreAnswer::Failed("no answer".into())))
    }

    /// Carries out `requests` in order in one transaction (see the module docs) and
    /// returns one answer per request, in the same order.
    pub fn execute_batch(&mut self, requests: &[StoreRequest]) -> Vec<StoreAnswer> {
        let fail_all = |e: &dyn std::fmt::Display| -> Vec<StoreAnswer> {
            tracing::error!(error = %e, requests = requests.len(), "store transaction failed");
            requests.iter().map(|_| StoreAnswer::Failed(format!("sqlite: {e}"))).collect()
        };
        let keep = self.history_keep;
        let mut tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return fail_all(&e),
        };
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            // Bytes that are no room-service record (a component built for another
            // application) fail alone and change nothing.
            let request = match RoomRequest::from_store(request) {
                Ok(request) => request,
                Err(why) => {
                    tracing::error!(error = %why, "store request not understood");
                    answers.push(StoreAnswer::Failed(why));
                    continue;
                }
            };
            let request = &request;
            let answer = match tx.savepoint() {
                Ok(mut sp) => match run(&sp, request, keep) {
                    Ok(answer) => match sp.commit() {
                        Ok(()) => answer.into(),
                        Err(e) => failed(request, &Error::from(e)),
                    },
                    Err(e) => {
                        // Undo what this request did; the rest of the batch stands.
                        let _ = sp.rollback();
                        failed(request, &e)
                    }
                },
                Err(e) => failed(request, &Error::from(e)),
            };
            answers.push(answer);
        }
        match tx.commit() {
            Ok(()) => answers,
            Err(e) => fail_all(&e),
        }
    }
}

fn failed(request: &RoomRequest, e: &Error) -> StoreAnswer {
    tracing::error!(error = %e.0, request = request.kind(), "store request failed");
    StoreAnswer::Failed(e.0.clone())
}

/// A `LIMIT` value: SQLite takes an i64.
fn limit(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Notifications kept per user (clients are shown the newest 50).
pub const NOTIFICATIONS_KEEP: u64 = 1000;

fn run(c: &Connection, request: &RoomRequest, history_keep: usize) -> Result<RoomAnswer> {
    match request {
        RoomRequest::AppendMessage { scope, room, message } => {
            c.prepare_cached("INSERT INTO messages (scope, room, json) VALUES (?1, ?2, ?3)")?.execute(params![
                scope, room, message
            ])?;
            // Keep the newest `history_keep`: delete everything at or before the first
            // one past them (a walk of `history_keep` index entries, measured cheaper than
            // keeping a row count per room).
            c.prepare_cached(
                "DELETE FROM messages WHERE scope = ?1 AND room = ?2 AND seq <= (
                     SELECT seq FROM messages WHERE scope = ?1 AND room = ?2
                     ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
            )?
            .execute(params![scope, room, limit(history_keep as u64)])?;
            Ok(RoomAnswer::Done)
        }
        RoomRequest::LoadHistory { scope, room, limit: n } => {
            let mut stmt = c.prepare_cached(
                "SELECT json FROM messages WHERE scope = ?1 AND room = ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![scope, room, limit(*n)], |row| row.get::<_, String>(0))?;
            let mut records = rows.collect::<rusqlite::Result<Vec<String>>>()?;
            records.reverse();
            Ok(RoomAnswer::Messages(records))
        }
        RoomRequest::PutNotification { user, id, notification } => {
            if id.is_empty() {
                return Err(Error("notification has no id".into()));
            }
            // The same id again (a retried put) replaces the record but keeps its place
            // and its read mark.
            c.prepare_cached(
                "INSERT INTO notifications (user, id, json) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user, id) DO UPDATE SET json = excluded.json",
            )?
            .execute(params![user, id, notification])?;
            // A user's notifications are bounded too: the oldest beyond NOTIFICATIONS_KEEP go.
            c.prepare_cached(
                "DELETE FROM notifications WHERE user = ?1 AND seq <= (
                     SELECT seq FROM notifications WHERE user = ?1
                     ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![user, limit(NOTIFICATIONS_KEEP)])?;
            Ok(RoomAnswer::Done)
        }
        RoomRequest::LoadNotifications { user, limit: n } => {
            let mut stmt =
                c.prepare_cached("SELECT json, read FROM notifications WHERE user = ?1 ORDER BY seq DESC LIMIT ?2")?;
            let rows =
                stmt.query_map(params![user, limit(*n)], |row| Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?)))?;
            Ok(RoomAnswer::Notifications(rows.collect::<rusqlite::Result<_>>()?))
        }
        RoomRequest::MarkRead { user, id } => {
            // Counts the notification if it exists, read before or not: 0 means "no such one".
            let n = c
                .prepare_cached("UPDATE notifications SET read = 1 WHERE user = ?1 AND id = ?2")?
                .execute(params![user, id])?;
            Ok(RoomAnswer::Updated(n as u64))
        }
        RoomRequest::MarkAllRead { user } => {
            // Counts the ones that were unread.
            let n = c
                .prepare_cached("UPDATE notifications SET read = 1 WHERE user = ?1 AND read = 0")?
                .execute(params![user])?;
            Ok(RoomAnswer::Updated(n as u64))
        }
        RoomRequest::SaveDocument { scope, doc, content, version } => {
            let version = i64::try_from(*version).map_err(|_| Error("document version out of range".into()))?;
            c.prepare_cached(
                "INSERT INTO documents (scope, doc, content, version) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (scope, doc) DO UPDATE SET content = excluded.content, version = excluded.version",
            )?
            .execute(params![scope, doc, content, version])?;
            Ok(RoomAnswer::Done)
        }
        RoomRequest::LoadDocument { scope, doc } => {
            let row = c
                .prepare_cached("SELECT content, version FROM documents WHERE scope = ?1 AND doc = ?2")?
                .query_row(params![scope, doc], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
                .optional()?;
            match row {
                None => Ok(RoomAnswer::Document(None)),
                Some((content, version)) => {
                    let version = u64::try_from(version).map_err(|_| Error("negative document version".into()))?;
                    Ok(RoomAnswer::Document(Some((content, version))))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_dir::TestDir;
    use serde_json::{json, Value};

    fn append(db: &mut Db, scope: &str, room: &str, n: u64) {
        let message = json!({"id": format!("m{n}"), "n": n}).to_string();
        let answer = db.execute(&RoomRequest::AppendMessage { scope: scope.into(), room: room.into(), message });
        assert_eq!(answer, Ok(RoomAnswer::Done));
    }

    fn history(db: &mut Db, scope: &str, room: &str, limit: u64) -> Vec<u64> {
        match db.execute(&RoomRequest::LoadHistory { scope: scope.into(), room: room.into(), limit }) {
            Ok(RoomAnswer::Messages(r)) => r.iter().map(|m| parse(m)["n"].as_u64().unwrap()).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn parse(json: &str) -> Value {
        serde_json::from_str(json).unwrap()
    }

    /// A user's notifications, newest first, with their read marks.
    fn notifications(db: &mut Db, user: &str, limit: u64) -> Vec<(Value, bool)> {
        match db.execute(&RoomRequest::LoadNotifications { user: user.into(), limit }) {
            Ok(RoomAnswer::Notifications(r)) => r.iter().map(|(json, read)| (parse(json), *read)).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn put(db: &mut Db, user: &str, id: &str) {
        let answer = db.execute(&RoomRequest::PutNotification {
            user: user.into(),
            id: id.into(),
            notification: json!({"id": id, "title": "t", "message": id, "read": false, "createdAt": 1}).to_string(),
        });
        assert_eq!(answer, Ok(RoomAnswer::Done));
    }

    #[test]
    fn creates_the_directory_in_wal_mode_with_full_sync_and_the_schema() {
        let dir = TestDir::new("db-create");
        let data = dir.path().join("nested/data");
        let db = Db::open(&data, 10).unwrap();
        assert!(data.join(DB_FILE).is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let mode: String = db.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = db.conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
        assert_eq!(sync, 2, "FULL");
        let version: i64 = db.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn history_is_per_scope_and_room_newest_n_oldest_first() {
        let dir = TestDir::new("db-history");
        let mut db = Db::open(dir.path(), 100).unwrap();
        for n in 1..=5 {
            append(&mut db, "/", "a", n);
        }
        append(&mut db, "/chat", "a", 99);
        append(&mut db, "/", "b", 98);
        assert_eq!(history(&mut db, "/", "a", 3), vec![3, 4, 5]);
        assert_eq!(history(&mut db, "/", "a", 50), vec![1, 2, 3, 4, 5]);
        assert_eq!(history(&mut db, "/chat", "a", 50), vec![99]);
        assert_eq!(history(&mut db, "/", "b", 50), vec![98]);
        assert_eq!(history(&mut db, "/", "none", 50), Vec::<u64>::new());
        assert_eq!(history(&mut db, "/", "a", 0), Vec::<u64>::new());
    }

    #[test]
    fn append_prunes_each_room_to_history_keep() {
        let dir = TestDir::new("db-prune");
        let mut db = Db::open(dir.path(), 3).unwrap();
        for n in 1..=10 {
            append(&mut db, "/", "a", n);
        }
        append(&mut db, "/", "b", 100);
        assert_eq!(history(&mut db, "/", "a", 50), vec![8, 9, 10]);
        assert_eq!(history(&mut db, "/", "b", 50), vec![100]);
        let rows: i64 = db.conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 4, "pruned rows are gone, not hidden");
    }

    #[test]
    fn a_smaller_history_keep_after_a_restart_prunes_on_the_next_append() {
        let dir = TestDir::new("db-prune-restart");
        {
            let mut db = Db::open(dir.path(), 5).unwrap();
            for n in 1..=10 {
                append(&mut db, "/", "a", n);
            }
            assert_eq!(history(&mut db, "/", "a", 50), vec![6, 7, 8, 9, 10]);
        }
        let mut db = Db::open(dir.path(), 3).unwrap();
        append(&mut db, "/", "a", 11);
        assert_eq!(history(&mut db, "/", "a", 50), vec![9, 10, 11]);
        append(&mut db, "/", "a", 12);
        assert_eq!(history(&mut db, "/", "a", 50), vec![10, 11, 12]);
        let rows: i64 = db.conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 3);
    }

    #[test]
    fn records_come_back_as_given() {
        let dir = TestDir::new("db-records");
        let mut db = Db::open(dir.path(), 10).unwrap();
        let message = json!({"id": "x", "content": "héllo 😀 \"quoted\"", "sender": {"id": "u", "username": "U"}, "timestamp": 1_700_000_000_000u64, "nested": [1, null, {"a": true}]});
        let text = message.to_string();
        assert_eq!(db.execute(&RoomRequest::AppendMessage { scope: "/".into(), room: "r".into(), message: text.clone() }), Ok(RoomAnswer::Done));
        assert_eq!(
            db.execute(&RoomRequest::LoadHistory { scope: "/".into(), room: "r".into(), limit: 1 }),
            Ok(RoomAnswer::Messages(vec![text]))
        );
    }

    #[test]
    fn notifications_newest_first_with_read_flags() {
        let dir = TestDir::new("db-notifications");
        let mut db = Db::open(dir.path(), 10).unwrap();
        for id in ["n1", "n2", "n3"] {
            put(&mut db, "alice", id);
        }
        put(&mut db, "bob", "n1");
        assert_eq!(
            db.execute(&RoomRequest::MarkRead { user: "alice".into(), id: "n2".into() }),
            Ok(RoomAnswer::Updated(1))
        );
        // Again: it exists, so 1; another user's id or an unknown one: 0.
        assert_eq!(
            db.execute(&RoomRequest::MarkRead { user: "alice".into(), id: "n2".into() }),
            Ok(RoomAnswer::Updated(1))
        );
        assert_eq!(
            db.execute(&RoomRequest::MarkRead { user: "carol".into(), id: "n1".into() }),
            Ok(RoomAnswer::Updated(0))
        );
        let list = notifications(&mut db, "alice", 50);
        let ids: Vec<&str> = list.iter().map(|(n, _)| n["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["n3", "n2", "n1"]);
        let read: Vec<bool> = list.iter().map(|(_, read)| *read).collect();
        assert_eq!(read, [false, true, false]);
        assert_eq!(list[0].0["title"], "t");
        assert_eq!(notifications(&mut db, "alice", 2).len(), 2);

        assert_eq!(db.execute(&RoomRequest::MarkAllRead { user: "alice".into() }), Ok(RoomAnswer::Updated(2)));
        assert_eq!(db.execute(&RoomRequest::MarkAllRead { user: "alice".into() }), Ok(RoomAnswer::Updated(0)));
        assert!(notifications(&mut db, "alice", 50).iter().all(|(_, read)| *read));
        assert!(!notifications(&mut db, "bob", 50)[0].1, "other users untouched");
    }

    #[test]
    fn a_repeated_notification_keeps_its_place_and_read_mark() {
        let dir = TestDir::new("db-notification-again");
        let mut db = Db::open(dir.path(), 10).unwrap();
        put(&mut db, "a", "n1");
        put(&mut db, "a", "n2");
        assert_eq!(db.execute(&RoomRequest::MarkRead { user: "a".into(), id: "n1".into() }), Ok(RoomAnswer::Updated(1)));
        put(&mut db, "a", "n1");
        let list = notifications(&mut db, "a", 10);
        assert_eq!(list.len(), 2);
        assert_eq!((list[1].0["id"].as_str(), list[1].1), (Some("n1"), true));
    }

    #[test]
    fn notifications_are_bounded_per_user() {
        let dir = TestDir::new("db-notification-bound");
        let mut db = Db::open(dir.path(), 10).unwrap();
        for i in 0..NOTIFICATIONS_KEEP + 5 {
            put(&mut db, "a", &format!("n{i}"));
        }
        put(&mut db, "b", "other");
        let list = notifications(&mut db, "a", NOTIFICATIONS_KEEP + 100);
        assert_eq!(list.len() as u64, NOTIFICATIONS_KEEP);
        assert_eq!(list.last().unwrap().0["id"], "n5", "the oldest went");
        assert_eq!(notifications(&mut db, "b", 10).len(), 1);
    }

    #[test]
    fn a_notification_without_id_fails_and_changes_nothing() {
        let dir = TestDir::new("db-notification-noid");
        let mut db = Db::open(dir.path(), 10).unwrap();
        let answer = db.execute(&RoomRequest::PutNotification {
            user: "a".into(),
            id: String::new(),
            notification: json!({"title": "x"}).to_string(),
        });
        assert!(answer.is_err(), "{answer:?}");
        assert!(notifications(&mut db, "a", 10).is_empty());
    }

    #[test]
    fn documents_save_and_load_per_scope() {
        let dir = TestDir::new("db-docs");
        let mut db = Db::open(dir.path(), 10).unwrap();
        let load =
            |db: &mut Db, scope: &str| db.execute(&RoomRequest::LoadDocument { scope: scope.into(), doc: "d".into() });
        assert_eq!(load(&mut db, "/"), Ok(RoomAnswer::Document(None)));
        let save = |db: &mut Db, scope: &str, content: &str, version| {
            db.execute(&RoomRequest::SaveDocument {
                scope: scope.into(),
                doc: "d".into(),
                content: content.into(),
                version,
            })
        };
        assert_eq!(save(&mut db, "/", "hello", 1), Ok(RoomAnswer::Done));
        assert_eq!(save(&mut db, "/", "hello 😀", 2), Ok(RoomAnswer::Done));
        assert_eq!(save(&mut db, "/chat", "other", 7), Ok(RoomAnswer::Done));
        assert_eq!(load(&mut db, "/"), Ok(RoomAnswer::Document(Some(("hello 😀".into(), 2)))));
        assert_eq!(load(&mut db, "/chat"), Ok(RoomAnswer::Document(Some(("other".into(), 7)))));
        assert!(save(&mut db, "/", "x", u64::MAX).is_err());
        assert_eq!(
            load(&mut db, "/"),
            Ok(RoomAnswer::Document(Some(("hello 😀".into(), 2)))),
            "failed save changed nothing"
        );
    }

    #[test]
    fn a_batch_runs_in_order_and_a_failing_request_fails_alone() {
        let dir = TestDir::new("db-batch");
        let mut db = Db::open(dir.path(), 10).unwrap();
        let msg = |n: u64| {
            RoomRequest::AppendMessage { scope: "/".into(), room: "r".into(), message: json!({"n": n}).to_string() }
        };
        let load = || RoomRequest::LoadHistory { scope: "/".into(), room: "r".into(), limit: 10 };
        let no_id = RoomRequest::PutNotification { user: "u".into(), id: String::new(), notification: "{}".into() };
        let requests = [msg(1), load(), no_id, msg(2), load()].map(StoreRequest::from);
        let mut batch = requests.to_vec();
        batch.insert(3, StoreRequest(bytes::Bytes::from_static(b"not a record")));
        let answers: Vec<Answer> = db.execute_batch(&batch).into_iter().map(RoomAnswer::from_store).collect();
        let messages = |ns: &[u64]| Ok(RoomAnswer::Messages(ns.iter().map(|n| json!({"n": n}).to_string()).collect()));
        assert_eq!(answers[0], Ok(RoomAnswer::Done));
        assert_eq!(answers[1], messages(&[1]), "sees the earlier write");
        assert!(answers[2].is_err(), "a notification without an id");
        assert!(answers[3].is_err(), "bytes that are no record");
        assert_eq!(answers[4], Ok(RoomAnswer::Done));
        assert_eq!(answers[5], messages(&[1, 2]));
    }

    #[test]
    fn data_survives_closing_and_reopening() {
        let dir = TestDir::new("db-reopen");
        {
            let mut db = Db::open(dir.path(), 3).unwrap();
            for n in 1..=4 {
                append(&mut db, "/", "a", n);
            }
            put(&mut db, "u", "n1");
            put(&mut db, "u", "n2");
            assert_eq!(db.execute(&RoomRequest::MarkRead { user: "u".into(), id: "n1".into() }), Ok(RoomAnswer::Updated(1)));
            let saved = db.execute(&RoomRequest::SaveDocument {
                scope: "/".into(),
                doc: "d".into(),
                content: "text".into(),
                version: 5,
            });
            assert_eq!(saved, Ok(RoomAnswer::Done));
        }
        let mut db = Db::open(dir.path(), 3).unwrap();
        assert_eq!(history(&mut db, "/", "a", 50), vec![2, 3, 4]);
        append(&mut db, "/", "a", 5);
        assert_eq!(history(&mut db, "/", "a", 50), vec![3, 4, 5], "send order continues after a restart");
        let list = notifications(&mut db, "u", 10);
        assert_eq!(
            list.iter().map(|(n, read)| (n["id"].as_str().unwrap(), *read)).collect::<Vec<_>>(),
            [("n2", false), ("n1", true)]
        );
        assert_eq!(
            db.execute(&RoomRequest::LoadDocument { scope: "/".into(), doc: "d".into() }),
            Ok(RoomAnswer::Document(Some(("text".into(), 5))))
        );
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = TestDir::new("db-newer");
        {
            let db = Db::open(dir.path(), 3).unwrap();
            db.conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        }
        let err = Db::open(dir.path(), 3).unwrap_err();
        assert!(format!("{err:#}").contains("newer"), "{err:#}");
    }

    #[test]
    fn an_unusable_data_directory_is_a_clear_error() {
        let dir = TestDir::new("db-bad-dir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = Db::open(&file, 3).unwrap_err();
        assert!(format!("{err:#}").contains("data directory"), "{err:#}");
    }
}
