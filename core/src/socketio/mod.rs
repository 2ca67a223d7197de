//! Socket.IO v5 over the engine: namespaces and sockets, the connect/auth hook, rooms and
//! broadcast targets, acks both ways, binary reassembly, connection state recovery; and
//! [`Io`], the handle applications act through. [`Sockets`] is the layer itself.

pub mod api;
#[cfg(any(test, fuzzing))]
mod invariants;
mod io;
pub mod recovery;

pub use io::Io;

pub use api::{AckReply, ConnectRefusal, DisconnectReason, Event, Handler, Message, SocketId, Target};

use crate::cluster::node::Received;
use crate::cluster::{Broadcast, ClusterNode, NodeId, QueryId};
use crate::codec::payload::OutPacket;
use crate::codec::socketio::{self as codec, Packet, PacketType};
use crate::config::Config;
use crate::engineio::{self, CloseReason, Engine, SessionId};
use crate::host::ClusterInput;
use crate::idhash::{IdMap, IdSet};
use crate::outbox::Outbox;
use crate::rng::Rng;
use crate::service::Metrics;
use crate::time::{Instant, Timers};
use bytes::Bytes;
use recovery::{Recovery, Saved};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};

/// One Engine.IO session seen from Socket.IO: its sockets by namespace, and a binary
/// packet waiting for its attachments.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Client {
    sockets: NspSockets,
    /// Boxed: rare, and an idle client should not carry a packet's worth of room.
    partial: Option<Box<(Packet, Vec<Bytes>)>>,
    /// Closed by the server: what it sent after (the rest of a polling POST, say) is
    /// dropped unread, not decoded and refused one by one.
    #[serde(default)]
    closing: bool,
}

/// A client's sockets by namespace: a handful at most (`max_namespaces_per_connection`),
/// so a list scanned in order, not a hash table (whose smallest allocation holds four
/// entries). Snapshots encode it exactly as they encoded the map it replaces.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct NspSockets(Vec<(String, SocketId)>);

impl NspSockets {
    fn get(&self, nsp: &str) -> Option<&SocketId> {
        self.0.iter().find(|(n, _)| n == nsp).map(|(_, id)| id)
    }

    fn insert(&mut self, nsp: String, id: SocketId) {
        match self.0.iter_mut().find(|(n, _)| *n == nsp) {
            Some(slot) => slot.1 = id,
            None => self.0.push((nsp, id)),
        }
    }

