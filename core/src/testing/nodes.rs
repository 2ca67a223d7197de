//! Several nodes on one virtual clock, joined by a deterministic in-memory bus: the ground
//! the cluster is built and tested on (as quinn-proto writes its `Pair` before the
//! protocol).
//!
//! [`Bus`] carries byte messages between nodes with a latency and a seeded jitter, keeps
//! each link in order (a Redis connection delivers in order), and can drop messages at a
//! given rate, cut links in partitions, and lose a node as a crash does: what was on the
//! way to it is gone, and it sends nothing more. [`Nodes`] drives N hosts and the
//! bus in one time line: every step goes to the earliest deadline of any node or message,
//! so a run is the same for the same seed, however the events interleave.

use super::{Host, Rng};
use crate::service::Machine;
use crate::time::Instant;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A node's index in [`Nodes`] and on the [`Bus`].
pub type NodeId = usize;

/// How the bus behaves.
#[derive(Clone, Copy, Debug)]
pub struct BusConfig {
    /// Every message takes at least this long.
    pub latency_ms: u64,
    /// And up to this much more, drawn per message from `seed`.
    pub jitter_ms: u64,
    /// Messages lost on the way, in percent (0: none).
    pub drop_percent: u64,
    pub seed: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig { latency_ms: 1, jitter_ms: 0, drop_percent: 0, seed: 1 }
    }
}

/// A message on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub from: NodeId,
    pub to: NodeId,
    pub bytes: Bytes,
    pub sent_at: Instant,
}

/// What happened to the messages sent so far.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    pub sent: u64,
    pub delivered: u64,
    /// Lost to the drop rate.
    pub dropped: u64,
    /// Lost to a cut link or a dead node.
    pub blocked: u64,
}

/// The deterministic network between nodes.
#[derive(Debug)]
pub struct Bus {
    config: BusConfig,
    rng: Rng,
    /// By delivery time, then by the order sent.
    in_flight: BTreeMap<(Instant, u64), Packet>,
    seq: u64,
    /// When the last message on each link is delivered: a later one never overtakes it.
    link_last: HashMap<(NodeId, NodeId), Instant>,
    /// Links cut by a partition, each direction on its own.
    cut: HashSet<(NodeId, NodeId)>,
    dead: HashSet<NodeId>,
    stats: BusStats,
}

impl Bus {
    #[must_use]
    pub fn new(config: BusConfig) -> Self {
        Bus {
            config,
            rng: Rng::new(config.seed),
            in_flight: BTreeMap::new(),
            seq: 0,
            link_last: HashMap::new(),
            cut: HashSet::new(),
            dead: HashSet::new(),
            stats: BusStats::default(),
        }
    }

    /// Sends `bytes` from one node to another; `false` when it is lost at once (a dead
    /// end, a cut link, the drop rate). A message to oneself is delivered like any other.
    pub fn send(&mut self, from: NodeId, to: NodeId, bytes: Bytes, now: Instant) -> bool {
        self.stats.sent += 1;
        if self.dead.contains(&from) || self.dead.contains(&to) || self.cut.contains(&(from, to)) {
            self.stats.blocked += 1;
            return false;
        }
        if self.config.drop_percent > 0 && self.rng.next_u64() % 100 < self.config.drop_percent {
            self.stats.dropped += 1;
            return false;
        }
        let jitter = if self.config.jitter_ms == 0 { 0 } else { self.rng.next_u64() % (self.config.jitter_ms + 1) };
        let mut at = now.plus(self.config.latency_ms + jitter);
        if let Some(last) = self.link_last.get(&(from, to)) {
            at = at.max(*last);
        }
        self.link_last.insert((from, to), at);
        self.seq += 1;
        self.in_flight.insert((at, self.seq), Packet { from, to, bytes, sent_at: now });
        true
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways. Messages already
    /// on a cut link are lost when they would arrive.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    /// Changes the drop rate for messages sent from now on.
    pub fn set_drop_percent(&mut self, percent: u64) {
        self.config.drop_percent = percent;
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// A node crashes: what is on the way to it is lost, and it neither sends nor receives.
    pub fn kill(&mut self, node: NodeId) {
        self.dead.insert(node);
    }

    /// A node (restarted) is back on the bus.
    pub fn revive(&mut self, node: NodeId) {
        self.dead.remove(&node);
    }

    #[must_use]
    pub fn is_dead(&self, node: NodeId) -> bool {
        self.dead.contains(&node)
    }

    /// When the next message arrives.
    #[must_use]
    pub fn next_due(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|(at, _)| *at)
    }

    /// The next message due by `now`, in delivery order; lost ones are counted and skipped.
    pub fn pop_due(&mut self, now: Instant) -> Option<Packet> {
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                return None;
            }
            let packet = entry.remove();
            if self.dead.contains(&packet.to) || self.cut.contains(&(packet.from, packet.to)) {
                self.stats.blocked += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some(packet);
        }
        None
    }

