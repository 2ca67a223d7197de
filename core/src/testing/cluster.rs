//! Nodes in cluster mode on the deterministic bus: a broker stands where Redis stands. It
//! keeps each node's subscriptions (from the nodes' `Subscribe`/`Unsubscribe` outputs),
//! and a `Publish` goes to every node subscribed to the channel, the publisher included
//! (Redis echoes), each copy a bus message with the bus's latency, drops and partitions.

use super::nodes::{BusConfig, NodeId, Nodes, Packet};
use super::Host;
use crate::host::{ClusterInput, ClusterOutput, Input, Output};
use crate::service::Machine;
use crate::socketio::{Event, Handler, Io, Message, SocketId, Target};
use crate::time::Instant;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A cluster of machines joined through a model of Redis pub/sub.
pub struct Cluster<M: Machine> {
    pub nodes: Nodes<M>,
    /// Channel → the nodes subscribed to it.
    subscribers: BTreeMap<String, BTreeSet<NodeId>>,
    /// Per node: the channels its messages arrived on, with counts.
    pub arrived: Vec<BTreeMap<String, u64>>,
    /// Keys set with an expiry: key → (value, expires at).
    pub keys: BTreeMap<String, (Bytes, Instant)>,
}

/// A bus message: the channel's length, the channel, the payload.
fn frame(channel: &str, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(2 + channel.len() + payload.len());
    b.put_u16(u16::try_from(channel.len()).expect("short channel names"));
    b.put_slice(channel.as_bytes());
    b.put_slice(payload);
    b.freeze()
}

fn unframe(bytes: &[u8]) -> (&str, &[u8]) {
    let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
    let channel = std::str::from_utf8(&bytes[2..2 + len]).expect("channel names are text");
    (channel, &bytes[2 + len..])
}

impl<M: Machine> Cluster<M> {
    /// Every node with its own in-memory store, its link up.
    #[must_use]
    pub fn new(machines: Vec<M>, bus: BusConfig) -> Self {
        let n = machines.len();
        let mut c = Cluster {
            nodes: Nodes::with_stores(machines, bus),
            subscribers: BTreeMap::new(),
            arrived: vec![BTreeMap::new(); n],
            keys: BTreeMap::new(),
        };
        for node in &mut c.nodes.nodes {
            node.input(Input::Cluster(ClusterInput::Up));
        }
        c.pump();
        c
    }

    /// Moves every node's cluster outputs to the broker (and so onto the bus).
    pub fn pump(&mut self) {
        let now = self.nodes.now;
        for from in 0..self.nodes.nodes.len() {
            let ops = take_cluster(&mut self.nodes.nodes[from]);
            if self.nodes.bus.is_dead(from) {
                continue;
            }
            for op in ops {
                match op {
                    ClusterOutput::Subscribe { channel } => {
                        self.subscribers.entry(channel).or_default().insert(from);
                    }
                    ClusterOutput::Unsubscribe { channel } => {
                        if let Some(s) = self.subscribers.get_mut(&channel) {
                            s.remove(&from);
                        }
                    }
                    ClusterOutput::Publish { channel, payload } => {
                        let to: Vec<NodeId> =
                            self.subscribers.get(&channel).map(|s| s.iter().copied().collect()).unwrap_or_default();
                        for node in to {
                            self.nodes.bus.send(from, node, frame(&channel, &payload), now);
                        }
                    }
                    ClusterOutput::SetExpiring { key, value, ttl_ms } => {
                        self.keys.insert(key, (value, now.plus(ttl_ms)));
                    }
                    ClusterOutput::Delete { key } => {
                        self.keys.remove(&key);
                    }
                }
            }
        }
        self.keys.retain(|_, (_, at)| *at > now);
    }