    fn remove(&mut self, nsp: &str) {
        self.0.retain(|(n, _)| n != nsp);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn into_values(self) -> impl Iterator<Item = SocketId> {
        self.0.into_iter().map(|(_, id)| id)
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Socket {
    nsp: String,
    session: SessionId,
    rooms: HashSet<String>,
    pid: Option<String>,
    /// Small number naming this socket in timer keys.
    seq: u64,
    next_ack: u64,
    pending_acks: HashSet<u64>,
    base_offset: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Namespace {
    sockets: IdSet<SocketId>,
    /// Keyed by client-chosen names (std's hasher); members are server-chosen ids.
    rooms: HashMap<String, IdSet<SocketId>>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
enum Timer {
    /// The client must CONNECT to a namespace by then.
    Connect(SessionId),
    /// A server-to-client ack expires: (socket seq, ack id).
    Ack(u64, u64),
    /// The attachments of the session's binary packet are due by then.
    Attachments(SessionId),
}

/// A callback owed to the handler, queued because the handler was busy when it arose.
#[derive(Debug)]
enum Notice {
    Disconnected {
        id: SocketId,
        nsp: String,
        reason: DisconnectReason,
    },
    Ack {
        id: SocketId,
        tag: u64,
        reply: AckReply,
    },
    /// What another node's application sent: bytes, a question, an answer (never a
    /// broadcast: those are delivered at once).
    FromNode(Received),
    /// Another node is gone (expired, stopped, or restarted as a new incarnation).
    NodeGone(NodeId),
    /// The link to the cluster is up again.
    ClusterUp,
    /// One of this node's questions is done; the nodes that did not answer.
    QueryDone {
        query: QueryId,
        missing: Vec<NodeId>,
    },
}

/// The Socket.IO layer of one node. Applications read it (its getters are public) and act
/// on it through an [`Io`] handle; only [`crate::Service`] drives it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Sockets {
    config: Config,
    engine: Engine,
    rng: Rng,
    // Boxed values: a hash table keeps spare slots, and an idle node holds one of these
    // per connection, so a spare slot should cost a pointer, not a whole socket.
    clients: IdMap<SessionId, Box<Client>>,
    sockets: IdMap<SocketId, Box<Socket>>,
    by_seq: IdMap<u64, SocketId>,
    next_seq: u64,
    namespaces: HashMap<String, Namespace>,
    timers: Timers<Timer>,
    #[serde(skip)]
    notices: VecDeque<Notice>,
    recovery: Recovery,
    disconnects: HashMap<DisconnectReason, u64>,
    /// The wall clock as last given: (unix ms, at this `now`).
    wall: Option<(u64, Instant)>,
    /// Bytes of attachments held in incomplete binary packets, over all clients.
    partial_bytes: usize,
    /// This node's part in a cluster (cluster mode only).
    #[serde(default)]
    cluster: Option<ClusterNode>,
}

impl Sockets {
    #[must_use]
    pub(crate) fn new(config: Config, engine: Engine, mut rng: Rng) -> Self {
        let recovery = Recovery::new(
            config.recovery_window_ms,
            config.recovery_max_packets,
            config.recovery_max_bytes,
            config.recovery_max_sessions,
        );
        // Drawn only in cluster mode, so a node alone keeps the stream it always had.
        let cluster = config.cluster.as_ref().and_then(|c| ClusterNode::new(c, rng.next_u64()));
        Sockets {
            config,
            engine,
            rng,
            clients: IdMap::default(),
            sockets: IdMap::default(),
            by_seq: IdMap::default(),
            next_seq: 0,
            namespaces: HashMap::new(),
            timers: Timers::default(),
            notices: VecDeque::new(),
            recovery,
            disconnects: HashMap::new(),
            wall: None,
            partial_bytes: 0,
            cluster,
        }
    }

    // ---- getters ----

    #[must_use]
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The namespace of a connected socket.
    #[must_use]
    pub fn nsp_of(&self, socket: &SocketId) -> Option<&str> {
        self.sockets.get(socket).map(|s| s.nsp.as_str())
    }

    #[must_use]
    pub fn is_connected(&self, socket: &SocketId) -> bool {
        self.sockets.contains_key(socket)
    }

    /// The rooms of a socket, sorted (its own-id room included unless it left it).
    #[must_use]
    pub fn rooms_of(&self, socket: &SocketId) -> Vec<String> {
        let mut rooms: Vec<String> =
            self.sockets.get(socket).map(|s| s.rooms.iter().cloned().collect()).unwrap_or_default();
        rooms.sort();
        rooms
    }

    /// The sockets of `nsp` in any of `rooms` (all of the namespace if `rooms` is empty),
    /// sorted, each once.
    #[must_use]
    pub fn sockets_in(&self, nsp: &str, rooms: &[&str]) -> Vec<SocketId> {
        let target =
            Target { nsp: nsp.to_owned(), rooms: rooms.iter().map(|r| (*r).to_owned()).collect(), ..Target::default() };
        let mut v = self.targets(&target);
        v.sort();
        v
    }

    /// The engine's `sid` of the connection a socket rides on.
    #[must_use]
    pub fn connection_of(&self, socket: &SocketId) -> Option<&str> {
        self.sockets.get(socket).and_then(|s| self.engine.sid(s.session))
    }

    #[must_use]
    pub fn metrics(&self) -> Metrics {
        let mut namespaces: Vec<(String, usize, usize)> = self
            .namespaces
            .iter()
            .map(|(name, ns)| {
                let rooms = ns.rooms.keys().filter(|r| !ns.sockets.contains(r.as_str())).count();
                (name.clone(), ns.sockets.len(), rooms)
            })
            .collect();
        namespaces.sort();
        let disconnects =
            DisconnectReason::ALL.iter().map(|r| (r.as_str(), self.disconnects.get(r).copied().unwrap_or(0))).collect();
        Metrics {
            connections: self.engine.session_count(),
            namespaces,
            traffic: self.engine.traffic(),
            disconnects,
            cluster: self.cluster.as_ref().map(ClusterNode::stats),
        }
    }

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timers.next(), self.cluster.as_ref().and_then(ClusterNode::poll_timeout)].into_iter().flatten().min()
    }

    /// This node's part in the cluster, in cluster mode.
    #[must_use]
    pub fn cluster(&self) -> Option<&ClusterNode> {
        self.cluster.as_ref()
    }

    /// Milliseconds since the Unix epoch at `now`, counted on from the last
    /// `Input::WallClock` (0 before the host gave one).
    #[must_use]
    pub fn wall_ms(&self, now: Instant) -> u64 {
        self.wall.map_or(0, |(unix, at)| unix.saturating_add(now.since(at)))
    }

    pub(crate) fn set_wall_clock(&mut self, unix_ms: u64, now: Instant) {
        self.wall = Some((unix_ms, now));
    }

    // ---- for the application's handle ([`Io`]) ----

    /// Puts a socket in a room; false if the socket is gone or at its room limit.
    pub(crate) fn join(&mut self, socket: &SocketId, room: &str) -> bool {
        let Some(s) = self.sockets.get_mut(socket) else { return false };
        if s.rooms.contains(room) {
            return true;
        }
        if s.rooms.len() >= self.config.max_rooms_per_socket {
            return false;
        }
        s.rooms.insert(room.to_owned());
        let ns = self.namespaces.entry(s.nsp.clone()).or_default();
        let members = ns.rooms.entry(room.to_owned()).or_default();
        members.insert(socket.clone());
        if let (true, Some(c)) = (members.len() == 1 && room != socket.as_str(), self.cluster.as_mut()) {
            c.room_opened(&s.nsp, room);
        }
        true
    }

    pub(crate) fn leave(&mut self, socket: &SocketId, room: &str) {
        let Some(s) = self.sockets.get_mut(socket) else { return };
        if s.rooms.remove(room) {
            if let Some(ns) = self.namespaces.get_mut(&s.nsp) {
                remove_member(ns, room, socket, &s.nsp, self.cluster.as_mut());
            }
        }
    }

    // ---- the cluster ----

    /// What the cluster link reported: a broadcast from another node goes to the local
    /// sockets it targets, by the same rules as a local one.
    pub(crate) fn on_cluster(&mut self, out: &mut Outbox, input: ClusterInput<'_>, now: Instant) {
        let Some(cluster) = self.cluster.as_mut() else { return };
        match input {
            ClusterInput::Up => {
                cluster.link_up(now);
                self.notices.push_back(Notice::ClusterUp);
            }
            ClusterInput::Down => cluster.link_down(),
            ClusterInput::Message { channel, payload } => {
                if let Some(emitted) = cluster.emitted(channel, payload) {
                    // Another backend's broadcast: to this node's sockets, as a local emit
                    // (its other targets are on the nodes that hold their channels).
                    // (One that is none is counted by the cluster part.)
                    if let Ok(e) = emitted {
                        Io::new(self, out).emit(&e.target, &e.message, now);
                    }
                    return;
                }
                let received = cluster.receive(payload, now);
                // A node that restarted is gone before its new incarnation's message; a
                // question that its answer completes is done after it.
                self.take_gone_nodes();
                match received {
                    Some(Received::Broadcast(b)) => return self.deliver(out, b),
                    Some(other) => self.notices.push_back(Notice::FromNode(other)),
                    None => return,
                }
                self.take_done_queries();
            }
        }
    }

    /// A broadcast from another node goes to the local sockets it targets.
    fn deliver(&mut self, out: &mut Outbox, b: Broadcast) {
        let target = Target {
            nsp: b.nsp,
            rooms: b.rooms,
            except_rooms: b.except_rooms,
            except_socket: b.except_socket.map(SocketId::from),
            local: true,
        };
        let mut packets = Vec::with_capacity(1 + b.binary.len());
        packets.push(OutPacket::Text(b.text));
        packets.extend(b.binary.into_iter().map(OutPacket::Binary));
        let (sockets, engine) = (&self.sockets, &mut self.engine);
        visit_targets(&self.namespaces, &target, |id| {
            if let Some(s) = sockets.get(id) {
                for p in &packets {
                    engine.send(out, s.session, p.clone());
                }
            }
        });
    }

    /// Hands the handler what another node's application sent; a question's answer goes
    /// back to the asker.
    fn hand_to_handler<H: Handler>(&mut self, out: &mut Outbox, handler: &mut H, received: Received, now: Instant) {
        match received {
            Received::App { from, payload } => {
                handler.on_cluster_message(&mut Io::new(self, out), &from, &payload, now)
            }
            Received::Question { from, query, payload } => {
                let answer = handler.on_cluster_question(&mut Io::new(self, out), &from, &payload, now);
                if let Some(c) = self.cluster.as_mut() {
                    c.reply(&from, query, answer);
                }
            }
            Received::Answer { from, query, payload } => {
                handler.on_cluster_answer(&mut Io::new(self, out), query, &from, &payload, now);
            }
            Received::Broadcast(b) => self.deliver(out, b),
        }
    }

    /// Owes the handler a notice for every node the cluster part forgot.
    fn take_gone_nodes(&mut self) {
        if let Some(c) = self.cluster.as_mut() {
            self.notices.extend(c.take_gone().into_iter().map(Notice::NodeGone));
        }
    }

    /// Owes the handler a notice for every question that is done.
    fn take_done_queries(&mut self) {
        if let Some(c) = self.cluster.as_mut() {
            self.notices.extend(c.take_done().into_iter().map(|(query, missing)| Notice::QueryDone { query, missing }));
        }
    }

    /// The node stops: the other nodes are told.
    pub(crate) fn leave_cluster(&mut self) {
        if let Some(c) = self.cluster.as_mut() {
            c.leave();
        }
    }

    /// After a snapshot restore: what the cluster part derives from its config.
    pub(crate) fn restored(&mut self) {
        if let Some(c) = self.cluster.as_mut() {
            c.restored();
        }
    }

    // ---- the step ----

    /// Handles everything the engine reported, and every notice owed to the handler,
    /// until both are empty; then answers waiting polls.
    pub(crate) fn run<H: Handler>(&mut self, out: &mut Outbox, handler: &mut H, now: Instant) {
        loop {
            if let Some(ev) = self.engine.poll_event() {
                self.on_engine_event(out, ev, handler, now);
            } else if let Some(n) = self.notices.pop_front() {
                match n {
                    Notice::Disconnected { id, nsp, reason } => {
                        handler.on_disconnect(&mut Io::new(self, out), &id, &nsp, reason, now)
                    }
                    Notice::Ack { id, tag, reply } => handler.on_ack(&mut Io::new(self, out), &id, tag, reply, now),
                    Notice::FromNode(received) => self.hand_to_handler(out, handler, received, now),
                    Notice::NodeGone(node) => handler.on_node_gone(&mut Io::new(self, out), &node, now),
                    Notice::ClusterUp => handler.on_cluster_up(&mut Io::new(self, out), now),
                    Notice::QueryDone { query, missing } => {
                        handler.on_cluster_query_done(&mut Io::new(self, out), query, &missing, now);
                    }
                }
            } else {
                // A question the handler asked may be done at once (nobody to ask).
                self.take_done_queries();
                if self.notices.is_empty() {
                    break;
                }
            }
        }
        self.engine.flush(out);
        if let Some(c) = self.cluster.as_mut() {
            c.flush(out);
        }
    }

    pub(crate) fn handle_timeout<H: Handler>(&mut self, out: &mut Outbox, handler: &mut H, now: Instant) {
        if let Some(c) = self.cluster.as_mut() {
            c.handle_timeout(now);
        }
        self.take_gone_nodes();
        self.take_done_queries();
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::Connect(s) => {
                    if self.clients.get(&s).is_some_and(|c| c.sockets.is_empty()) {
                        self.close_session(out, s);
                    }
                }
                Timer::Attachments(s) => {
                    if self.clients.get(&s).is_some_and(|c| c.partial.is_some()) {
                        self.drop_partial(s);
                        self.close_session(out, s);
                    }
                }
                Timer::Ack(seq, ack_id) => {
                    let Some(id) = self.by_seq.get(&seq).cloned() else { continue };
                    if let Some(s) = self.sockets.get_mut(&id) {
                        if s.pending_acks.remove(&ack_id) {
                            self.notices.push_back(Notice::Ack { id, tag: ack_id, reply: AckReply::TimedOut });
                        }
                    }
                }
            }
        }
        self.run(out, handler, now);
    }

