//! Collaborative documents: joining, edits transformed to the head and stored before they
//! are announced, cursors and selections, leaving.

use super::docs::{Document, EditError};
use super::ot::Delta;
use super::validate::{self, AppError};
use super::{doc_room, invalid, reply_error, Member, Outcome, Pending, RoomService};
use crate::socketio::{Io, Message, SocketId, Target};
use crate::store::{StoreAnswer, StoreRequest};
use crate::time::Instant;
use serde_json::{json, Value};

/// Ops per delta a client may send.
const MAX_DELTA_OPS: usize = 10_000;

/// A `join-document` waiting for the document (its ack id, if it asked for one).
type Waiter = (SocketId, Option<u64>);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum DocState {
    Loading(Vec<Waiter>),
    Ready(DocEntry),
}

impl DocState {
    /// The text, once loaded.
    #[must_use]
    pub fn text(&self) -> Option<String> {
        match self {
            DocState::Ready(e) => Some(e.doc.text()),
            DocState::Loading(_) => None,
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DocEntry {
    doc: Document,
    /// Edits applied here but not yet confirmed by the store. A join waits until there are
    /// none, so the state it gets matches the edits it will hear about.
    unsaved: usize,
    waiting: Vec<Waiter>,
}

#[cfg(any(test, fuzzing))]
impl DocState {
    pub(super) fn check_bounds(&self) -> Result<(), String> {
        let waiting = match self {
            DocState::Loading(w) => w,
            DocState::Ready(e) => {
                e.doc.check_bounds()?;
                &e.waiting
            }
        };
        if super::has_duplicates(waiting.iter().map(|(s, _)| s)) {
            return Err("a socket waits twice to join".into());
        }
        Ok(())
    }
}

/// An applied edit waiting for the store before it is announced and acked.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingSave {
    nsp: String,
    doc: String,
    #[serde(with = "crate::snapshot::json")]
    delta: Value,
    version: u64,
    socket: SocketId,
    #[serde(with = "crate::snapshot::json")]
    author: Value,
    ack: Option<u64>,
}

impl PendingSave {
    pub(super) fn socket(&self) -> &SocketId {
        &self.socket
    }
}

/// Emits to everyone in a document but the sender.
fn to_others_in_doc(io: &mut Io, member: &Member, doc: &str, socket: &SocketId, msg: &Message, now: Instant) {
    io.emit(&Target::all(&member.nsp).to(doc_room(doc)).except_socket(socket), msg, now);
}

/// A document id: the bare string, or `{docId}`.
fn doc_id(arg: Option<&Value>) -> Result<String, AppError> {
    match arg {
        Some(Value::Object(o)) => validate::text(o.get("docId"), "docId", 1, validate::MAX_ROOM),
        other => validate::text(other, "docId", 1, validate::MAX_ROOM),
    }
}

impl RoomService {
    fn doc_entry(&mut self, nsp: &str, doc: &str) -> Option<&mut DocEntry> {
        match self.scope(nsp).docs.get_mut(doc) {
            Some(DocState::Ready(e)) => Some(e),
            _ => None,
        }
    }

    /// `join-document` (docId): the state to the joiner, the joiner to the others.
    pub(super) fn on_join_document(
        &mut self,
        io: &mut Io,
        socket: &SocketId,
        arg: Option<&Value>,
        ack: Option<u64>,
        now: Instant,
    ) -> Outcome {
        let doc = doc_id(arg).map_err(invalid)?;
        let Some(member) = self.members.get_mut(socket) else { return Ok(()) };
        if !member.docs.contains(&doc) && !io.join(socket, &doc_room(&doc)) {
            return Err(invalid(AppError::validation("Too many rooms")));
        }
        member.docs.insert(doc.clone());
        let nsp = member.nsp.clone();
        match self.scope(&nsp).docs.get_mut(&doc) {
            Some(DocState::Ready(e)) if e.unsaved == 0 => self.send_document_state(io, socket, &nsp, &doc, ack, now),
            // One wait per socket: repeating the join while the store is slow must not
            // queue without bound; the repeat is refused, the first join still completes.
            Some(DocState::Ready(DocEntry { waiting: w, .. }) | DocState::Loading(w)) => {
                if w.iter().any(|(s, _)| s == socket) {
                    return Err(invalid(AppError::validation("Already joining this document")));
                }
                w.push((socket.clone(), ack));
            }
            None => {
                self.scope(&nsp).docs.insert(doc.clone(), DocState::Loading(vec![(socket.clone(), ack)]));
                let id = io.store(StoreRequest::LoadDocument { scope: nsp.clone(), doc: doc.clone() });
                self.pending.insert(id, Pending::LoadDocument { nsp, doc });
            }
        }
        Ok(())
    }

    pub(super) fn document_loaded(&mut self, io: &mut Io, nsp: &str, doc: &str, answer: StoreAnswer, now: Instant) {
        let (text, version) = match answer {
            StoreAnswer::Document(Some((text, version))) => (text, version),
            StoreAnswer::Document(None) => (String::new(), 0),
            _ => {
                // The store failed: tell the waiting joiners, forget the attempt.
                if let Some(DocState::Loading(waiting)) = self.scope(nsp).docs.remove(doc) {
                    for (socket, ack) in waiting {
                        if let Some(m) = self.members.get_mut(&socket) {
                            m.docs.remove(doc);
                            io.leave(&socket, &doc_room(doc));
                            reply_error(io, &socket, ack, &AppError::internal("Document could not be loaded"), now);
                        }
                    }
                }
                return;
            }
        };
        let document = Document::new(&text, version, self.config.doc_log_limit, self.config.max_doc_len);
        let entry = DocEntry { doc: document, unsaved: 0, waiting: Vec::new() };
        let waiting = match self.scope(nsp).docs.insert(doc.to_owned(), DocState::Ready(entry)) {
            Some(DocState::Loading(w)) => w,
            _ => Vec::new(),
        };
        self.flush_joins(io, nsp, doc, waiting, now);
    }

    fn flush_joins(&mut self, io: &mut Io, nsp: &str, doc: &str, waiting: Vec<Waiter>, now: Instant) {
        for (socket, ack) in waiting {
            if self.members.get(&socket).is_some_and(|m| m.docs.contains(doc)) {
                self.send_document_state(io, &socket, nsp, doc, ack, now);
            }
        }
        self.evict_document(io, nsp, doc);
    }

    fn send_document_state(
        &mut self,
        io: &mut Io,
        socket: &SocketId,
        nsp: &str,
        doc: &str,
        ack: Option<u64>,
        now: Instant,
    ) {
        let Some(user) = self.members.get(socket).map(|m| m.user.to_json()) else { return };
        let members = &self.members;
        let Some(DocState::Ready(entry)) = self.scopes.get_mut(nsp).and_then(|s| s.docs.get_mut(doc)) else { return };
        entry.doc.set_cursor(socket, 0);
        let cursors: Vec<Value> = entry
            .doc
            .cursors()
            .iter()
            .filter_map(|(sid, pos)| {
                let user = members.get(sid)?.user.to_json();
                Some(json!([sid.as_str(), {"user": user, "position": pos}]))
            })
            .collect();
        let state = json!({"content": entry.doc.text(), "version": entry.doc.version(), "cursors": cursors});
        io.emit_to(socket, &Message::new("document-state", vec![state.clone()]), now);
        let others = Target::all(nsp).to(doc_room(doc)).except_socket(socket);
        io.emit(
            &others,
            &Message::new("user-joined-document", vec![json!({"socketId": socket.as_str(), "user": user})]),
            now,
        );
        super::ack(io, socket, ack, state);
    }

    /// `text-change {docId, delta, version}`.
    pub(super) fn on_text_change(
        &mut self,
        io: &mut Io,
        socket: &SocketId,
        member: &Member,
        arg: Option<&Value>,
        ack: Option<u64>,
        now: Instant,
    ) -> Outcome {
        let obj = validate::object(arg).map_err(invalid)?;
        let doc = validate::text(obj.get("docId"), "docId", 1, validate::MAX_ROOM).map_err(invalid)?;
        let base = validate::count(obj.get("version"), "version").map_err(invalid)?;
        let delta = obj.get("delta").ok_or_else(|| invalid(AppError::validation("delta is required")))?;
        let delta = Delta::from_json(delta, MAX_DELTA_OPS).map_err(|e| invalid(AppError::validation(e.to_string())))?;
        if !member.docs.contains(&doc) || self.doc_entry(&member.nsp, &doc).is_none() {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, false, now)?;
        self.begin_write(socket)?;
        let Some(entry) = self.doc_entry(&member.nsp, &doc) else { return Ok(()) };
        let edited = entry.doc.edit(&delta, base);
        if edited.is_err() {
            self.end_write(socket);
        }
        let Some(entry) = self.doc_entry(&member.nsp, &doc) else { return Ok(()) };
        let (delta, version) = edited.map_err(|e| {
            let code = match e {
                EditError::Stale(_) => "STALE_VERSION",
                EditError::TooLarge(_) => "PAYLOAD_TOO_LARGE",
                EditError::Delta(_) | EditError::FutureVersion(_) => "VALIDATION",
            };
            invalid(AppError::new(code, e.to_string()))
        })?;
        entry.unsaved += 1;
        let content = entry.doc.text();
        let id = io.store(StoreRequest::SaveDocument { scope: member.nsp.clone(), doc: doc.clone(), content, version });
        let save = PendingSave {
            nsp: member.nsp.clone(),
            doc,
            delta: delta.to_json(),
            version,
            socket: socket.clone(),
            author: member.user.to_json(),
            ack,
        };
        self.pending.insert(id, Pending::SaveDocument(save));
        Ok(())
    }

    /// An edit was saved (or not): announce it either way, since later edits were already
    /// transformed over it; only the author's ack says whether it is durable.
    pub(super) fn document_saved(&mut self, io: &mut Io, p: PendingSave, answer: &StoreAnswer, now: Instant) {
        let others = Target::all(&p.nsp).to(doc_room(&p.doc)).except_socket(&p.socket);
        let change = json!({"delta": p.delta, "author": p.author, "version": p.version});
        io.emit(&others, &Message::new("text-change", vec![change]), now);
        if let StoreAnswer::Failed(_) = answer {
            if io.is_connected(&p.socket) {
                reply_error(io, &p.socket, p.ack, &AppError::internal("Edit could not be stored"), now);
            }
        } else {
            super::ack(io, &p.socket, p.ack, json!({"version": p.version}));
        }
        let Some(entry) = self.doc_entry(&p.nsp, &p.doc) else { return };
        entry.unsaved = entry.unsaved.saturating_sub(1);
        if entry.unsaved == 0 {
            let waiting = std::mem::take(&mut entry.waiting);
            self.flush_joins(io, &p.nsp, &p.doc, waiting, now);
        }
    }

    /// `cursor-move {docId, position}`.
    pub(super) fn on_cursor_move(
        &mut self,
        io: &mut Io,
        socket: &SocketId,
        member: &Member,
        arg: Option<&Value>,
        now: Instant,
    ) -> Outcome {
        let obj = validate::object(arg).map_err(invalid)?;
        let doc = validate::text(obj.get("docId"), "docId", 1, validate::MAX_ROOM).map_err(invalid)?;
        let position = validate::count(obj.get("position"), "position").map_err(invalid)?;
        if !member.docs.contains(&doc) || self.doc_entry(&member.nsp, &doc).is_none() {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, true, now)?;
        let Some(entry) = self.doc_entry(&member.nsp, &doc) else { return Ok(()) };
        let position = entry.doc.set_cursor(socket, usize::try_from(position).unwrap_or(usize::MAX));
        let update = json!({"socketId": socket.as_str(), "user": member.user.to_json(), "position": position});
        to_others_in_doc(io, member, &doc, socket, &Message::new("cursor-update", vec![update]), now);
        Ok(())
    }

    /// `selection-change {docId, selection}`.
    pub(super) fn on_selection_change(
        &mut self,
        io: &mut Io,
        socket: &SocketId,
        member: &Member,
        arg: Option<&Value>,
        now: Instant,
    ) -> Outcome {
        let obj = validate::object(arg).map_err(invalid)?;
        let doc = validate::text(obj.get("docId"), "docId", 1, validate::MAX_ROOM).map_err(invalid)?;
        let selection = obj.get("selection").cloned().unwrap_or(Value::Null);
        if !matches!(selection, Value::Object(_) | Value::Null) {
            return Err(invalid(AppError::validation("selection must be an object or null")));
        }
        if !member.docs.contains(&doc) {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, true, now)?;
        let update = json!({"socketId": socket.as_str(), "user": member.user.to_json(), "selection": selection});
        to_others_in_doc(io, member, &doc, socket, &Message::new("selection-update", vec![update]), now);
        Ok(())
    }

    /// `leave-document` (docId).
    pub(super) fn on_leave_document(
        &mut self,
        io: &mut Io,
        socket: &SocketId,
        arg: Option<&Value>,
        ack: Option<u64>,
        now: Instant,
    ) -> Outcome {
        let doc = doc_id(arg).map_err(invalid)?;
        let Some(member) = self.members.get(socket) else { return Ok(()) };
        if !member.docs.contains(&doc) {
            return Err(invalid(AppError::not_in_room()));
        }
        let nsp = member.nsp.clone();
        self.drop_from_document(io, socket, &nsp, &doc, now);
        super::ack(io, socket, ack, json!({"success": true}));
        Ok(())
    }

    /// Takes a socket out of a document: its cursor goes, the others hear of it.
    pub(super) fn drop_from_document(&mut self, io: &mut Io, socket: &SocketId, nsp: &str, doc: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(socket) {
            m.docs.remove(doc);
        }
        io.leave(socket, &doc_room(doc));
        if let Some(entry) = self.doc_entry(nsp, doc) {
            entry.doc.remove_cursor(socket);
        }
        let left = json!({"socketId": socket.as_str()});
        io.emit(&Target::all(nsp).to(doc_room(doc)), &Message::new("user-left-document", vec![left]), now);
        self.evict_document(io, nsp, doc);
    }

    /// Forgets a document nobody has open and nothing waits on; the store has it.
    fn evict_document(&mut self, io: &Io, nsp: &str, doc: &str) {
        let idle =
            matches!(self.scope(nsp).docs.get(doc), Some(DocState::Ready(e)) if e.unsaved == 0 && e.waiting.is_empty());
        if idle && io.sockets_in(nsp, &[&doc_room(doc)]).is_empty() {
            self.scope(nsp).docs.remove(doc);
        }
    }
}