    #[must_use]
    pub fn stats(&self) -> BusStats {
        self.stats
    }
}

/// N machines, each in its own [`Host`] (clients connect to one node), and the bus
/// between them, on one clock.
pub struct Nodes<M: Machine> {
    pub nodes: Vec<Host<M>>,
    pub bus: Bus,
    pub now: Instant,
}

impl<M: Machine> Nodes<M> {
    #[must_use]
    pub fn new(machines: Vec<M>, bus: BusConfig) -> Self {
        Nodes { nodes: machines.into_iter().map(Host::new).collect(), bus: Bus::new(bus), now: Instant(0) }
    }

    /// Like `new`, every node with its own in-memory store.
    #[must_use]
    pub fn with_stores(machines: Vec<M>, bus: BusConfig) -> Self {
        Nodes { nodes: machines.into_iter().map(Host::with_store).collect(), bus: Bus::new(bus), now: Instant(0) }
    }

    /// A node crashes: its clock stops (its timers never fire), and the bus loses what
    /// goes to it or would come from it.
    pub fn kill(&mut self, node: NodeId) {
        self.bus.kill(node);
    }

    /// Moves every live node and the bus forward by `ms`, in one time line: at each step
    /// the earliest deadline of any node, or the next message, comes first. Each message
    /// that arrives is handed to `deliver` with the node it arrives at.
    pub fn advance(&mut self, ms: u64, mut deliver: impl FnMut(&mut Host<M>, Packet)) {
        let end = self.now.plus(ms);
        loop {
            let timers = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.bus.is_dead(*i))
                .filter_map(|(_, n)| n.machine.poll_timeout());
            let Some(next) = timers.chain(self.bus.next_due()).min().filter(|t| *t <= end) else { break };
            self.now = self.now.max(next);
            self.step_to(self.now, &mut deliver);
        }
        self.now = end;
        self.step_to(end, &mut deliver);
    }

    /// Every live node's clock to `t`, then the messages due by then.
    fn step_to(&mut self, t: Instant, deliver: &mut impl FnMut(&mut Host<M>, Packet)) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !self.bus.is_dead(i) {
                node.advance_to(t);
            }
        }
        while let Some(packet) = self.bus.pop_due(t) {
            deliver(&mut self.nodes[packet.to], packet);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::EngineEcho;
    use crate::host::Output;
    use crate::Config;

    fn bus(latency_ms: u64, jitter_ms: u64, drop_percent: u64, seed: u64) -> Bus {
        Bus::new(BusConfig { latency_ms, jitter_ms, drop_percent, seed })
    }

    fn drain(bus: &mut Bus, now: Instant) -> Vec<(Instant, Packet)> {
        let mut out = Vec::new();
        while let Some(at) = bus.next_due().filter(|t| *t <= now) {
            while let Some(p) = bus.pop_due(at) {
                out.push((at, p));
            }
        }
        out
    }

    #[test]
    fn a_link_keeps_its_order_and_every_message_takes_the_latency() {
        let mut b = bus(10, 50, 0, 7);
        for i in 0..20u8 {
            assert!(b.send(0, 1, Bytes::from(vec![i]), Instant(u64::from(i))));
        }
        let got = drain(&mut b, Instant(1_000));
        let order: Vec<u8> = got.iter().map(|(_, p)| p.bytes[0]).collect();
        assert_eq!(order, (0..20).collect::<Vec<u8>>(), "one link delivers in order");
        for (at, p) in &got {
            assert!(at.since(p.sent_at) >= 10 && at.since(p.sent_at) <= 60 + 20, "{at:?} for {p:?}");
        }
        assert!(got.windows(2).any(|w| w[0].0 != w[1].0), "the jitter spreads arrivals");
        assert_eq!(b.stats(), BusStats { sent: 20, delivered: 20, dropped: 0, blocked: 0 });
    }

    #[test]
    fn the_same_seed_loses_and_delays_the_same_messages() {
        let run = |seed| {
            let mut b = bus(5, 20, 30, seed);
            let sent: Vec<bool> = (0..200u64).map(|i| b.send(0, 1, Bytes::from(i.to_string()), Instant(i))).collect();
            let arrivals: Vec<Instant> = drain(&mut b, Instant(10_000)).into_iter().map(|(at, _)| at).collect();
            (sent, arrivals, b.stats())
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3).0, run(4).0, "another seed, another pattern");
        let (_, _, stats) = run(3);
        assert!(stats.dropped > 30 && stats.dropped < 90, "about 30% of 200: {stats:?}");
        assert_eq!(stats.delivered + stats.dropped, 200);
    }

    #[test]
    fn a_partition_cuts_both_ways_and_heals() {
        let mut b = bus(10, 0, 0, 1);
        assert!(b.send(0, 1, Bytes::from_static(b"before"), Instant(0)));
        b.partition(&[0], &[1, 2]);
        assert!(!b.send(0, 1, Bytes::from_static(b"x"), Instant(1)));
        assert!(!b.send(2, 0, Bytes::from_static(b"x"), Instant(1)));
        assert!(b.send(1, 2, Bytes::from_static(b"inside"), Instant(1)), "the other side still talks");
        let got = drain(&mut b, Instant(100));
        assert_eq!(got.len(), 1, "the message on the cut link is lost on arrival: {got:?}");
        assert_eq!(got[0].1.bytes, Bytes::from_static(b"inside"));
        b.heal();
        assert!(b.send(0, 1, Bytes::from_static(b"after"), Instant(200)));
        assert_eq!(drain(&mut b, Instant(300)).len(), 1);
        assert_eq!(b.stats().blocked, 3);
    }

    #[test]
    fn a_dead_node_loses_what_was_sent_to_it_and_its_clock_stops() {
        let echo = |seed| EngineEcho::new(Config::default(), [seed; 32], Instant(0));
        let mut n = Nodes::new(vec![echo(1), echo(2)], BusConfig::default());
        let (a, _) = n.nodes[0].open_ws();
        let (b, _) = n.nodes[1].open_ws();
        n.bus.send(0, 1, Bytes::from_static(b"lost"), n.now);
        n.kill(1);
        let mut delivered = Vec::new();
        n.advance(Config::default().ping_interval_ms + 1, |_, p| delivered.push(p));
        assert!(delivered.is_empty(), "nothing reaches a dead node");
        assert!(!n.bus.send(1, 0, Bytes::from_static(b"x"), n.now), "nor comes from it");
        assert_eq!(n.nodes[0].frames(a), ["2"], "the live node pinged its client");
        assert!(n.nodes[1].frames(b).is_empty(), "the dead node's timers did not fire");
        assert_eq!(n.now, Instant(Config::default().ping_interval_ms + 1));
    }

    #[test]
    fn nodes_and_messages_share_one_time_line() {
        let echo = |seed| EngineEcho::new(Config::default(), [seed; 32], Instant(0));
        let mut n = Nodes::new(vec![echo(1), echo(2)], BusConfig { latency_ms: 2, ..BusConfig::default() });
        n.nodes[0].open_ws();
        // Node 1's session opens later, so its first ping comes later than node 0's.
        n.advance(3, |_, _| {});
        n.nodes[1].open_ws();
        // A message meant to arrive between the two pings.
        let ping = Config::default().ping_interval_ms;
        n.advance(ping - 4, |_, _| {});
        n.bus.send(0, 1, Bytes::from_static(b"m"), n.now);
        let pings = |h: &Host<EngineEcho>| {
            h.outputs.iter().filter(|o| matches!(o, Output::Send { frame, .. } if frame.len() == 1)).count()
        };
        let mut seen = Vec::new();
        n.advance(10, |node, p| {
            // When a message arrives, its node's clock is at the arrival time, and its own
            // ping (due later) has not fired yet.
            seen.push((p.bytes.clone(), node.now, pings(node)));
        });
        assert_eq!(seen, [(Bytes::from_static(b"m"), Instant(ping + 1), 0)]);
        assert_eq!((pings(&n.nodes[0]), pings(&n.nodes[1])), (1, 1), "each node pinged once, at its own time");
    }
}
