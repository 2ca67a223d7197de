//! One node's part in the cluster, driven by the Socket.IO layer: it holds the channels
//! the node's rooms and namespaces need, publishes the node's broadcasts for the others,
//! filters what arrives (its own messages, unknown formats, second copies), and keeps the
//! registry of live nodes by their heartbeats. Its effects are queued here and moved to the
//! outbox at the end of each step ([`ClusterNode::flush`]), in the order they arose.

use super::channels::Channels;
use super::emitter::{self, Emitted, EmitterChannels};
use super::envelope::{Body, Broadcast, Envelope, EnvelopeError, NodeId};
use super::queries::{Done, Queries, QueryId};
use super::seen::Seen;
use super::subscriptions::{Change, Subscriptions};
use crate::config::ClusterConfig;
use crate::host::ClusterOutput;
use crate::outbox::Outbox;
use crate::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What the cluster layer counts (for `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStats {
    pub published: u64,
    pub received: u64,
    /// Broadcasts delivered to local sockets.
    pub delivered: u64,
    /// Second copies of a broadcast (it was published on several channels this node holds).
    pub duplicates: u64,
    /// The node's own messages, echoed back by the link.
    pub own: u64,
    /// Messages of another format version, or malformed.
    pub refused: u64,
    /// Messages from another running node with this node's id (a misconfiguration).
    pub id_conflicts: u64,
    pub link_up: bool,
    pub link_losses: u64,
    /// Channels held now.
    #[serde(default)]
    pub subscriptions: u64,
    /// Other nodes alive now.
    #[serde(default)]
    pub live_nodes: u64,
    /// Messages for the application, sent and received.
    #[serde(default)]
    pub app_sent: u64,
    #[serde(default)]
    pub app_received: u64,
    /// Nodes not taken into the registry because it was full ([`MAX_NODES`]).
    #[serde(default)]
    pub nodes_refused: u64,
    /// Questions asked of the other nodes, those done at their timeout, and the nodes
    /// that had not answered them (summed over questions).
    #[serde(default)]
    pub queries: u64,
    #[serde(default)]
    pub query_timeouts: u64,
    #[serde(default)]
    pub missing_nodes: u64,
    /// Questions this node answered.
    #[serde(default)]
    pub answered: u64,
    /// Broadcasts from `@socket.io/redis-emitter` delivered, and its messages refused.
    #[serde(default)]
    pub emitter_received: u64,
    #[serde(default)]
    pub emitter_refused: u64,
}

/// At most this many other nodes in the registry: the ids come from whatever publishes on
/// the cluster's channels, so the map is bounded whatever they say.
pub const MAX_NODES: usize = 1024;

/// What a message from another node brings for the layers above.
#[derive(Debug)]
pub(crate) enum Received {
    /// A broadcast to deliver to the local sockets it targets.
    Broadcast(Broadcast),
    /// Bytes for the application.
    App { from: NodeId, payload: bytes::Bytes },
    /// Another node's question for the application, to answer with [`ClusterNode::reply`].
    Question { from: NodeId, query: QueryId, payload: bytes::Bytes },
    /// An answer to one of this node's questions (also one that came after the question
    /// was done: the application decides what it is still worth).
    Answer { from: NodeId, query: QueryId, payload: bytes::Bytes },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ClusterNode {
    config: ClusterConfig,
    id: NodeId,
    incarnation: u64,
    #[serde(skip, default = "no_channels")]
    channels: Channels,
    /// The emitter's channels, when its broadcasts are delivered too.
    #[serde(skip)]
    emitter: Option<EmitterChannels>,
    subscriptions: Subscriptions,
    /// Other live nodes: when each expires unless heard of again, and its incarnation.
    nodes: BTreeMap<NodeId, (Instant, u64)>,
    next_heartbeat: Option<Instant>,
    next_seq: u64,
    #[serde(skip)]
    seen: Seen,
    #[serde(skip)]
    queued: VecDeque<ClusterOutput>,
    /// Nodes forgotten (expired, gone, restarted) since the layer above last asked.
    #[serde(skip)]
    gone: Vec<NodeId>,
    /// The questions waiting for answers, and those done since the layer above last asked.
    #[serde(default)]
    queries: Queries,
    #[serde(skip)]
    done: Done,
    stats: ClusterStats,
}

fn no_channels() -> Channels {
    Channels::new("")
}

impl ClusterNode {
    /// A node of the cluster `config` describes, started as `incarnation` (random, from
    /// the core's seeded stream); `None` if its node id is not valid.
    #[must_use]
    pub fn new(config: &ClusterConfig, incarnation: u64) -> Option<ClusterNode> {
        let id = NodeId::new(&config.node_id)?;
        let channels = Channels::new(&config.prefix);
        let mut node = ClusterNode {
            config: config.clone(),
            id,
            incarnation,
            channels,
            emitter: config.emitter_key.as_deref().map(EmitterChannels::new),
            subscriptions: Subscriptions::default(),
            nodes: BTreeMap::new(),
            next_heartbeat: None,
            next_seq: 0,
            seen: Seen::default(),
            queued: VecDeque::new(),
            gone: Vec::new(),
            queries: Queries::default(),
            done: Vec::new(),
            stats: ClusterStats::default(),
        };
        let own = node.channels.node(&node.id);
        node.hold(own);
        let nodes = node.channels.nodes();
        node.hold(nodes);
        Some(node)
    }

    /// After a restore from a snapshot: the names are derived again from the config.
    pub(crate) fn restored(&mut self) {
        self.channels = Channels::new(&self.config.prefix);
        self.emitter = self.config.emitter_key.as_deref().map(EmitterChannels::new);
    }

    #[must_use]
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    #[must_use]
    pub fn stats(&self) -> ClusterStats {
        ClusterStats {
            subscriptions: self.subscriptions.len() as u64,
            live_nodes: self.nodes.len() as u64,
            ..self.stats
        }
    }

    /// The other nodes known to be alive, sorted.
    #[must_use]
    pub fn live_nodes(&self) -> Vec<&NodeId> {
        self.nodes.keys().collect()
    }

    /// Questions of this node's still waiting for answers.
    #[must_use]
    pub fn questions_waiting(&self) -> usize {
        self.queries.len()
    }

    /// The channels held, sorted.
    #[must_use]
    pub fn channels(&self) -> Vec<String> {
        self.subscriptions.channels()
    }

    #[must_use]
    pub fn names(&self) -> &Channels {
        &self.channels
    }

    fn hold(&mut self, channel: String) {
        if let Some(Change::Subscribe(channel)) = self.subscriptions.hold(channel) {
            self.queued.push_back(ClusterOutput::Subscribe { channel });
        }
    }

    fn release(&mut self, channel: &str) {
        if let Some(Change::Unsubscribe(channel)) = self.subscriptions.release(channel) {
            self.queued.push_back(ClusterOutput::Unsubscribe { channel });
        }
    }

    /// The channels a room of `nsp` (or, without a room, the namespace) needs: parlor's,
    /// and the emitter's when its broadcasts are delivered too.
    fn place_channels(&self, nsp: &str, room: Option<&str>) -> impl Iterator<Item = String> {
        let (ours, emitter) = match room {
            Some(room) => (self.channels.room(nsp, room), self.emitter.as_ref().map(|e| e.room(nsp, room))),
            None => (self.channels.namespace(nsp), self.emitter.as_ref().map(|e| e.namespace(nsp))),
        };
        std::iter::once(ours).chain(emitter)
    }

    /// A room of `nsp` got its first local member.
    pub(crate) fn room_opened(&mut self, nsp: &str, room: &str) {
        for channel in self.place_channels(nsp, Some(room)).collect::<Vec<_>>() {
            self.hold(channel);
        }
    }

    /// A room of `nsp` lost its last local member.
    pub(crate) fn room_closed(&mut self, nsp: &str, room: &str) {
        for channel in self.place_channels(nsp, Some(room)).collect::<Vec<_>>() {
            self.release(&channel);
        }
    }

    /// A namespace got its first local socket.
    pub(crate) fn namespace_opened(&mut self, nsp: &str) {
        for channel in self.place_channels(nsp, None).collect::<Vec<_>>() {
            self.hold(channel);
        }
    }

    /// A namespace lost its last local socket.
    pub(crate) fn namespace_closed(&mut self, nsp: &str) {
        for channel in self.place_channels(nsp, None).collect::<Vec<_>>() {
            self.release(&channel);
        }
    }

    /// A message from this node, as it goes out.
    fn seal(&self, body: Body) -> bytes::Bytes {
        Envelope { from: self.id.clone(), incarnation: self.incarnation, body }.encode()
    }

    /// A message on one of the emitter's channels: its broadcast, if it is one (else it
    /// is refused and counted). `None` also for a channel that is not the emitter's.
    pub(crate) fn emitted(&mut self, channel: &str, payload: &[u8]) -> Option<Result<Emitted, String>> {
        if !self.emitter.as_ref().is_some_and(|e| e.owns(channel)) {
            return None;
        }
        let emitted = emitter::decode(payload);
        match &emitted {
            Ok(_) => self.stats.emitter_received += 1,
            Err(_) => self.stats.emitter_refused += 1,
        }
        Some(emitted)
    }

    /// Publishes a broadcast for the other nodes: on the namespace's channel when it goes
    /// to every socket, else on each of its rooms' channels (a node in several of them
    /// delivers it once).
    pub(crate) fn publish(&mut self, broadcast: Broadcast) {
        let channels: Vec<String> = if broadcast.rooms.is_empty() {
            vec![self.channels.namespace(&broadcast.nsp)]
        } else {
            broadcast.rooms.iter().map(|r| self.channels.room(&broadcast.nsp, r)).collect()
        };
        self.publish_on(broadcast, channels);
    }

    /// Publishes a broadcast for one node's sockets only (a socket's own room there).
    pub(crate) fn publish_to_node(&mut self, node: &NodeId, broadcast: Broadcast) {
        let channel = self.channels.node(node);
        self.publish_on(broadcast, vec![channel]);
    }

    fn publish_on(&mut self, mut broadcast: Broadcast, channels: Vec<String>) {
        broadcast.seq = self.next_seq;
        self.next_seq += 1;
        let payload = self.seal(Body::Broadcast(broadcast));
        for channel in channels {
            self.stats.published += 1;
            self.queued.push_back(ClusterOutput::Publish { channel, payload: payload.clone() });
        }
    }

    /// Publishes bytes for the applications of the nodes that hold `channel`.
    pub(crate) fn publish_app(&mut self, channel: String, payload: bytes::Bytes) {
        let payload = self.seal(Body::App(payload));
        self.stats.app_sent += 1;
        self.queued.push_back(ClusterOutput::Publish { channel, payload });
    }

    /// Asks every live node a question for its application (on the nodes' channel); the
    /// answers come back as [`Received::Answer`], and the question is done (see
    /// [`ClusterNode::take_done`]) when every node alive now has answered or gone, or at
    /// the query timeout.
    pub(crate) fn ask(&mut self, payload: bytes::Bytes, now: Instant) -> QueryId {
        let nodes: BTreeSet<NodeId> = self.nodes.keys().cloned().collect();
        let (query, done) = self.queries.ask(nodes, now.plus(self.config.query_timeout_ms));
        self.stats.queries += 1;
        if let Some(missing) = done {
            self.stats.missing_nodes += missing.len() as u64;
            self.done.push((query, missing));
        }
        let payload = self.seal(Body::Ask { query, payload });
        self.queued.push_back(ClusterOutput::Publish { channel: self.channels.nodes(), payload });
        query
    }

    /// Answers another node's question.
    pub(crate) fn reply(&mut self, to: &NodeId, query: QueryId, payload: bytes::Bytes) {
        let payload = self.seal(Body::Reply { query, payload });
        self.stats.answered += 1;
        self.queued.push_back(ClusterOutput::Publish { channel: self.channels.node(to), payload });
    }

    /// The questions done since the last call, each with the nodes that did not answer.
    pub(crate) fn take_done(&mut self) -> Done {
        std::mem::take(&mut self.done)
    }

    /// A message from the link: the broadcast to deliver here (if this node has not
    /// delivered it yet), or bytes for the application. Heartbeats and departures update
    /// the registry.
    pub(crate) fn receive(&mut self, payload: &[u8], now: Instant) -> Option<Received> {
        self.stats.received += 1;
        let envelope = match Envelope::decode(payload) {
            Ok(e) => e,
            Err(EnvelopeError::Empty | EnvelopeError::Version(_) | EnvelopeError::Malformed(_)) => {
                self.stats.refused += 1;
                return None;
            }
        };
        if envelope.from == self.id {
            if envelope.incarnation == self.incarnation {
                self.stats.own += 1;
            } else {
                self.stats.id_conflicts += 1;
            }
            return None;
        }
        // A node seen under a new incarnation restarted: what it sent before is history,
        // and what the application knew of it too.
        if self.nodes.get(&envelope.from).is_some_and(|(_, known)| *known != envelope.incarnation) {
            self.forget(&envelope.from);
        }
        match envelope.body {
            Body::Broadcast(b) => {
                // Text frames must be UTF-8 whatever a peer sends; an event packet of the
                // broadcast's own namespace, or it is no broadcast of ours.
                if !is_event_packet(&b) {
                    self.stats.refused += 1;
                    return None;
                }
                if !self.seen.first_time(&envelope.from, envelope.incarnation, b.seq) {
                    self.stats.duplicates += 1;
                    return None;
                }
                self.stats.delivered += 1;
                Some(Received::Broadcast(b))
            }
            body @ (Body::App(_) | Body::Ask { .. } | Body::Reply { .. }) => {
                // A sender the registry does not know yet is taken in until its heartbeat
                // says more: whatever the application keeps of it goes when it expires.
                if !self.nodes.contains_key(&envelope.from) {
                    let until = now.plus(self.config.node_expiry_ms);
                    if !self.register(envelope.from.clone(), until, envelope.incarnation) {
                        return None;
                    }
                }
                self.stats.app_received += 1;
                let from = envelope.from;
                Some(match body {
                    Body::Ask { query, payload } => Received::Question { from, query, payload },
                    Body::Reply { query, payload } => {
                        if let (_, true) = self.queries.answered(query, &from) {
                            self.done.push((query, Vec::new()));
                        }
                        Received::Answer { from, query, payload }
                    }
                    Body::App(payload) => Received::App { from, payload },
                    Body::Broadcast(_) | Body::Heartbeat { .. } | Body::Leaving => return None,
                })
            }
            Body::Heartbeat { ttl_ms } => {
                // Never longer than this node's own expiry: a peer cannot make itself
                // immortal in our registry.
                let ttl = ttl_ms.min(self.config.node_expiry_ms);
                let new = !self.nodes.contains_key(&envelope.from);
                if !self.register(envelope.from, now.plus(ttl), envelope.incarnation) {
                    return None;
                }
                // A node new to us (or restarted) hears from us at once rather than at our
                // next beat, so a node that joins knows the cluster within a round trip.
                if new && self.stats.link_up {
                    self.next_heartbeat = Some(now);
                }
                None
            }
            Body::Leaving => {
                self.forget(&envelope.from);
                None
            }
        }
    }

    /// Takes a node into the registry (or refreshes it); false if the registry is full.
    fn register(&mut self, node: NodeId, until: Instant, incarnation: u64) -> bool {
        if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(&node) {
            self.stats.nodes_refused += 1;
            return false;
        }
        self.nodes.insert(node, (until, incarnation));
        true
    }

    fn forget(&mut self, node: &NodeId) {
        if self.nodes.remove(node).is_some() {
            self.gone.push(node.clone());
        }
        self.seen.forget(node);
        let done = self.queries.gone(node);
        self.done.extend(done);
    }

    /// The nodes forgotten since the last call, in the order they went.
    pub(crate) fn take_gone(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.gone)
    }

    /// The link is back: say at once that this node is alive.
    pub(crate) fn link_up(&mut self, now: Instant) {
        self.stats.link_up = true;
        self.next_heartbeat = Some(now);
    }

    pub(crate) fn link_down(&mut self) {
        if self.stats.link_up {
            self.stats.link_losses += 1;
        }
        self.stats.link_up = false;
    }

    /// The next heartbeat, node expiry or question timeout.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.nodes.values().map(|(at, _)| *at).min();
        [self.next_heartbeat, expiry, self.queries.poll_timeout()].into_iter().flatten().min()
    }

    /// Heartbeats due, nodes expired.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.next_heartbeat.is_some_and(|t| t <= now) {
            let ttl = self.config.node_expiry_ms;
            let beat = self.seal(Body::Heartbeat { ttl_ms: ttl });
            self.queued.push_back(ClusterOutput::Publish { channel: self.channels.nodes(), payload: beat });
            let key = self.channels.node_key(&self.id);
            let value = bytes::Bytes::copy_from_slice(self.id.as_str().as_bytes());
            self.queued.push_back(ClusterOutput::SetExpiring { key, value, ttl_ms: ttl });
            self.next_heartbeat = Some(now.plus(self.config.heartbeat_ms.max(1)));
        }
        let expired: Vec<NodeId> =
            self.nodes.iter().filter(|(_, (at, _))| *at <= now).map(|(n, _)| n.clone()).collect();
        for node in expired {
            self.forget(&node);
        }
        for (query, missing) in self.queries.expire(now) {
            self.stats.query_timeouts += 1;
            self.stats.missing_nodes += missing.len() as u64;
            self.done.push((query, missing));
        }
    }

    /// The node stops: the others forget it now.
    pub(crate) fn leave(&mut self) {
        let bye = self.seal(Body::Leaving);
        self.queued.push_back(ClusterOutput::Publish { channel: self.channels.nodes(), payload: bye });
        self.queued.push_back(ClusterOutput::Delete { key: self.channels.node_key(&self.id) });
        self.next_heartbeat = None;
    }

    /// Moves the queued effects to the outbox.
    pub(crate) fn flush(&mut self, out: &mut Outbox) {
        while let Some(op) = self.queued.pop_front() {
            out.cluster(op);
        }
    }
}

/// Whether a broadcast's text is a Socket.IO event (or binary event) packet of its
/// namespace, in UTF-8: the cheap checks that keep a peer's bytes from reaching clients as
/// something else (the packet itself was encoded by a node of this build).
fn is_event_packet(b: &Broadcast) -> bool {
    let Ok(text) = std::str::from_utf8(&b.text) else { return false };
    // The Engine.IO message type, then the Socket.IO event or binary event type.
    let Some(rest) = text.strip_prefix("42").or_else(|| text.strip_prefix("45")) else { return false };
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    if b.nsp == "/" {
        rest.starts_with('[')
    } else {
        rest.strip_prefix(b.nsp.as_str()).is_some_and(|r| r.starts_with(','))
    }
}
