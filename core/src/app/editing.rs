//! Collaborative documents: joining, edits transformed to the head and stored before they
//! are announced, cursors and selections, leaving.
//!
//! An edit becomes part of a document only once the store has it. Edits are staged on top
//! of the document and saved in batches, one batch per document at a time: edits that come
//! while a batch is out wait, and are staged and saved together when it answers. A batch
//! the store confirms is committed, announced and acked; one it refuses is dropped (its
//! authors get an error, nobody hears of it, nothing saves it later). So what a joiner gets
//! is always the stored state, and the edits it hears about are exactly those after it.

use super::document::{Document, EditError, Staged};
use super::ot::Delta;
use super::records::{Answer, RoomAnswer, RoomRequest};
use super::validate::{self, AppError, ErrorCode};
use super::{doc_room, invalid, reply_error, EventCx, Limited, Member, Outcome, Pending, RoomService};
use crate::socketio::{Io, Message, SocketId, Sockets, Target};
use crate::time::Instant;
use serde_json::{json, Value};

/// Ops per delta a client may send.
const MAX_DELTA_OPS: usize = 10_000;

/// A `join-document` waiting for the document (its ack id, if it asked for one).
type Waiter = (SocketId, Option<u64>);

/// An edit as its author sent it, waiting for the batch in flight.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Edit {
    socket: SocketId,
    #[serde(with = "crate::snapshot::json")]
    author: Value,
    delta: Delta,
    base: u64,
    ack: Option<u64>,
}

/// A staged edit: what to announce and ack once its batch is stored.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StagedEdit {
    socket: SocketId,
    #[serde(with = "crate::snapshot::json")]
    author: Value,
    ack: Option<u64>,
    #[serde(with = "crate::snapshot::json")]
    delta: Value,
    version: u64,
}

/// The batch being stored.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Saving {
    staged: Staged,
    edits: Vec<StagedEdit>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum DocState {
    Loading(Vec<Waiter>),
    /// Boxed: an open document is much larger than one loading.
    Ready(Box<DocEntry>),
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
    /// What the store has.
    doc: Document,
    /// The batch out to the store, staged on top of `doc`.
    saving: Option<Saving>,
    /// Edits that came while `saving` was out, in order, and the bytes their deltas hold
    /// (bounded by the document's log budget: past it an edit is refused, not queued).
    queued: Vec<Edit>,
    queued_bytes: usize,
    /// Joins of sockets that have edits of their own waiting: each gets the state once its
    /// edits are stored (or refused), so that the state it gets includes them.
    waiting: Vec<Waiter>,
}

#[cfg(any(test, fuzzing))]
impl DocEntry {
    /// Writes of the document's that wait for the store (each counted as one write of its
    /// author's).
    pub(super) fn writes_waiting(&self) -> usize {
        self.saving.as_ref().map_or(0, |s| s.edits.len()) + self.queued.len()
    }

    pub(super) fn log_bytes(&self) -> usize {
        self.doc.log_bytes()
    }
}

impl DocEntry {
    /// Whether the socket has an edit of this document waiting for the store.
    fn has_edits_of(&self, socket: &SocketId) -> bool {
        self.saving.as_ref().is_some_and(|s| s.edits.iter().any(|e| &e.socket == socket))
            || self.queued.iter().any(|e| &e.socket == socket)
    }
}

#[cfg(any(test, fuzzing))]
impl DocState {
    pub(super) fn check_bounds(&self) -> Result<(), String> {
        let waiting = match self {
            DocState::Loading(w) => w,
            DocState::Ready(e) => &e.waiting,
        };
        if super::invariants::has_duplicates(waiting.iter().map(|(s, _)| s)) {
            return Err("a socket waits twice to join".into());
        }
        match self {
            DocState::Loading(_) => Ok(()),
            DocState::Ready(e) => {
                e.doc.check_bounds()?;
                let bytes: usize = e.queued.iter().map(|q| q.delta.weight()).sum();
                if bytes != e.queued_bytes {
                    return Err(format!("{bytes} bytes of edits queued, {} counted", e.queued_bytes));
                }
                if e.saving.is_none() && !e.queued.is_empty() {
                    return Err("edits queued behind no batch".into());
                }
                Ok(())
            }
        }
    }
}

