//! A seeded simulation of the room service across nodes: users with tabs on three nodes
//! join and leave rooms and send messages, tabs close, links to the broker drop and come
//! back, and a node dies and restarts. After every step every node is inside its bounds, no
//! list shows a user twice, no tab gets a message of a room it is not in, and none gets a
//! message twice; at the end, with the faults over, every node lists for each room exactly
//! the users with a live socket in it anywhere, and a message sent to each room then
//! reaches every tab in the room, on every node, once.
//!
//! `ROOMS_CLUSTER_SIM_SEEDS=N` runs more seeds; a failure names its seed.

use super::cluster::node;
use super::*;
use crate::config::ClusterConfig;
use crate::testing::cluster::Cluster;
use crate::testing::nodes::BusConfig;
use crate::testing::Rng;
use std::collections::BTreeSet;

const NODES: usize = 3;
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];
const USERS: [&str; 4] = ["u0", "u1", "u2", "u3"];

struct Tab {
    node: usize,
    user: &'static str,
    client: TestClient,
    rooms: BTreeSet<&'static str>,
    open: bool,
    /// The ids of the messages it got.
    got: BTreeSet<String>,
}

type C = Cluster<Service<RoomService>>;

fn collect(c: &mut C, tabs: &mut [Tab], seed: u64) {
    for (i, tab) in tabs.iter_mut().enumerate().filter(|(_, t)| t.open) {
        for (name, arg) in received(&mut c.nodes.nodes[tab.node], &tab.client) {
            if name == "new-message" {
                let room = arg["room"].as_str().unwrap_or_default();
                assert!(tab.rooms.contains(room), "seed {seed}: tab {i} in {:?} got a message of {room}", tab.rooms);
                let id = arg["id"].as_str().unwrap_or_default().to_owned();
                assert!(tab.got.insert(id.clone()), "seed {seed}: tab {i} got message {id} twice");
                continue;
            }
            let list = match name.as_str() {
                "room-users-update" => arg.clone(),
                "ack:1" if arg.get("users").is_some() => arg["users"].clone(),
                _ => continue,
            };
            let ids: Vec<String> =
                list.as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
            let unique: BTreeSet<&String> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "seed {seed}: tab {i} was shown a user twice: {ids:?}");
        }
    }
    for n in 0..NODES {
        if !c.nodes.bus.is_dead(n) {
            c.nodes.nodes[n].machine.check_bounds().unwrap_or_else(|e| panic!("seed {seed}: node {n}: {e}"));
        }
    }
}

/// What a run did: lists checked at the end, and the faults it went through.
#[derive(Default)]
struct Tally {
    checked: usize,
    delivered: usize,
    link_losses: usize,
    deaths: usize,
    restarts: usize,
}