    // ---- internals ----

    fn on_engine_event<H: Handler>(&mut self, out: &mut Outbox, ev: engineio::Event, handler: &mut H, now: Instant) {
        match ev {
            engineio::Event::Opened(s) => {
                self.clients.insert(s, Box::default());
                self.timers.set(Timer::Connect(s), now.plus(self.config.connect_timeout_ms));
            }
            engineio::Event::Text(s, text) => self.on_text(out, s, &text, handler, now),
            engineio::Event::Binary(s, bin) => self.on_binary(out, s, bin, handler, now),
            engineio::Event::Closed(s, reason) => {
                self.timers.cancel(Timer::Connect(s));
                self.drop_partial(s);
                if let Some(client) = self.clients.remove(&s) {
                    let reason = match reason {
                        CloseReason::TransportClose => DisconnectReason::TransportClose,
                        CloseReason::TransportError => DisconnectReason::TransportError,
                        CloseReason::PingTimeout => DisconnectReason::PingTimeout,
                        CloseReason::ParseError => DisconnectReason::ParseError,
                        CloseReason::ForcedClose => DisconnectReason::ForcedClose,
                        CloseReason::ServerShuttingDown => DisconnectReason::ServerShuttingDown,
                    };
                    let mut ids: Vec<SocketId> = client.sockets.into_values().collect();
                    ids.sort();
                    for id in ids {
                        self.remove_socket(&id, reason, now);
                    }
                }
            }
        }
    }

