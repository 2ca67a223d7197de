//! One node's part in the cluster, driven by the Socket.IO layer: it holds the channels
//! the node's rooms and namespaces need, publishes the node's broadcasts for the others,
//! filters what arrives (its own messages, unknown formats, second copies), and keeps the
//! registry of live nodes by their heartbeats. Its effects are queued here and moved to the
//! outbox at the end of each step ([`ClusterNode::flush`]), in the order they arose.

use super::channels::Channels;
use super::envelope::{Body, Broadcast, Envelope, EnvelopeError, NodeId};
use super::seen::Seen;
use super::subscriptions::{Change, Subscriptions};
use crate::config::ClusterConfig;
use crate::host::ClusterOutput;
use crate::outbox::Outbox;
use crate::time::Instant;
use std::collections::{BTreeMap, VecDeque};

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
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ClusterNode {
    config: ClusterConfig,
    id: NodeId,
    incarnation: u64,
    #[serde(skip, default = "no_channels")]
    channels: Channels,
    subscriptions: Subscriptions,
    /// Other live nodes: when each expires unless heard of again, and its incarnation.
    nodes: BTreeMap<NodeId, (Instant, u64)>,
    next_heartbeat: Option<Instant>,
    next_seq: u64,
    #[serde(skip)]
    seen: Seen,
    #[serde(skip)]
    queued: VecDeque<ClusterOutput>,
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
            subscriptions: Subscriptions::default(),
            nodes: BTreeMap::new(),
            next_heartbeat: None,
            next_seq: 0,
            seen: Seen::default(),
            queued: VecDeque::new(),
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

    /// A room of `nsp` got its first local member.
    pub(crate) fn room_opened(&mut self, nsp: &str, room: &str) {
        let channel = self.channels.room(nsp, room);
        self.hold(channel);
    }

    /// A room of `nsp` lost its last local member.
    pub(crate) fn room_closed(&mut self, nsp: &str, room: &str) {
        let channel = self.channels.room(nsp, room);
        self.release(&channel);
    }

    /// A namespace got its first local socket.
    pub(crate) fn namespace_opened(&mut self, nsp: &str) {
        let channel = self.channels.namespace(nsp);
        self.hold(channel);
    }

    /// A namespace lost its last local socket.
    pub(crate) fn namespace_closed(&mut self, nsp: &str) {
        let channel = self.channels.namespace(nsp);
        self.release(&channel);
    }

    /// Publishes a broadcast for the other nodes: on the namespace's channel when it goes
    /// to every socket, else on each of its rooms' channels (a node in several of them
    /// delivers it once).
    pub(crate) fn publish(&mut self, mut broadcast: Broadcast) {
        broadcast.seq = self.next_seq;
        self.next_seq += 1;
        let channels: Vec<String> = if broadcast.rooms.is_empty() {
            vec![self.channels.namespace(&broadcast.nsp)]
        } else {
            broadcast.rooms.iter().map(|r| self.channels.room(&broadcast.nsp, r)).collect()
        };
        let payload =
            Envelope { from: self.id.clone(), incarnation: self.incarnation, body: Body::Broadcast(broadcast) }
                .encode();
        for channel in channels {
            self.stats.published += 1;
            self.queued.push_back(ClusterOutput::Publish { channel, payload: payload.clone() });
        }
    }

    /// A message from the link: the broadcast to deliver here, if it is one this node has
    /// not delivered yet. Heartbeats and departures update the registry.
    pub(crate) fn receive(&mut self, payload: &[u8], now: Instant) -> Option<Broadcast> {
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
        // A node seen under a new incarnation restarted: what it sent before is history.
        if let Some((_, known)) = self.nodes.get(&envelope.from) {
            if *known != envelope.incarnation {
                self.seen.forget(&envelope.from);
            }
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
                Some(b)
            }
            Body::Heartbeat { ttl_ms } => {
                // Never longer than this node's own expiry: a peer cannot make itself
                // immortal in our registry.
                let ttl = ttl_ms.min(self.config.node_expiry_ms);
                let known = self.nodes.insert(envelope.from, (now.plus(ttl), envelope.incarnation));
                // A node new to us (or restarted) hears from us at once rather than at our
                // next beat, so a node that joins knows the cluster within a round trip.
                if known.is_none_or(|(_, incarnation)| incarnation != envelope.incarnation) && self.stats.link_up {
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

    fn forget(&mut self, node: &NodeId) {
        self.nodes.remove(node);
        self.seen.forget(node);
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

    /// The next heartbeat or node expiry.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.nodes.values().map(|(at, _)| *at).min();
        [self.next_heartbeat, expiry].into_iter().flatten().min()
    }

    /// Heartbeats due, nodes expired.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.next_heartbeat.is_some_and(|t| t <= now) {
            let ttl = self.config.node_expiry_ms;
            let beat = Envelope {
                from: self.id.clone(),
                incarnation: self.incarnation,
                body: Body::Heartbeat { ttl_ms: ttl },
            }
            .encode();
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
    }

    /// The node stops: the others forget it now.
    pub(crate) fn leave(&mut self) {
        let bye = Envelope { from: self.id.clone(), incarnation: self.incarnation, body: Body::Leaving }.encode();
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
