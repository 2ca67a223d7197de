//! [`Io`]: the handle an application acts through inside its callbacks, borrowed for one
//! call (as quinn-proto hands out a `SendStream<'a>`).
//!
//! It reads the Socket.IO layer ([`Sockets`], through `Deref`: rooms, namespaces, the
//! configuration, the clock) and offers the application's actions: emit, ack, join,
//! leave, disconnect, store, respond. Driving the layer (feeding it input, firing its
//! timers) is not among them: that is [`crate::Service`]'s alone.

use super::api::{Message, SocketId, Target};
use super::recovery::Stored;
use super::{encode_event, DisconnectReason, Sockets, Timer};
use crate::cluster::{Broadcast, NodeId, QueryId};
use crate::codec::payload::OutPacket;
use crate::codec::socketio::{self as codec, PacketType};
use crate::host::{ConnId, StoreId, StoreRequest};
use crate::outbox::Outbox;
use crate::time::Instant;
use bytes::Bytes;
use serde_json::Value;

/// The application's handle for one callback: the layer it acts on and the outbox its
/// effects go to.
pub struct Io<'a> {
    layer: &'a mut Sockets,
    out: &'a mut Outbox,
}

impl std::ops::Deref for Io<'_> {
    type Target = Sockets;

    /// What the application may read: [`Sockets`]' getters.
    fn deref(&self) -> &Sockets {
        self.layer
    }
}

impl<'a> Io<'a> {
    pub(crate) fn new(layer: &'a mut Sockets, out: &'a mut Outbox) -> Self {
        Io { layer, out }
    }

    /// A fresh random id (20 url-safe characters) from the seeded stream, for records the
    /// application creates (message and notification ids).
    pub fn random_id(&mut self) -> String {
        self.layer.rng.id()
    }

    /// Asks the host's store to do something (an application record, see
    /// [`crate::store`]); the answer comes to `Handler::on_store` with the id returned here.
    pub fn store(&mut self, request: impl Into<StoreRequest>) -> StoreId {
        self.out.store(request.into())
    }

    /// Answers an HTTP API request with a JSON body.
    pub fn respond(&mut self, conn: ConnId, status: u16, body: &Value) {
        self.out.respond_json(conn, status, body.to_string());
    }

    /// Emits an event to every socket `target` selects, encoding it once.
    pub fn emit(&mut self, target: &Target, msg: &Message, now: Instant) {
        let layer = &mut *self.layer;
        let offset = layer.recovery.enabled().then(|| layer.recovery.take_offset());
        let offset_text = offset.map(|o| o.to_string());
        let packets = encode_event(&target.nsp, None, msg, offset_text.as_deref());
        let (sockets, engine, out) = (&layer.sockets, &mut layer.engine, &mut *self.out);
        super::visit_targets(&layer.namespaces, target, |id| {
            if let Some(s) = sockets.get(id) {
                for p in &packets {
                    engine.send(out, s.session, p.clone());
                }
            }
        });
        if layer.cluster.is_some() && !target.local {
            // Rooms that are local sockets' own ids stay here; anything else may have
            // members on other nodes. The other nodes get the packets without this node's
            // recovery offset (offsets are per node).
            let remote: Vec<String> = target
                .rooms
                .iter()
                .filter(|r| !layer.sockets.contains_key(&SocketId::from(r.as_str())))
                .cloned()
                .collect();
            if target.rooms.is_empty() || !remote.is_empty() {
                let bare;
                let sent = if offset.is_some() {
                    bare = encode_event(&target.nsp, None, msg, None);
                    &bare
                } else {
                    &packets
                };
                let broadcast = Broadcast { rooms: remote, ..crossing(target, sent) };
                if let Some(cluster) = layer.cluster.as_mut() {
                    cluster.publish(broadcast);
                }
            }
        }
        if let Some(offset) = offset {
            let stored = Stored {
                offset,
                at: now,
                nsp: target.nsp.clone(),
                rooms: target.rooms.clone(),
                except_rooms: target.except_rooms.clone(),
                except_socket: target.except_socket.clone(),
                packets,
            };
            layer.recovery.store(stored, now);
        }
    }

    /// In cluster mode: sends `payload` to the applications of the other nodes that have
    /// a member of `room` in `nsp` (their `on_cluster_message`), after this step's
    /// broadcasts to that room, in order. Nothing without a cluster.
    pub fn cluster_to_room(&mut self, nsp: &str, room: &str, payload: Bytes) {
        if let Some(c) = self.layer.cluster.as_mut() {
            let channel = c.names().room(nsp, room);
            c.publish_app(channel, payload);
        }
    }

    /// In cluster mode: asks every other node's application a question (their
    /// `on_cluster_question`); the answers come to `on_cluster_answer`, and
    /// `on_cluster_query_done` says when it is done and which nodes did not answer. `None`
    /// without a cluster.
    pub fn ask_cluster(&mut self, question: Bytes, now: Instant) -> Option<QueryId> {
        self.layer.cluster.as_mut().map(|c| c.ask(question, now))
    }

