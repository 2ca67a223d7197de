//! Storage as an effect: the records the core keeps durable, the requests it makes of the
//! host's store, and the answers it waits for.
//!
//! The host must carry out requests in the order the core emits them and answer each one
//! (in any order is allowed, but in order is what the embedded store does). The core sends
//! an ack that says "stored" only after the answer came back `Done`/`Updated`.

use serde_json::Value;

/// Names one request; the answer carries it back.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct StoreId(pub u64);

/// What the core asks the store to do. `scope` is the Socket.IO namespace: rooms and
/// documents of `/` and `/chat` are separate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreRequest {
    /// Appends a chat message (its JSON as clients see it) to a room's history.
    AppendMessage { scope: String, room: String, message: Value },
    /// The newest `limit` messages of a room, oldest first. Answer: `Records`.
    LoadHistory { scope: String, room: String, limit: usize },
    /// Stores a notification for a user. Answer: `Done`.
    PutNotification { user: String, notification: Value },
    /// The newest `limit` notifications of a user, newest first, with their `read` flags.
    /// Answer: `Records`.
    LoadNotifications { user: String, limit: usize },
    /// Marks one notification read. Answer: `Updated(n)`, 0 if there is no such one.
    MarkRead { user: String, id: String },
    /// Marks all of a user's notifications read. Answer: `Updated(n)`.
    MarkAllRead { user: String },
    /// Saves a document's text at a version. Answer: `Done`.
    SaveDocument { scope: String, doc: String, content: String, version: u64 },
    /// Loads a document. Answer: `Document`.
    LoadDocument { scope: String, doc: String },
}

/// The store's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAnswer {
    Done,
    Updated(u64),
    Records(Vec<Value>),
    /// The text and version of a document, or `None` if it was never saved.
    Document(Option<(String, u64)>),
    /// The store could not do it; nothing was changed.
    Failed(String),
}