    fn on_text<H: Handler>(&mut self, out: &mut Outbox, s: SessionId, text: &str, handler: &mut H, now: Instant) {
        let Some(client) = self.clients.get_mut(&s).filter(|c| !c.closing) else { return };
        if client.partial.is_some() {
            // A text packet while attachments are due: the stream is broken.
            return self.close_session(out, s);
        }
        match codec::decode(text, self.config.max_attachments) {
            Ok(p) if p.attachments > 0 => {
                client.partial = Some(Box::new((p, Vec::new())));
                self.timers.set(Timer::Attachments(s), now.plus(self.config.attachment_timeout_ms));
            }
            Ok(p) => self.dispatch(out, s, p, Vec::new(), handler, now),
            Err(_) => self.close_session(out, s),
        }
    }

    fn on_binary<H: Handler>(&mut self, out: &mut Outbox, s: SessionId, bin: Bytes, handler: &mut H, now: Instant) {
        let Some(client) = self.clients.get_mut(&s).filter(|c| !c.closing) else { return };
        let Some((packet, buffers)) = client.partial.as_deref_mut() else {
            return self.close_session(out, s);
        };
        if buffers.len() + 1 == packet.attachments {
            buffers.push(bin);
            if let Some((p, b)) = client.partial.take().map(|b| *b) {
                self.partial_bytes -= b[..b.len() - 1].iter().map(Bytes::len).sum::<usize>();
                self.timers.cancel(Timer::Attachments(s));
                self.dispatch(out, s, p, b, handler, now);
            }
            return;
        }
        // Held until the packet is complete: within the node's budget, or the session goes.
        if self.partial_bytes + bin.len() > self.config.attachment_budget_bytes {
            self.drop_partial(s);
            return self.close_session(out, s);
        }
        self.partial_bytes += bin.len();
        buffers.push(bin);
    }

