//! A seeded simulation of broadcasts across nodes: clients on three nodes join and leave
//! rooms and broadcast to sets of rooms (with `except` rooms) while the bus delays, jitters,
//! drops and partitions. After every step: no client gets a broadcast twice, none gets one it
//! was not a target of (by its rooms on its node at delivery, the sender left out); at the end,
//! with the faults gone, every target of every broadcast gets it exactly once.
//!
//! `CLUSTER_SIM_SEEDS=N` runs more seeds; a failure names its seed.

use crate::config::{ClusterConfig, Config};
use crate::host::ConnId;
use crate::testing::cluster::{Cluster, Relay};
use crate::testing::nodes::BusConfig;
use crate::testing::Rng;
use crate::time::Instant;
use crate::Service;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const NODES: usize = 3;
const ROOMS: [&str; 4] = ["r0", "r1", "r2", "r3"];

struct Client {
    node: usize,
    conn: ConnId,
    rooms: BTreeSet<&'static str>,
    /// Broadcast ids received so far.
    got: BTreeSet<u64>,
}

/// What a broadcast was sent to.
struct Sent {
    from: usize,
    rooms: Vec<&'static str>,
    except: Vec<&'static str>,
}

fn node(id: usize) -> Service<Relay> {
    let cluster = ClusterConfig { node_id: format!("n{id}"), prefix: "sim".into(), ..ClusterConfig::default() };
    let config = Config { cluster: Some(cluster), ..Config::default() };
    Service::new(config, [id as u8 + 1; 32], Instant(0), Relay)
}

fn targets(sent: &Sent, client: usize, rooms: &BTreeSet<&str>) -> bool {
    // No rooms: every socket of the namespace.
    client != sent.from
        && (sent.rooms.is_empty() || sent.rooms.iter().any(|r| rooms.contains(r)))
        && !sent.except.iter().any(|r| rooms.contains(r))
}

/// Runs one seed; returns (deliveries across nodes, final deliveries checked).
fn run(seed: u64) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let drop_percent = if rng.chance(50) { 3 } else { 0 };
    let bus = BusConfig { latency_ms: 1 + rng.next_u64() % 5, jitter_ms: rng.next_u64() % 10, drop_percent, seed };
    let mut c = Cluster::new((0..NODES).map(node).collect(), bus);
    let mut clients: Vec<Client> = (0..2 + rng.below(6))
        .map(|i| {
            let n = i % NODES;
            let (conn, _) = c.nodes.nodes[n].open_ws();
            c.nodes.nodes[n].text(conn, "40");
            c.nodes.nodes[n].frames(conn);
            Client { node: n, conn, rooms: BTreeSet::new(), got: BTreeSet::new() }
        })
        .collect();
    let mut sent: BTreeMap<u64, Sent> = BTreeMap::new();
    let steps = 150 + rng.below(150);
    for step in 0..steps {
        let faults_over = step >= steps - 30;
        if faults_over {
            c.nodes.bus.set_drop_percent(0);
            c.nodes.bus.heal();
        }
        let who = rng.below(clients.len());
        let room = ROOMS[rng.below(ROOMS.len())];
        match rng.below(10) {
            0..=2 => {
                clients[who].rooms.insert(room);
                say(&mut c, &clients[who], &json!(["join", room]));
            }
            3 => {
                clients[who].rooms.remove(room);
                say(&mut c, &clients[who], &json!(["leave", room]));
            }
            4..=7 if !faults_over => {
                let id = sent.len() as u64;
                let rooms: Vec<&str> = ROOMS.iter().copied().filter(|_| rng.chance(40)).collect();
                let except: Vec<&str> =
                    ROOMS.iter().copied().filter(|r| !rooms.contains(r) && rng.chance(15)).collect();
                say(&mut c, &clients[who], &json!(["to", rooms, except, id]));
                sent.insert(id, Sent { from: who, rooms, except });
            }
            8 if !faults_over && rng.chance(30) => {
                let cut = rng.below(NODES);
                let others: Vec<usize> = (0..NODES).filter(|n| *n != cut).collect();
                c.nodes.bus.partition(&[cut], &others);
            }
            8 => c.nodes.bus.heal(),
            _ => {}
        }
        c.advance(rng.next_u64() % 30);
        collect(&mut c, &mut clients, &sent, seed);
    }
    // Quiet: every node's subscriptions settle, then every client broadcasts once more to
    // its rooms; each target gets each of these exactly once.
    c.advance(100);
    collect(&mut c, &mut clients, &sent, seed);
    let first_final = sent.len() as u64;
    for (who, client) in clients.iter().enumerate() {
        let rooms: Vec<&str> = client.rooms.iter().copied().collect();
        if rooms.is_empty() {
            continue; // (it would go to everyone)
        }
        let id = sent.len() as u64;
        let empty: Vec<&str> = Vec::new();
        say(&mut c, client, &json!(["to", rooms, empty, id]));
        sent.insert(id, Sent { from: who, rooms, except: Vec::new() });
    }
    c.advance(200);
    collect(&mut c, &mut clients, &sent, seed);
    let mut checked = 0;
    for (id, s) in sent.range(first_final..) {
        for (i, client) in clients.iter().enumerate() {
            let expected = targets(s, i, &client.rooms);
            assert_eq!(client.got.contains(id), expected, "seed {seed}: final broadcast {id} and client {i}");
            checked += u64::from(expected);
        }
    }
    let across =
        clients.iter().map(|cl| cl.got.iter().filter(|id| clients[sent[id].from].node != cl.node).count() as u64).sum();
    (across, checked)
}

fn say(c: &mut Cluster<Service<Relay>>, client: &Client, args: &serde_json::Value) {
    c.nodes.nodes[client.node].text(client.conn, &format!("42{args}"));
}

/// Takes every client's frames: each broadcast once, and only to its targets as the
/// client's node saw it when it arrived (membership changes only between steps).
fn collect(c: &mut Cluster<Service<Relay>>, clients: &mut [Client], sent: &BTreeMap<u64, Sent>, seed: u64) {
    for (i, client) in clients.iter_mut().enumerate() {
        for frame in c.nodes.nodes[client.node].frames(client.conn) {
            let Some(id) = frame.strip_prefix("42[\"m\",").and_then(|r| r.trim_end_matches(']').parse::<u64>().ok())
            else {
                continue;
            };
            let s = &sent[&id];
            assert!(
                targets(s, i, &client.rooms),
                "seed {seed}: client {i} (node {}) in {:?} got broadcast {id} from {} to {:?} except {:?}",
                client.node,
                client.rooms,
                s.from,
                s.rooms,
                s.except
            );
            assert!(client.got.insert(id), "seed {seed}: client {i} got broadcast {id} twice");
        }
    }
}

#[test]
fn cluster_simulation() {
    let seeds = std::env::var("CLUSTER_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60u64);
    let (mut across, mut checked) = (0, 0);
    for seed in 1..=seeds {
        let (a, c) = run(seed);
        across += a;
        checked += c;
    }
    eprintln!(
        "cluster simulation: {seeds} seeds, {across} deliveries across nodes, {checked} final deliveries checked"
    );
    // The runs did what they are for: broadcasts crossed nodes, and the final ones reached
    // their targets.
    assert!(across > seeds * 10, "{across} deliveries across nodes in {seeds} seeds");
    assert!(checked > seeds, "{checked} final deliveries in {seeds} seeds");
}