    /// Moves the cluster forward by `ms`, one event at a time, carrying every publish
    /// as soon as it is made.
    pub fn advance(&mut self, ms: u64) {
        let end = self.nodes.now.plus(ms);
        loop {
            self.pump();
            let now = self.nodes.now;
            let timers = self
                .nodes
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.nodes.bus.is_dead(*i))
                .filter_map(|(_, n)| n.machine.poll_timeout());
            let Some(next) = timers.chain(self.nodes.bus.next_due()).min().filter(|t| *t <= end) else { break };
            let arrived = &mut self.arrived;
            self.nodes.advance(next.since(now), |host, packet| deliver(arrived, host, &packet));
        }
        let (rest, arrived) = (end.since(self.nodes.now), &mut self.arrived);
        self.nodes.advance(rest, |host, packet| deliver(arrived, host, &packet));
        self.pump();
    }

    /// A node that crashed comes back as `machine` (a fresh start): its old connection's
    /// subscriptions are gone, as Redis drops them with the connection, and its link is up.
    pub fn restart(&mut self, node: NodeId, machine: M) {
        for subscribers in self.subscribers.values_mut() {
            subscribers.remove(&node);
        }
        let now = self.nodes.now;
        self.nodes.nodes[node] = Host::with_store(machine);
        self.nodes.nodes[node].advance_to(now);
        self.nodes.bus.revive(node);
        self.nodes.nodes[node].input(Input::Cluster(ClusterInput::Up));
    }

    /// The channels a node is subscribed to.
    #[must_use]
    pub fn subscriptions(&self, node: NodeId) -> Vec<&str> {
        self.subscribers.iter().filter(|(_, s)| s.contains(&node)).map(|(c, _)| c.as_str()).collect()
    }
}

/// A bus message arrives at its node as a cluster message, counted by channel.
fn deliver<M: Machine>(arrived: &mut [BTreeMap<String, u64>], host: &mut Host<M>, packet: &Packet) {
    let (channel, payload) = unframe(&packet.bytes);
    *arrived[packet.to].entry(channel.to_owned()).or_default() += 1;
    host.input(Input::Cluster(ClusterInput::Message { channel, payload }));
}

/// Takes a host's cluster outputs, leaving the rest.
fn take_cluster<M: Machine>(host: &mut Host<M>) -> Vec<ClusterOutput> {
    let mut ops = Vec::new();
    host.outputs.retain(|o| match o {
        Output::Cluster(op) => {
            ops.push(op.clone());
            false
        }
        _ => true,
    });
    ops
}

/// Joins rooms and broadcasts on request: `["join", room]`, `["leave", room]`,
/// `["to", [rooms], [except rooms], text]` (the sender left out), `["all", text]`.
#[derive(Default)]
pub struct Relay;