fn run(seed: u64, tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let bus = BusConfig { latency_ms: 1 + rng.next_u64() % 5, jitter_ms: rng.next_u64() % 10, drop_percent: 0, seed };
    let mut c = Cluster::new((0..NODES).map(|n| node(&format!("n{n}"), n as u8 + 1)).collect(), bus);
    for n in &mut c.nodes.nodes {
        n.input(Input::WallClock { unix_ms: WALL });
    }
    let mut tabs: Vec<Tab> = Vec::new();
    let mut cut: Option<usize> = None;
    let mut dead: Option<usize> = None;
    let steps = 120 + rng.below(120);
    let trace = std::env::var("ROOMS_CLUSTER_SIM_TRACE").is_ok();
    for step in 0..steps {
        if trace {
            let t: Vec<String> = tabs
                .iter()
                .map(|t| format!("{}@{}{}{:?}", t.user, t.node, if t.open { "" } else { "x" }, t.rooms))
                .collect();
            eprintln!("step {step} t={} cut={cut:?} dead={dead:?} {t:?}", c.nodes.now.0);
        }
        let faults_over = step >= steps - 20;
        if faults_over {
            if let Some(n) = cut.take() {
                c.nodes.bus.heal();
                c.nodes.nodes[n].input(Input::Cluster(ClusterInput::Up));
            }
        }
        let live_nodes: Vec<usize> = (0..NODES).filter(|n| Some(*n) != dead).collect();
        match rng.below(14) {
            0..=1 if tabs.iter().filter(|t| t.open).count() < 8 => {
                let n = live_nodes[rng.below(live_nodes.len())];
                let user = USERS[rng.below(USERS.len())];
                let client = connect(&mut c.nodes.nodes[n], "/", json!({"token": token(user, false)}));
                tabs.push(Tab { node: n, user, client, rooms: BTreeSet::new(), open: true, got: BTreeSet::new() });
            }
            2..=5 => {
                if let Some(i) = pick(&mut rng, &tabs) {
                    let room = ROOMS[rng.below(ROOMS.len())];
                    tabs[i].rooms.insert(room);
                    let (n, client) = (tabs[i].node, &tabs[i].client);
                    emit(&mut c.nodes.nodes[n], client, Some(1), "join-room", &[json!(room)]);
                }
            }
            6..=7 => {
                if let Some(i) = pick(&mut rng, &tabs) {
                    let room = ROOMS[rng.below(ROOMS.len())];
                    if tabs[i].rooms.remove(room) {
                        let (n, client) = (tabs[i].node, &tabs[i].client);
                        emit(&mut c.nodes.nodes[n], client, Some(2), "leave-room", &[json!(room)]);
                    }
                }
            }
            8 => {
                if let Some(i) = pick(&mut rng, &tabs) {
                    tabs[i].open = false;
                    let (n, conn) = (tabs[i].node, tabs[i].client.conn);
                    c.nodes.nodes[n].end(conn, TransportEnd::Closed);
                }
            }
            // The link of one node is lost for a while (shorter than the expiry): what is
            // published meanwhile does not reach it or come from it; it sees Down, then Up.
            9 if !faults_over && cut.is_none() && rng.chance(50) => {
                let n = live_nodes[rng.below(live_nodes.len())];
                let others: Vec<usize> = (0..NODES).filter(|o| *o != n).collect();
                c.nodes.bus.partition(&[n], &others);
                c.nodes.nodes[n].input(Input::Cluster(ClusterInput::Down));
                cut = Some(n);
                tally.link_losses += 1;
            }
            9 | 10 => {
                if let Some(n) = cut.take() {
                    c.nodes.bus.heal();
                    c.nodes.nodes[n].input(Input::Cluster(ClusterInput::Up));
                }
            }
            // The dead node comes back under its id, as a new incarnation.
            11 if dead.is_some() && rng.chance(30) => {
                let n = dead.take().unwrap_or_default();
                c.restart(n, node(&format!("n{n}"), 100 + (step % 100) as u8));
                c.nodes.nodes[n].input(Input::WallClock { unix_ms: WALL + c.nodes.now.0 });
                tally.restarts += 1;
            }
            11 if !faults_over && dead.is_none() && cut.is_none() && rng.chance(20) => {
                let n = rng.below(NODES);
                c.nodes.kill(n);
                dead = Some(n);
                tally.deaths += 1;
                for t in tabs.iter_mut().filter(|t| t.node == n) {
                    t.open = false;
                }
            }
            12 | 13 => {
                if let Some(i) = pick(&mut rng, &tabs) {
                    if let Some(room) = tabs[i].rooms.iter().next().copied() {
                        let (n, client) = (tabs[i].node, &tabs[i].client);
                        emit(
                            &mut c.nodes.nodes[n],
                            client,
                            Some(3),
                            "send-message",
                            &[json!({"room": room, "content": "m"})],
                        );
                    }
                }
            }
            _ => {}
        }
        c.advance(rng.next_u64() % 40);
        collect(&mut c, &mut tabs, seed);
    }
    // Quiet, long enough for a dead node to expire everywhere.
    c.advance(ClusterConfig::default().node_expiry_ms + 3_000);
    collect(&mut c, &mut tabs, seed);
    // One message to each room from one of its tabs: every tab in it gets it once.
    let mut sent = Vec::new();
    for room in ROOMS {
        let Some(i) = tabs.iter().position(|t| t.open && t.rooms.contains(room)) else { continue };
        let before = tabs[i].got.clone();
        let (n, client) = (tabs[i].node, &tabs[i].client);
        emit(&mut c.nodes.nodes[n], client, Some(4), "send-message", &[json!({"room": room, "content": "last"})]);
        c.advance(100);
        collect(&mut c, &mut tabs, seed);
        let new: Vec<&String> = tabs[i].got.difference(&before).collect();
        assert_eq!(new.len(), 1, "seed {seed}: the sender's own copy of the message to {room}");
        sent.push((room, new[0].clone()));
    }
    for (room, id) in &sent {
        for (i, tab) in tabs.iter().enumerate().filter(|(_, t)| t.open) {
            assert_eq!(
                tab.got.contains(id),
                tab.rooms.contains(room),
                "seed {seed}: tab {i} and the last message to {room}"
            );
            tally.delivered += usize::from(tab.rooms.contains(room));
        }
    }
    for room in ROOMS {
        let mut expected: Vec<String> = tabs
            .iter()
            .filter(|t| t.open && t.rooms.contains(room))
            .map(|t| t.user.to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        expected.sort();
        for n in (0..NODES).filter(|n| Some(*n) != dead) {
            let presence = &c.nodes.nodes[n].machine.handler().scopes["/"].presence;
            let here = tabs.iter().any(|t| t.open && t.node == n && t.rooms.contains(room));
            let mut listed: Vec<String> = presence.users(room).into_iter().map(|u| u.id).collect();
            listed.sort();
            if here {
                assert_eq!(listed, expected, "seed {seed}: node {n} lists {room}");
                tally.checked += 1;
            } else {
                assert!(listed.is_empty(), "seed {seed}: node {n} keeps {room} without a member: {listed:?}");
            }
        }
    }
}

/// An open tab, at random.
fn pick(rng: &mut Rng, tabs: &[Tab]) -> Option<usize> {
    let open: Vec<usize> = (0..tabs.len()).filter(|i| tabs[*i].open).collect();
    (!open.is_empty()).then(|| open[rng.below(open.len())])
}

#[test]
fn room_service_cluster_simulation() {
    let seeds = std::env::var("ROOMS_CLUSTER_SIM_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200u64);
    let first = std::env::var("ROOMS_CLUSTER_SIM_FIRST").ok().and_then(|v| v.parse().ok()).unwrap_or(1u64);
    let mut t = Tally::default();
    for seed in first..=seeds {
        run(seed, &mut t);
    }
    eprintln!(
        "room service cluster simulation: {seeds} seeds, {} link losses, {} node deaths, {} restarts, {} room lists and {} final deliveries checked at the end",
        t.link_losses, t.deaths, t.restarts, t.checked, t.delivered
    );
    // The runs did what they are for: faults happened, and lists were there to check.
    assert!(t.checked as u64 > seeds && t.link_losses > 0 && t.deaths > 0 && t.restarts > 0);
}