    /// Closes a session from this side (a forced close): its later input is dropped.
    fn close_session(&mut self, out: &mut Outbox, s: SessionId) {
        if let Some(c) = self.clients.get_mut(&s) {
            c.closing = true;
        }
        self.engine.close(out, s, CloseReason::ForcedClose);
    }

    /// Frees a session's incomplete binary packet, if it has one.
    fn drop_partial(&mut self, s: SessionId) {
        self.timers.cancel(Timer::Attachments(s));
        if let Some((_, held)) = self.clients.get_mut(&s).and_then(|c| c.partial.take()).map(|b| *b) {
            self.partial_bytes -= held.iter().map(Bytes::len).sum::<usize>();
        }
    }

    fn dispatch<H: Handler>(
        &mut self,
        out: &mut Outbox,
        s: SessionId,
        p: Packet,
        binary: Vec<Bytes>,
        handler: &mut H,
        now: Instant,
    ) {
        let Some(client) = self.clients.get(&s) else { return };
        let socket = client.sockets.get(&p.nsp).cloned();
        match (p.kind, socket) {
            (PacketType::Connect, None) => self.on_connect(out, s, p, handler, now),
            // A second CONNECT to the same namespace: already answered, nothing to do.
            (PacketType::Connect, Some(_)) => {}
            (PacketType::Disconnect, Some(id)) => {
                self.remove_socket(&id, DisconnectReason::ClientNamespaceDisconnect, now)
            }
            (PacketType::Event | PacketType::BinaryEvent, Some(id)) => {
                let Some(Value::Array(mut items)) = p.data else { return };
                let name = match items.remove(0) {
                    Value::String(n) => n,
                    other => other.to_string(),
                };
                let event = Event { name, args: items, binary, ack: p.id };
                handler.on_event(&mut Io::new(self, out), &id, event, now);
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(id)) => {
                let (Some(ack_id), Some(Value::Array(args))) = (p.id, p.data) else { return };
                let Some(sock) = self.sockets.get_mut(&id) else { return };
                if sock.pending_acks.remove(&ack_id) {
                    self.timers.cancel(Timer::Ack(sock.seq, ack_id));
                    handler.on_ack(&mut Io::new(self, out), &id, ack_id, AckReply::Answered { args, binary }, now);
                }
            }
            // Packets for a namespace this client is not in are dropped.
            _ => {}
        }
    }

