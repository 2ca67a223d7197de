//! Work waiting for the store: what each request was for, and each socket's writes in
//! flight (capped, so that a client cannot queue unbounded work for the store; reads are
//! bounded by the rooms it may join).

use super::records::RoomRequest;
use super::validate::{AppError, ErrorCode};
use super::{chat, notify};
use crate::socketio::{Io, SocketId};
use crate::store::StoreId;
use std::collections::HashMap;

/// Writes one socket may have waiting for the store.
pub const MAX_IN_FLIGHT: usize = 256;

/// What a store request was for: where its answer goes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) enum Pending {
    Message(chat::PendingMessage),
    History {
        nsp: String,
        room: String,
    },
    NotificationList {
        socket: SocketId,
    },
    PutNotification(notify::PendingPut),
    /// `all`: read-all, where nothing to mark is still a success.
    MarkRead {
        socket: SocketId,
        ack: Option<u64>,
        all: bool,
    },
    LoadDocument {
        nsp: String,
        doc: String,
    },
    /// A batch of edits to a document (the batch itself is the document's).
    SaveDocument {
        nsp: String,
        doc: String,
    },
}

impl Pending {
    /// The socket whose write this is, counted in flight until the answer (document
    /// edits are counted per edit by the document instead).
    fn writer(&self) -> Option<&SocketId> {
        match self {
            Pending::Message(p) => Some(p.socket()),
            Pending::MarkRead { socket, .. } => Some(socket),
            _ => None,
        }
    }
}

/// Requests waiting for the store, and writes in flight per socket.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Writes {
    pending: HashMap<StoreId, Pending>,
    in_flight: HashMap<SocketId, usize>,
}

impl Writes {
    /// Counts a write the socket is about to make; refused past [`MAX_IN_FLIGHT`].
    pub(super) fn begin(&mut self, socket: &SocketId) -> Result<(), AppError> {
        let n = self.in_flight.entry(socket.clone()).or_default();
        if *n >= MAX_IN_FLIGHT {
            return Err(AppError::new(ErrorCode::RateLimited, "Too many requests waiting for the store"));
        }
        *n += 1;
        Ok(())
    }

    /// One of the socket's writes is over (answered, or refused before it was made).
    pub(super) fn end(&mut self, socket: &SocketId) {
        if let Some(n) = self.in_flight.get_mut(socket) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(socket);
            }
        }
    }

    /// Asks the store, and keeps what the answer is for.
    pub(super) fn ask(&mut self, io: &mut Io<'_>, request: RoomRequest, then: Pending) {
        let id = io.store(request);
        self.pending.insert(id, then);
    }

    /// The store answered `id`: what it was for (the write it ends is no longer in flight),
    /// or `None` for an answer nobody waits for.
    pub(super) fn answered(&mut self, id: StoreId) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        if let Some(socket) = pending.writer() {
            let socket = socket.clone();
            self.end(&socket);
        }
        Some(pending)
    }

    #[cfg(any(test, fuzzing))]
    /// Every socket's count is in 1..=MAX_IN_FLIGHT, and no more writes are counted than
    /// wait for the store (`edits`: document edits waiting, counted by their documents).
    pub(super) fn check_bounds(&self, edits: usize) -> Result<(), String> {
        for (socket, n) in &self.in_flight {
            if *n == 0 || *n > MAX_IN_FLIGHT {
                return Err(format!("{socket} has {n} writes waiting for the store (at most {MAX_IN_FLIGHT})"));
            }
        }
        let writes: usize = self.in_flight.values().sum();
        let waiting = edits + self.pending.values().filter(|p| p.writer().is_some()).count();
        if writes > waiting {
            return Err(format!("{writes} writes counted in flight, {waiting} waiting for the store"));
        }
        Ok(())
    }
}