    /// In cluster mode: sends `payload` to every other live node's application.
    pub fn cluster_to_all(&mut self, payload: Bytes) {
        if let Some(c) = self.layer.cluster.as_mut() {
            let channel = c.names().nodes();
            c.publish_app(channel, payload);
        }
    }

    /// In cluster mode: sends `payload` to one node's application.
    pub fn cluster_to_node(&mut self, node: &NodeId, payload: Bytes) {
        if let Some(c) = self.layer.cluster.as_mut() {
            let channel = c.names().node(node);
            c.publish_app(channel, payload);
        }
    }

    /// In cluster mode: emits to the sockets `target` selects on one other node only (a
    /// socket there by its id, say); nothing is delivered here.
    pub fn emit_on_node(&mut self, node: &NodeId, target: &Target, msg: &Message) {
        let packets = encode_event(&target.nsp, None, msg, None);
        let broadcast = crossing(target, &packets);
        if let Some(c) = self.layer.cluster.as_mut() {
            c.publish_to_node(node, broadcast);
        }
    }

    /// Emits to one socket (to its own-id room, so recovery can replay it).
    pub fn emit_to(&mut self, socket: &SocketId, msg: &Message, now: Instant) {
        let Some(nsp) = self.nsp_of(socket).map(str::to_owned) else { return };
        self.emit(&Target::all(&nsp).to(socket.as_str()), msg, now);
    }

    /// Emits to one socket and waits for its ack; the handler's `on_ack` gets the answer,
    /// a timeout after `timeout_ms`, or a disconnect. Returns the tag `on_ack` will carry,
    /// or `None` if the socket is gone or has too many acks pending.
    pub fn emit_with_ack(&mut self, socket: &SocketId, msg: &Message, timeout_ms: u64, now: Instant) -> Option<u64> {
        let layer = &mut *self.layer;
        let s = layer.sockets.get_mut(socket)?;
        if s.pending_acks.len() >= layer.config.max_pending_acks {
            return None;
        }
        let id = s.next_ack;
        s.next_ack += 1;
        s.pending_acks.insert(id);
        layer.timers.set(Timer::Ack(s.seq, id), now.plus(timeout_ms));
        let session = s.session;
        for p in encode_event(&s.nsp, Some(id), msg, None) {
            layer.engine.send(self.out, session, p);
        }
        Some(id)
    }

    /// Answers a client's ack request.
    pub fn ack(&mut self, socket: &SocketId, ack_id: u64, args: &[Value], binary: &[Bytes]) {
        let layer = &mut *self.layer;
        let Some(s) = layer.sockets.get(socket) else { return };
        let text = codec::encode_args(PacketType::Ack, &s.nsp, Some(ack_id), None, args, None, binary.len());
        layer.engine.send(self.out, s.session, OutPacket::Text(Bytes::from(text)));
        for b in binary {
            layer.engine.send(self.out, s.session, OutPacket::Binary(b.clone()));
        }
    }

    /// Puts a socket in a room; false if the socket is gone or at its room limit.
    pub fn join(&mut self, socket: &SocketId, room: &str) -> bool {
        self.layer.join(socket, room)
    }

    pub fn leave(&mut self, socket: &SocketId, room: &str) {
        self.layer.leave(socket, room);
    }

    /// Disconnects a socket from its namespace (`server namespace disconnect`): the client
    /// is told with a DISCONNECT packet; the engine session stays.
    pub fn disconnect(&mut self, socket: &SocketId, now: Instant) {
        let layer = &mut *self.layer;
        if let Some(s) = layer.sockets.get(socket) {
            let text = codec::encode(PacketType::Disconnect, &s.nsp, None, None, 0);
            layer.engine.send(self.out, s.session, OutPacket::Text(Bytes::from(text)));
            layer.remove_socket(socket, DisconnectReason::ServerNamespaceDisconnect, now);
        }
    }

    /// Closes the whole connection a socket rides on (every namespace of it).
    pub fn close_connection(&mut self, socket: &SocketId) {
        if let Some(session) = self.layer.sockets.get(socket).map(|s| s.session) {
            self.layer.close_session(self.out, session);
        }
    }
}

/// A broadcast to `target` as it crosses to other nodes, with its encoded packets.
fn crossing(target: &Target, packets: &[OutPacket]) -> Broadcast {
    let (text, binary) = split_packets(packets);
    Broadcast {
        seq: 0,
        nsp: target.nsp.clone(),
        rooms: target.rooms.clone(),
        except_rooms: target.except_rooms.clone(),
        except_socket: target.except_socket.as_ref().map(|s| s.as_str().to_owned()),
        volatile: false,
        text,
        binary,
    }
}

/// The text packet and the attachments of an encoded event.
fn split_packets(packets: &[OutPacket]) -> (Bytes, Vec<Bytes>) {
    let mut text = Bytes::new();
    let mut binary = Vec::new();
    for p in packets {
        match p {
            OutPacket::Text(t) => text = t.clone(),
            OutPacket::Binary(b) => binary.push(b.clone()),
        }
    }
    (text, binary)
}