impl Handler for Relay {
    type Auth = ();
    fn has_namespace(&self, nsp: &str) -> bool {
        nsp == "/"
    }
    fn on_event(&mut self, io: &mut Io<'_>, socket: &SocketId, event: Event, now: Instant) {
        let arg = |i: usize| event.args.get(i).cloned().unwrap_or(Value::Null);
        let names = |v: Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        match event.name.as_str() {
            "join" => {
                io.join(socket, arg(0).as_str().unwrap_or_default());
            }
            "leave" => io.leave(socket, arg(0).as_str().unwrap_or_default()),
            "to" => {
                let mut target = Target::all("/").except_socket(socket);
                target.rooms = names(arg(0));
                target.except_rooms = names(arg(1));
                io.emit(&target, &Message::new("m", vec![arg(2)]), now);
            }
            "all" => io.emit(&Target::all("/"), &Message::new("m", vec![arg(0)]), now),
            "local" => io.emit(&Target::all("/").local(), &Message::new("m", vec![arg(0)]), now),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterConfig, Config};
    use crate::Service;
    use serde_json::{json, Value};

    fn node(id: &str) -> Service<Relay> {
        seeded(id, id.len() as u8)
    }

    /// A node whose incarnation comes from `seed`.
    fn seeded(id: &str, seed: u8) -> Service<Relay> {
        let cluster = ClusterConfig { node_id: id.into(), prefix: "t".into(), ..ClusterConfig::default() };
        let config = Config { cluster: Some(cluster), ..Config::default() };
        Service::new(config, [seed; 32], Instant(0), Relay)
    }

    fn three() -> Cluster<Service<Relay>> {
        Cluster::new(vec![node("a"), node("bb"), node("ccc")], BusConfig { latency_ms: 2, ..BusConfig::default() })
    }

    /// A client connected to `/` on a node; returns its connection.
    fn client(c: &mut Cluster<Service<Relay>>, n: usize) -> crate::host::ConnId {
        let (conn, _) = c.nodes.nodes[n].open_ws();
        c.nodes.nodes[n].text(conn, "40");
        c.nodes.nodes[n].frames(conn);
        conn
    }

    fn say(c: &mut Cluster<Service<Relay>>, n: usize, conn: crate::host::ConnId, args: &Value) {
        c.nodes.nodes[n].text(conn, &format!("42{args}"));
        c.advance(20);
    }

    /// The `m` events a client got, by their text.
    fn got(c: &mut Cluster<Service<Relay>>, n: usize, conn: crate::host::ConnId) -> Vec<String> {
        c.nodes.nodes[n]
            .frames(conn)
            .into_iter()
            .filter_map(|f| f.strip_prefix("42[\"m\",").map(|rest| rest.trim_end_matches(']').to_owned()))
            .collect()
    }

    #[test]
    fn a_room_broadcast_reaches_the_members_on_every_node_and_only_them() {
        let mut c = three();
        let (a, b, other) = (client(&mut c, 0), client(&mut c, 1), client(&mut c, 2));
        say(&mut c, 0, a, &json!(["join", "lobby"]));
        say(&mut c, 1, b, &json!(["join", "lobby"]));
        say(&mut c, 2, other, &json!(["join", "elsewhere"]));
        say(&mut c, 0, a, &json!(["to", ["lobby"], [], "hi"]));
        assert_eq!(got(&mut c, 1, b), ["\"hi\""], "the member on another node");
        assert!(got(&mut c, 0, a).is_empty(), "the sender is left out");
        assert!(got(&mut c, 2, other).is_empty());
        let lobby = c.nodes.nodes[0].machine.sockets().cluster().unwrap().names().room("/", "lobby");
        assert_eq!(c.arrived[2].get(&lobby), None, "a node without a member gets none of the room's traffic");
        assert!(!c.subscriptions(2).contains(&lobby.as_str()));
        assert!(c.subscriptions(1).contains(&lobby.as_str()));
    }

    #[test]
    fn several_rooms_deliver_once_and_except_rooms_hold_across_nodes() {
        let mut c = three();
        let (a, b, m) = (client(&mut c, 0), client(&mut c, 1), client(&mut c, 1));
        say(&mut c, 0, a, &json!(["join", "r1"]));
        for room in ["r1", "r2"] {
            say(&mut c, 1, b, &json!(["join", room]));
        }
        say(&mut c, 1, m, &json!(["join", "r2"]));
        say(&mut c, 1, m, &json!(["join", "muted"]));
        say(&mut c, 0, a, &json!(["to", ["r1", "r2"], [], "once"]));
        assert_eq!(got(&mut c, 1, b), ["\"once\""], "in both rooms, delivered once");
        assert_eq!(got(&mut c, 1, m), ["\"once\""]);
        let stats = c.nodes.nodes[1].machine.sockets().cluster().unwrap().stats();
        assert_eq!(stats.duplicates, 1, "the second room channel's copy: {stats:?}");
        say(&mut c, 0, a, &json!(["to", ["r2"], ["muted"], "not muted"]));
        assert_eq!(got(&mut c, 1, b), ["\"not muted\""]);
        assert!(got(&mut c, 1, m).is_empty(), "except rooms are honoured on the receiving node");
    }

    #[test]
    fn a_broadcast_to_all_crosses_and_the_echo_of_ones_own_is_ignored() {
        let mut c = three();
        let conns: Vec<_> = (0..3).map(|n| client(&mut c, n)).collect();
        say(&mut c, 2, conns[2], &json!(["all", "everyone"]));
        for (n, conn) in conns.iter().enumerate() {
            assert_eq!(got(&mut c, n, *conn), ["\"everyone\""], "node {n}");
        }
        let stats = c.nodes.nodes[2].machine.sockets().cluster().unwrap().stats();
        // Its own broadcast came back (with its own heartbeats); none of it was delivered.
        assert!(stats.own >= 2 && stats.delivered == 0, "{stats:?}");
        // A local broadcast stays on its node.
        say(&mut c, 2, conns[2], &json!(["local", "here only"]));
        assert_eq!(got(&mut c, 2, conns[2]), ["\"here only\""]);
        assert!(got(&mut c, 0, conns[0]).is_empty() && got(&mut c, 1, conns[1]).is_empty());
        assert_eq!(
            c.nodes.nodes[2].machine.sockets().cluster().unwrap().stats().published,
            1,
            "nothing more published"
        );
    }

    #[test]
    fn the_last_member_leaving_unsubscribes_and_traffic_stops() {
        let mut c = three();
        let (a, b) = (client(&mut c, 0), client(&mut c, 1));
        say(&mut c, 1, b, &json!(["join", "r"]));
        let room = c.nodes.nodes[1].machine.sockets().cluster().unwrap().names().room("/", "r");
        assert!(c.subscriptions(1).contains(&room.as_str()));
        say(&mut c, 1, b, &json!(["leave", "r"]));
        assert!(!c.subscriptions(1).contains(&room.as_str()));
        say(&mut c, 0, a, &json!(["to", ["r"], [], "nobody"]));
        assert_eq!(c.arrived[1].get(&room), None);
        c.nodes.nodes[1].end(b, crate::host::TransportEnd::Closed);
        c.advance(20);
        let namespace = c.nodes.nodes[1].machine.sockets().cluster().unwrap().names().namespace("/");
        assert!(!c.subscriptions(1).contains(&namespace.as_str()), "no socket left in the namespace");
    }

    #[test]
    fn nodes_know_each_other_by_heartbeats_and_forget_a_dead_one() {
        let mut c = three();
        c.advance(100);
        let live = |c: &Cluster<Service<Relay>>, n: usize| -> Vec<String> {
            let cluster = c.nodes.nodes[n].machine.sockets().cluster().unwrap();
            cluster.live_nodes().iter().map(|id| id.to_string()).collect()
        };
        assert_eq!(live(&c, 0), ["bb", "ccc"]);
        assert_eq!(c.keys.len(), 3, "each node's registry key");
        c.nodes.kill(2);
        c.advance(ClusterConfig::default().node_expiry_ms + 100);
        assert_eq!(live(&c, 0), ["bb"], "the dead node expired");
        assert_eq!(c.keys.len(), 2, "and its key with it");
        // A node that stops says so: the others forget it at once.
        c.nodes.nodes[1].input(Input::Shutdown);
        c.advance(20);
        assert!(live(&c, 0).is_empty());
        assert_eq!(c.keys.len(), 1);
    }

    #[test]
    fn a_node_restarted_under_its_id_is_a_new_sender_and_a_second_node_with_it_a_conflict() {
        let mut c = three();
        let (a, b) = (client(&mut c, 0), client(&mut c, 1));
        say(&mut c, 0, a, &json!(["join", "r"]));
        say(&mut c, 1, b, &json!(["join", "r"]));
        for text in ["one", "two"] {
            say(&mut c, 0, a, &json!(["to", ["r"], [], text]));
        }
        assert_eq!(got(&mut c, 1, b), ["\"one\"", "\"two\""]);
        // Node 0 crashes and comes back under the same id: its count starts at 0 again.
        c.nodes.nodes[0] = Host::with_store(seeded("a", 99));
        c.nodes.nodes[0].advance_to(c.nodes.now);
        c.nodes.nodes[0].input(Input::Cluster(ClusterInput::Up));
        let a2 = client(&mut c, 0);
        say(&mut c, 0, a2, &json!(["join", "r"]));
        say(&mut c, 0, a2, &json!(["to", ["r"], [], "after the restart"]));
        assert_eq!(got(&mut c, 1, b), ["\"after the restart\""], "not taken for a copy of the first broadcast");

        let mut twins = Cluster::new(vec![seeded("same", 1), seeded("same", 2)], BusConfig::default());
        twins.advance(50);
        let conflicts = |n: usize| twins.nodes.nodes[n].machine.sockets().cluster().unwrap().stats().id_conflicts;
        assert!(conflicts(0) > 0 && conflicts(1) > 0, "each hears the other under its own id");
    }

    #[test]
    fn a_message_of_another_format_is_refused_and_counted() {
        let mut c = three();
        let channel = c.nodes.nodes[0].machine.sockets().cluster().unwrap().names().nodes();
        c.nodes.nodes[0].input(Input::Cluster(ClusterInput::Message { channel: &channel, payload: &[9, 1, 2] }));
        c.nodes.nodes[0].input(Input::Cluster(ClusterInput::Message { channel: &channel, payload: &[] }));
        // A peer's broadcast whose text is not an event packet of its namespace in UTF-8
        // never reaches a client.
        let conn = client(&mut c, 0);
        for (i, text) in [&b"42[\"m\",\xff]"[..], b"40", b"42/chat,[\"m\"]", b"4"].into_iter().enumerate() {
            let b = crate::cluster::Broadcast {
                seq: i as u64,
                nsp: "/".into(),
                rooms: vec![],
                except_rooms: vec![],
                except_socket: None,
                volatile: false,
                text: Bytes::copy_from_slice(text),
                binary: vec![],
            };
            let from = crate::cluster::NodeId::new("bb").unwrap();
            let payload =
                crate::cluster::Envelope { from, incarnation: 1, body: crate::cluster::Body::Broadcast(b) }.encode();
            c.nodes.nodes[0].input(Input::Cluster(ClusterInput::Message { channel: &channel, payload: &payload }));
        }
        assert_eq!(c.nodes.nodes[0].machine.sockets().cluster().unwrap().stats().refused, 6);
        assert!(c.nodes.nodes[0].frames(conn).is_empty());
    }

    #[test]
    fn the_socketio_emitters_broadcasts_reach_their_targets_on_nodes_that_hold_them() {
        let with_key = |id: &str| {
            let cluster = ClusterConfig {
                node_id: id.into(),
                prefix: "t".into(),
                emitter_key: Some("socket.io".into()),
                ..ClusterConfig::default()
            };
            Service::new(Config { cluster: Some(cluster), ..Config::default() }, [3; 32], Instant(0), Relay)
        };
        let mut c = Cluster::new(vec![with_key("a"), with_key("bb")], BusConfig::default());
        let (a, b) = (client(&mut c, 0), client(&mut c, 1));
        say(&mut c, 0, a, &json!(["join", "lobby"]));
        assert!(c.subscriptions(0).contains(&"socket.io#/#lobby#"));
        assert!(!c.subscriptions(1).contains(&"socket.io#/#lobby#"), "no member of the room there");
        assert!(c.subscriptions(1).contains(&"socket.io#/#"));
        let emit = |rooms: Vec<&str>| {
            use rmpv::Value as Mp;
            let s = |x: &str| Mp::String(x.into());
            let data = Mp::Array(vec![s("m"), s("from the emitter")]);
            let packet = Mp::Map(vec![(s("type"), Mp::from(2)), (s("data"), data), (s("nsp"), s("/"))]);
            let rooms = Mp::Array(rooms.into_iter().map(s).collect());
            let opts =
                Mp::Map(vec![(s("rooms"), rooms), (s("flags"), Mp::Map(vec![])), (s("except"), Mp::Array(vec![]))]);
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &Mp::Array(vec![s("emitter"), packet, opts])).unwrap();
            out
        };
        let to_lobby = emit(vec!["lobby"]);
        c.nodes.nodes[0]
            .input(Input::Cluster(ClusterInput::Message { channel: "socket.io#/#lobby#", payload: &to_lobby }));
        assert_eq!(got(&mut c, 0, a), ["\"from the emitter\""]);
        let to_all = emit(vec![]);
        for n in 0..2 {
            c.nodes.nodes[n].input(Input::Cluster(ClusterInput::Message { channel: "socket.io#/#", payload: &to_all }));
        }
        assert_eq!(got(&mut c, 0, a), ["\"from the emitter\""]);
        assert_eq!(got(&mut c, 1, b), ["\"from the emitter\""]);
        c.nodes.nodes[1].input(Input::Cluster(ClusterInput::Message { channel: "socket.io#/#", payload: b"junk" }));
        let stats = c.nodes.nodes[1].machine.sockets().cluster().unwrap().stats();
        assert_eq!((stats.emitter_received, stats.emitter_refused), (1, 1));
        assert!(got(&mut c, 1, b).is_empty());
    }

    #[test]
    fn the_registry_is_bounded_whatever_ids_arrive() {
        let mut c = Cluster::new(vec![node("a")], BusConfig::default());
        let channel = c.nodes.nodes[0].machine.sockets().cluster().unwrap().names().nodes();
        let extra = 5;
        for i in 0..crate::cluster::node::MAX_NODES + extra {
            let from = crate::cluster::NodeId::new(&format!("peer-{i}")).unwrap();
            let beat = crate::cluster::Envelope {
                from,
                incarnation: 1,
                body: crate::cluster::Body::Heartbeat { ttl_ms: 10_000 },
            };
            let payload = beat.encode();
            c.nodes.nodes[0].input(Input::Cluster(ClusterInput::Message { channel: &channel, payload: &payload }));
        }
        let stats = c.nodes.nodes[0].machine.sockets().cluster().unwrap().stats();
        assert_eq!(stats.live_nodes as usize, crate::cluster::node::MAX_NODES);
        assert_eq!(stats.nodes_refused as usize, extra);
    }
}