/// Emits to everyone in a document but the sender.
fn to_others_in_doc(io: &mut Io<'_>, member: &Member, doc: &str, socket: &SocketId, msg: &Message, now: Instant) {
    io.emit(&doc_target(&member.nsp, doc).except_socket(socket), msg, now);
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

    /// Queues a join until the document can be sent; a socket waits once.
    fn wait_once(waiting: &mut Vec<Waiter>, socket: &SocketId, ack: Option<u64>) -> Outcome {
        if waiting.iter().any(|(s, _)| s == socket) {
            return Err(invalid(AppError::validation("Already joining this document")));
        }
        waiting.push((socket.clone(), ack));
        Ok(())
    }

    /// `join-document` (docId): the state to the joiner, the joiner to the others.
    pub(super) fn on_join_document(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, arg, ack, now) = (cx.socket, cx.arg(), cx.ack(), cx.now);
        let doc = doc_id(arg)?;
        let Some(member) = self.members.get_mut(socket) else { return Ok(()) };
        if !member.docs.contains(&doc) && !io.join(socket, &doc_room(&doc)) {
            return Err(invalid(AppError::validation("Too many rooms")));
        }
        member.docs.insert(doc.clone());
        let nsp = member.nsp.clone();
        match self.scope(&nsp).docs.get_mut(&doc) {
            Some(DocState::Ready(e)) if !e.has_edits_of(socket) => {
                self.send_document_state(io, socket, &nsp, &doc, ack, now);
            }
            // One wait per socket: repeating the join while the store is slow must not
            // queue without bound; the repeat is refused, the first join still completes.
            Some(DocState::Ready(e)) => Self::wait_once(&mut e.waiting, socket, ack)?,
            Some(DocState::Loading(w)) => Self::wait_once(w, socket, ack)?,
            None => {
                self.scope(&nsp).docs.insert(doc.clone(), DocState::Loading(vec![(socket.clone(), ack)]));
                let load = RoomRequest::LoadDocument { scope: nsp.clone(), doc: doc.clone() };
                self.writes.ask(io, load, Pending::LoadDocument { nsp, doc });
            }
        }
        Ok(())
    }

    pub(super) fn document_loaded(&mut self, io: &mut Io<'_>, nsp: &str, doc: &str, answer: Answer, now: Instant) {
        let (text, version) = match answer {
            Ok(RoomAnswer::Document(Some((text, version)))) => (text, version),
            Ok(RoomAnswer::Document(None)) => (String::new(), 0),
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
        let document = Document::new(&text, version, self.config.doc_limits());
        let entry = DocEntry { doc: document, saving: None, queued: Vec::new(), queued_bytes: 0, waiting: Vec::new() };
        let waiting = match self.scope(nsp).docs.insert(doc.to_owned(), DocState::Ready(Box::new(entry))) {
            Some(DocState::Loading(w)) => w,
            _ => Vec::new(),
        };
        self.flush_joins(io, nsp, doc, waiting, now);
    }

    fn flush_joins(&mut self, io: &mut Io<'_>, nsp: &str, doc: &str, waiting: Vec<Waiter>, now: Instant) {
        for (socket, ack) in waiting {
            if self.members.get(&socket).is_some_and(|m| m.docs.contains(doc)) {
                self.send_document_state(io, &socket, nsp, doc, ack, now);
            }
        }
        self.evict_document(io, nsp, doc);
    }

    fn send_document_state(
        &mut self,
        io: &mut Io<'_>,
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
        let version = entry.doc.version();
        let state = json!({"content": entry.doc.text(), "version": version, "cursors": cursors});
        // The state goes once: a large document sent twice (event and ack) would not fit
        // the joiner's outbound queue.
        io.emit_to(socket, &Message::new("document-state", vec![state]), now);
        let others = doc_target(nsp, doc).except_socket(socket);
        io.emit(
            &others,
            &Message::new("user-joined-document", vec![json!({"socketId": socket.as_str(), "user": user})]),
            now,
        );
        super::ack(io, socket, ack, json!({"success": true, "version": version}));
    }

    /// `text-change {docId, delta, version}`.
    pub(super) fn on_text_change(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, ack, now) = (cx.socket, cx.member, cx.arg(), cx.ack(), cx.now);
        let obj = validate::object(arg)?;
        let doc = validate::text(obj.get("docId"), "docId", 1, validate::MAX_ROOM)?;
        let base = validate::count(obj.get("version"), "version")?;
        let delta = obj.get("delta").ok_or_else(|| invalid(AppError::validation("delta is required")))?;
        let delta = Delta::from_json(delta, MAX_DELTA_OPS).map_err(|e| invalid(AppError::validation(e.to_string())))?;
        if !member.docs.contains(&doc) || self.doc_entry(&member.nsp, &doc).is_none() {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, Limited::Chat, now)?;
        let weight = delta.weight();
        let budget = self.config.doc_log_bytes;
        if self.doc_entry(&member.nsp, &doc).is_some_and(|e| e.saving.is_some() && e.queued_bytes + weight > budget) {
            return Err(invalid(AppError::new(ErrorCode::RateLimited, "Too many edits waiting for the store")));
        }
        self.begin_write(socket)?;
        let edit = Edit { socket: socket.clone(), author: member.user.to_json(), delta, base, ack };
        let Some(entry) = self.doc_entry(&member.nsp, &doc) else { return Ok(()) };
        if entry.saving.is_some() {
            entry.queued_bytes += weight;
            entry.queued.push(edit);
        } else {
            self.save_edits(io, &member.nsp, &doc, vec![edit], now);
        }
        Ok(())
    }

    /// Stages `edits` on the document and sends them to the store as one batch; an edit
    /// that cannot be staged is answered at once.
    fn save_edits(&mut self, io: &mut Io<'_>, nsp: &str, doc: &str, edits: Vec<Edit>, now: Instant) {
        let mut refused = Vec::new();
        let Some(entry) = self.doc_entry(nsp, doc) else { return };
        let mut staged = Staged::default();
        let mut batch = Vec::new();
        for e in edits {
            match entry.doc.stage(&mut staged, &e.delta, e.base) {
                Ok((delta, version)) => batch.push(StagedEdit {
                    socket: e.socket,
                    author: e.author,
                    ack: e.ack,
                    delta: delta.to_json(),
                    version,
                }),
                Err(err) => refused.push((e.socket, e.ack, err)),
            }
        }
        if let Some(last) = batch.last() {
            let version = last.version;
            let content = String::from_utf16_lossy(staged.text());
            entry.saving = Some(Saving { staged, edits: batch });
            let save = RoomRequest::SaveDocument { scope: nsp.to_owned(), doc: doc.to_owned(), content, version };
            self.writes.ask(io, save, Pending::SaveDocument { nsp: nsp.to_owned(), doc: doc.to_owned() });
        }
        for (socket, ack, err) in refused {
            self.writes.end(&socket);
            let code = match err {
                EditError::Stale(_) => ErrorCode::StaleVersion,
                EditError::TooLarge(_) => ErrorCode::PayloadTooLarge,
                EditError::Delta(_) | EditError::FutureVersion(_) => ErrorCode::Validation,
            };
            reply_error(io, &socket, ack, &AppError::new(code, err.to_string()), now);
        }
        self.evict_document(io, nsp, doc);
    }

    /// The store answered a batch: stored, it becomes part of the document and is announced
    /// and acked; refused, it is dropped and its authors hear so. Then the edits that waited
    /// go out as the next batch.
    pub(super) fn document_saved(&mut self, io: &mut Io<'_>, nsp: &str, doc: &str, answer: &Answer, now: Instant) {
        let total = self.doc_log_bytes;
        let budget = self.config.doc_log_total_bytes;
        let Some(entry) = self.doc_entry(nsp, doc) else { return };
        let Some(Saving { staged, edits }) = entry.saving.take() else { return };
        let stored = answer.is_ok();
        let mut total_after = total;
        if stored {
            // The log gives way when all documents' logs together would pass their budget.
            let before = entry.doc.log_bytes();
            let others = total - before;
            entry.doc.commit(staged, budget.saturating_sub(others));
            total_after = others + entry.doc.log_bytes();
        }
        let queued = std::mem::take(&mut entry.queued);
        entry.queued_bytes = 0;
        self.doc_log_bytes = total_after;
        for e in edits {
            self.writes.end(&e.socket);
            if stored {
                let others = doc_target(nsp, doc).except_socket(&e.socket);
                let change = json!({"delta": e.delta, "author": e.author, "version": e.version});
                io.emit(&others, &Message::new("text-change", vec![change]), now);
                super::ack(io, &e.socket, e.ack, json!({"version": e.version}));
            } else if io.is_connected(&e.socket) {
                reply_error(io, &e.socket, e.ack, &AppError::internal("Edit could not be stored"), now);
            }
        }
        if !queued.is_empty() {
            self.save_edits(io, nsp, doc, queued, now);
        }
        let Some(entry) = self.doc_entry(nsp, doc) else { return };
        let (ready, waiting) =
            std::mem::take(&mut entry.waiting).into_iter().partition(|(s, _)| !entry.has_edits_of(s));
        entry.waiting = waiting;
        self.flush_joins(io, nsp, doc, ready, now);
    }

    /// `cursor-move {docId, position}`.
    pub(super) fn on_cursor_move(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, now) = (cx.socket, cx.member, cx.arg(), cx.now);
        let obj = validate::object(arg)?;
        let doc = validate::text(obj.get("docId"), "docId", 1, validate::MAX_ROOM)?;
        let position = validate::count(obj.get("position"), "position")?;
        if !member.docs.contains(&doc) || self.doc_entry(&member.nsp, &doc).is_none() {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, Limited::Typing, now)?;
        let Some(entry) = self.doc_entry(&member.nsp, &doc) else { return Ok(()) };
        let position = entry.doc.set_cursor(socket, usize::try_from(position).unwrap_or(usize::MAX));
        let update = json!({"socketId": socket.as_str(), "user": member.user.to_json(), "position": position});
        to_others_in_doc(io, member, &doc, socket, &Message::new("cursor-update", vec![update]), now);
        Ok(())
    }

    /// `selection-change {docId, selection}`.
    pub(super) fn on_selection_change(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, now) = (cx.socket, cx.member, cx.arg(), cx.now);
        let obj = validate::object(arg)?;
        let doc = validate::text(obj.get("docId"), "docId", 1, validate::MAX_ROOM)?;
        let selection = obj.get("selection").cloned().unwrap_or(Value::Null);
        if !matches!(selection, Value::Object(_) | Value::Null) {
            return Err(invalid(AppError::validation("selection must be an object or null")));
        }
        if !member.docs.contains(&doc) {
            return Err(invalid(AppError::not_in_room()));
        }
        self.limit(member, Limited::Typing, now)?;
        let update = json!({"socketId": socket.as_str(), "user": member.user.to_json(), "selection": selection});
        to_others_in_doc(io, member, &doc, socket, &Message::new("selection-update", vec![update]), now);
        Ok(())
    }

    /// `leave-document` (docId).
    pub(super) fn on_leave_document(&mut self, io: &mut Io<'_>, cx: &EventCx<'_>) -> Outcome {
        let (socket, member, arg, ack, now) = (cx.socket, cx.member, cx.arg(), cx.ack(), cx.now);
        let doc = doc_id(arg)?;
        if !member.docs.contains(&doc) {
            return Err(invalid(AppError::not_in_room()));
        }
        self.drop_from_document(io, socket, &member.nsp, &doc, now);
        super::ack(io, socket, ack, json!({"success": true}));
        Ok(())
    }

    /// Takes a socket out of a document: its cursor goes, the others hear of it.
    pub(super) fn drop_from_document(
        &mut self,
        io: &mut Io<'_>,
        socket: &SocketId,
        nsp: &str,
        doc: &str,
        now: Instant,
    ) {
        if let Some(m) = self.members.get_mut(socket) {
            m.docs.remove(doc);
        }
        io.leave(socket, &doc_room(doc));
        if let Some(entry) = self.doc_entry(nsp, doc) {
            entry.doc.remove_cursor(socket);
        }
        let left = json!({"socketId": socket.as_str()});
        io.emit(&doc_target(nsp, doc), &Message::new("user-left-document", vec![left]), now);
        self.evict_document(io, nsp, doc);
    }

    /// Forgets a document nobody has open and nothing waits on; the store has it.
    fn evict_document(&mut self, io: &Sockets, nsp: &str, doc: &str) {
        let idle = matches!(self.scope(nsp).docs.get(doc), Some(DocState::Ready(e)) if e.saving.is_none() && e.waiting.is_empty());
        if idle && io.sockets_in(nsp, &[&doc_room(doc)]).is_empty() {
            if let Some(DocState::Ready(e)) = self.scope(nsp).docs.remove(doc) {
                self.doc_log_bytes -= e.doc.log_bytes();
            }
        }
    }
}

/// A document's editors on this node. Each node keeps its own copy of a document for now,
/// so its events stay on the node: another node's versions would not apply to this copy
/// (one authoritative node per document, by a lease, is the cluster issue's next part).
fn doc_target(nsp: &str, doc: &str) -> Target {
    Target::all(nsp).to(doc_room(doc)).local()
}
