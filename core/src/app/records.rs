//! The room service's storage records: what it asks the store to keep and load, and the
//! answers it expects. They cross the core's contract encoded ([`crate::store::Record`]),
//! so a new record changes this file, the room service and the stores that serve it (the
//! SQLite store, the in-memory test store), not the contract or the component's interface.
//!
//! JSON travels as text: the store keeps what clients see, and hands it back unchanged.

use crate::store::{Record, StoreAnswer, StoreRequest};

/// What the room service asks the store to do. `scope` is the Socket.IO namespace: rooms
/// and documents of `/` and `/chat` are separate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoomRequest {
    /// Appends a chat message (its JSON as clients see it) to a room's history. Answer:
    /// `Done`.
    AppendMessage { scope: String, room: String, message: String },
    /// The newest `limit` messages of a room, oldest first. Answer: `Messages`.
    LoadHistory { scope: String, room: String, limit: u64 },
    /// Stores a notification (its JSON) for a user under its `id`; the same id again
    /// replaces it and keeps its place and read mark. Answer: `Done`.
    PutNotification { user: String, id: String, notification: String },
    /// The newest `limit` notifications of a user, newest first, with their read marks.
    /// Answer: `Notifications`.
    LoadNotifications { user: String, limit: u64 },
    /// Marks one notification read. Answer: `Updated(n)`, 0 if there is no such one.
    MarkRead { user: String, id: String },
    /// Marks all of a user's notifications read. Answer: `Updated(n)`, the ones that were
    /// unread.
    MarkAllRead { user: String },
    /// Saves a document's text at a version. Answer: `Done`.
    SaveDocument { scope: String, doc: String, content: String, version: u64 },
    /// Loads a document. Answer: `Document`.
    LoadDocument { scope: String, doc: String },
}

/// The store's answer to a [`RoomRequest`] that was done (a failure is the contract's
/// [`StoreAnswer::Failed`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RoomAnswer {
    Done,
    Updated(u64),
    /// Messages as JSON text, oldest first.
    Messages(Vec<String>),
    /// Notifications as JSON text with their read marks, newest first.
    Notifications(Vec<(String, bool)>),
    /// The text and version of a document, or `None` if it was never saved.
    Document(Option<(String, u64)>),
}

/// An answer as the room service sees it: the store's answer, or why there is none.
pub type Answer = Result<RoomAnswer, String>;

impl Record for RoomRequest {}
impl Record for RoomAnswer {}

impl RoomRequest {
    /// Whether the request changes what is stored (a write), rather than reads it.
    #[must_use]
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            RoomRequest::LoadHistory { .. } | RoomRequest::LoadNotifications { .. } | RoomRequest::LoadDocument { .. }
        )
    }

    /// The request's kind, for logs (records themselves are never logged).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            RoomRequest::AppendMessage { .. } => "append-message",
            RoomRequest::LoadHistory { .. } => "load-history",
            RoomRequest::PutNotification { .. } => "put-notification",
            RoomRequest::LoadNotifications { .. } => "load-notifications",
            RoomRequest::MarkRead { .. } => "mark-read",
            RoomRequest::MarkAllRead { .. } => "mark-all-read",
            RoomRequest::SaveDocument { .. } => "save-document",
            RoomRequest::LoadDocument { .. } => "load-document",
        }
    }

    /// The room service's request inside a contract request (stores use this).
    pub fn from_store(request: &StoreRequest) -> Result<RoomRequest, String> {
        RoomRequest::decode(&request.0)
    }
}

impl From<RoomRequest> for StoreRequest {
    fn from(request: RoomRequest) -> StoreRequest {
        StoreRequest(request.encode())
    }
}

impl From<RoomAnswer> for StoreAnswer {
    fn from(answer: RoomAnswer) -> StoreAnswer {
        StoreAnswer::Done(answer.encode())
    }
}

impl RoomAnswer {
    /// What the store answered: the answer, or why there is none (the store failed, or
    /// sent bytes that are no room-service answer).
    pub fn from_store(answer: StoreAnswer) -> Answer {
        match answer {
            StoreAnswer::Done(bytes) => RoomAnswer::decode(&bytes),
            StoreAnswer::Failed(why) => Err(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cross_the_contract_unchanged() {
        let requests = [
            RoomRequest::AppendMessage { scope: "/".into(), room: "r".into(), message: r#"{"id":"m1"}"#.into() },
            RoomRequest::LoadHistory { scope: "/chat".into(), room: "r".into(), limit: 50 },
            RoomRequest::PutNotification { user: "u".into(), id: "n1".into(), notification: "{}".into() },
            RoomRequest::LoadNotifications { user: "u".into(), limit: 50 },
            RoomRequest::MarkRead { user: "u".into(), id: "n1".into() },
            RoomRequest::MarkAllRead { user: "u".into() },
            RoomRequest::SaveDocument { scope: "/".into(), doc: "d".into(), content: "hi".into(), version: 7 },
            RoomRequest::LoadDocument { scope: "/".into(), doc: "d".into() },
        ];
        for request in requests {
            let wire = StoreRequest::from(request.clone());
            assert_eq!(RoomRequest::from_store(&wire), Ok(request));
        }
        let answers = [
            RoomAnswer::Done,
            RoomAnswer::Updated(3),
            RoomAnswer::Messages(vec!["{}".into()]),
            RoomAnswer::Notifications(vec![("{}".into(), true)]),
            RoomAnswer::Document(Some(("text".into(), 2))),
            RoomAnswer::Document(None),
        ];
        for answer in answers {
            assert_eq!(RoomAnswer::from_store(StoreAnswer::from(answer.clone())), Ok(answer));
        }
    }

    #[test]
    fn a_failure_or_foreign_bytes_are_no_answer() {
        assert_eq!(RoomAnswer::from_store(StoreAnswer::Failed("down".into())), Err("down".into()));
        assert!(RoomAnswer::from_store(StoreAnswer::Done(bytes::Bytes::from_static(&[0xff, 0xff]))).is_err());
        assert!(RoomRequest::from_store(&StoreRequest(bytes::Bytes::new())).is_err());
    }
}