    fn on_connect<H: Handler>(&mut self, out: &mut Outbox, s: SessionId, p: Packet, handler: &mut H, now: Instant) {
        let nsp = p.nsp;
        if !handler.has_namespace(&nsp) {
            return self.connect_error(out, s, &nsp, &ConnectRefusal::new("Invalid namespace"));
        }
        let count = self.clients.get(&s).map_or(0, |c| c.sockets.len());
        if count >= self.config.max_namespaces_per_connection {
            return self.connect_error(out, s, &nsp, &ConnectRefusal::new("Too many namespaces"));
        }
        let mut auth = match p.data {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let pid = auth.remove("pid");
        let offset = auth.remove("offset");
        let auth = Value::Object(auth);

        // What the middleware granted, once it ran (it runs once per CONNECT).
        let mut granted = None;
        if let (true, Some(Value::String(pid))) = (self.recovery.enabled(), &pid) {
            let offset = offset.as_ref().and_then(Value::as_str);
            if let Some((saved, missed)) = self.recovery.restore(pid, offset, now) {
                if saved.nsp == nsp && !self.sockets.contains_key(&saved.id) {
                    // A resumed socket passes the middleware like a new one, and then the
                    // handler says whether it may be this socket.
                    let g = match handler.authorize(&mut Io::new(self, out), &nsp, &auth, now) {
                        Ok(g) => g,
                        Err(refusal) => return self.connect_error(out, s, &nsp, &refusal),
                    };
                    if !self.clients.contains_key(&s) {
                        return;
                    }
                    if !self.sockets.contains_key(&saved.id) && handler.may_recover(self, &saved.id, &g) {
                        let id = saved.id.clone();
                        self.add_socket(out, s, &nsp, id.clone(), Some(pid.clone()), saved.rooms);
                        for packet in missed {
                            self.engine.send(out, s, packet);
                        }
                        handler.on_connect(&mut Io::new(self, out), &id, &auth, g, true, now);
                        return;
                    }
                    granted = Some(g);
                }
            }
        }

        let granted = match granted {
            Some(g) => g,
            None => match handler.authorize(&mut Io::new(self, out), &nsp, &auth, now) {
                Ok(g) => g,
                Err(refusal) => return self.connect_error(out, s, &nsp, &refusal),
            },
        };
        // The handler may have closed the connection meanwhile.
        if !self.clients.contains_key(&s) {
            return;
        }
        let mut id = SocketId::from(self.rng.id());
        while self.sockets.contains_key(&id) {
            id = SocketId::from(self.rng.id());
        }
        let pid = self.recovery.enabled().then(|| self.rng.id());
        let rooms = std::iter::once(id.as_str().to_owned()).collect();
        self.add_socket(out, s, &nsp, id.clone(), pid, rooms);
        handler.on_connect(&mut Io::new(self, out), &id, &auth, granted, false, now);
    }

    /// Registers a socket, answers its CONNECT, and joins its rooms.
    fn add_socket(
        &mut self,
        out: &mut Outbox,
        s: SessionId,
        nsp: &str,
        id: SocketId,
        pid: Option<String>,
        rooms: HashSet<String>,
    ) {
        let reply = match &pid {
            Some(pid) => json!({"sid": id.as_str(), "pid": pid}),
            None => json!({"sid": id.as_str()}),
        };
        let text = codec::encode(PacketType::Connect, nsp, None, Some(&reply), 0);
        self.engine.send(out, s, OutPacket::Text(Bytes::from(text)));

        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_seq.insert(seq, id.clone());
        let ns = self.namespaces.entry(nsp.to_owned()).or_default();
        if let (true, Some(c)) = (ns.sockets.is_empty(), self.cluster.as_mut()) {
            c.namespace_opened(nsp);
        }
        ns.sockets.insert(id.clone());
        // In order, as in `remove_socket`.
        let mut sorted: Vec<&String> = rooms.iter().collect();
        sorted.sort_unstable();
        for room in sorted {
            let members = ns.rooms.entry(room.clone()).or_default();
            members.insert(id.clone());
            if let (true, Some(c)) = (members.len() == 1 && room != id.as_str(), self.cluster.as_mut()) {
                c.room_opened(nsp, room);
            }
        }
        self.sockets.insert(
            id.clone(),
            Box::new(Socket {
                nsp: nsp.to_owned(),
                session: s,
                rooms,
                pid,
                seq,
                next_ack: 0,
                pending_acks: HashSet::new(),
                // Saturating: a damaged snapshot can hold a recovery log that never began.
                base_offset: self.recovery.next_offset().saturating_sub(1),
            }),
        );
        if let Some(c) = self.clients.get_mut(&s) {
            c.sockets.insert(nsp.to_owned(), id);
        }
        self.timers.cancel(Timer::Connect(s));
    }

    fn connect_error(&mut self, out: &mut Outbox, s: SessionId, nsp: &str, refusal: &ConnectRefusal) {
        let mut body = Map::new();
        body.insert("message".into(), Value::String(refusal.message.clone()));
        if let Some(data) = &refusal.data {
            body.insert("data".into(), data.clone());
        }
        let text = codec::encode(PacketType::ConnectError, nsp, None, Some(&Value::Object(body)), 0);
        self.engine.send(out, s, OutPacket::Text(Bytes::from(text)));
    }

    /// Takes a socket out of its namespace and rooms, saves it for recovery if the reason
    /// allows, and queues the handler's `on_disconnect`.
    fn remove_socket(&mut self, id: &SocketId, reason: DisconnectReason, now: Instant) {
        let Some(sock) = self.sockets.remove(id) else { return };
        self.by_seq.remove(&sock.seq);
        if let Some(c) = self.clients.get_mut(&sock.session) {
            c.sockets.remove(&sock.nsp);
        }
        if let Some(ns) = self.namespaces.get_mut(&sock.nsp) {
            ns.sockets.remove(id);
            // In order: the cluster's unsubscribes come out the same on every host (a hash
            // set's order is not, and the component must match the linked core).
            let mut rooms: Vec<&String> = sock.rooms.iter().collect();
            rooms.sort_unstable();
            for room in rooms {
                remove_member(ns, room, id, &sock.nsp, self.cluster.as_mut());
            }
            if let (true, Some(c)) = (ns.sockets.is_empty(), self.cluster.as_mut()) {
                c.namespace_closed(&sock.nsp);
            }
        }
        let mut acks: Vec<u64> = sock.pending_acks.iter().copied().collect();
        acks.sort_unstable();
        for ack_id in acks {
            self.timers.cancel(Timer::Ack(sock.seq, ack_id));
            self.notices.push_back(Notice::Ack { id: id.clone(), tag: ack_id, reply: AckReply::Disconnected });
        }
        if let (true, Some(pid)) = (reason.is_recoverable() && self.recovery.enabled(), sock.pid) {
            let saved = Saved {
                id: id.clone(),
                nsp: sock.nsp.clone(),
                rooms: sock.rooms,
                at: now,
                base_offset: sock.base_offset,
            };
            self.recovery.save(pid, saved, now);
        }
        *self.disconnects.entry(reason).or_default() += 1;
        self.notices.push_back(Notice::Disconnected { id: id.clone(), nsp: sock.nsp, reason });
    }

    /// The sockets a target selects, each once.
    fn targets(&self, target: &Target) -> Vec<SocketId> {
        let mut ids = Vec::new();
        visit_targets(&self.namespaces, target, |id| ids.push(id.clone()));
        ids
    }
}

/// Calls `f` once for every socket `target` selects. A free function over the namespace
/// table, so that a broadcast can walk the members while it writes to the engine, without
/// first copying out a list of ids.
fn visit_targets(namespaces: &HashMap<String, Namespace>, target: &Target, f: impl FnMut(&SocketId)) {
    let Some(ns) = namespaces.get(&target.nsp) else { return };
    let excluded = |id: &SocketId| {
        target.except_socket.as_ref() == Some(id)
            || target.except_rooms.iter().any(|r| ns.rooms.get(r).is_some_and(|m| m.contains(id)))
    };
    match target.rooms.as_slice() {
        [] => ns.sockets.iter().filter(|id| !excluded(id)).for_each(f),
        [room] => {
            if let Some(members) = ns.rooms.get(room) {
                members.iter().filter(|id| !excluded(id)).for_each(f);
            }
        }
        rooms => {
            let mut seen = IdSet::default();
            rooms
                .iter()
                .filter_map(|r| ns.rooms.get(r))
                .flat_map(|m| m.iter())
                .filter(|id| !excluded(id) && seen.insert(*id))
                .for_each(f);
        }
    }
}

/// Takes a socket out of a room; the cluster lets go of the room's channel with its last
/// local member (a socket's own-id room has no channel).
fn remove_member(ns: &mut Namespace, room: &str, id: &SocketId, nsp: &str, cluster: Option<&mut ClusterNode>) {
    if let Some(members) = ns.rooms.get_mut(room) {
        members.remove(id);
        if members.is_empty() {
            ns.rooms.remove(room);
            if let (true, Some(c)) = (room != id.as_str(), cluster) {
                c.room_closed(nsp, room);
            }
        }
    }
}

/// Encodes an event (and its attachments) once, as shared buffers.
fn encode_event(nsp: &str, ack: Option<u64>, msg: &Message, offset: Option<&str>) -> Vec<OutPacket> {
    let text = codec::encode_args(PacketType::Event, nsp, ack, Some(&msg.event), &msg.args, offset, msg.binary.len());
    let mut packets = Vec::with_capacity(1 + msg.binary.len());
    packets.push(OutPacket::Text(Bytes::from(text)));
    packets.extend(msg.binary.iter().cloned().map(OutPacket::Binary));
    packets
}

#[cfg(test)]
mod tests;
