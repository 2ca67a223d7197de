//! The room service on several nodes joined by the broker model of Redis: presence is the
//! cluster's, each user listed once, events once per socket.

use super::*;
use crate::config::ClusterConfig;
use crate::testing::cluster::Cluster;
use crate::testing::nodes::BusConfig;

type C = Cluster<Service<RoomService>>;

pub(super) fn node(id: &str, seed: u8) -> Service<RoomService> {
    let key = AuthKey { kid: None, key: signing_key().verifying_key().to_bytes() };
    let app = AppConfig { auth_keys: vec![key], ..AppConfig::default() };
    let cluster = ClusterConfig { node_id: id.into(), prefix: "t".into(), ..ClusterConfig::default() };
    let config = Config { recovery_window_ms: 0, cluster: Some(cluster), ..Config::default() };
    Service::new(config, [seed; 32], Instant(0), RoomService::new(app))
}

fn three() -> C {
    let mut c = Cluster::new(
        vec![node("a", 1), node("b", 2), node("c", 3)],
        BusConfig { latency_ms: 2, ..BusConfig::default() },
    );
    for n in &mut c.nodes.nodes {
        n.input(Input::WallClock { unix_ms: WALL });
    }
    c.advance(50);
    c
}

/// A user's socket on node `n`.
fn user(c: &mut C, n: usize, sub: &str) -> TestClient {
    let client = connect(&mut c.nodes.nodes[n], "/", json!({"token": token(sub, false)}));
    c.advance(20);
    got(c, n, &client);
    client
}

fn send(c: &mut C, n: usize, client: &TestClient, event: &str, args: &[Value]) {
    emit(&mut c.nodes.nodes[n], client, Some(1), event, args);
    c.advance(20);
}

fn got(c: &mut C, n: usize, client: &TestClient) -> Vec<(String, Value)> {
    received(&mut c.nodes.nodes[n], client)
}

/// The user ids of each `room-users-update` and the ids in `user-joined` / `user-left`.
fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect()
}

fn who(events: &[(String, Value)], name: &str) -> Vec<String> {
    named(events, name).iter().map(|e| e["user"]["id"].as_str().unwrap().to_owned()).collect()
}

fn last_users(events: &[(String, Value)]) -> Vec<String> {
    ids(named(events, "room-users-update").last().expect("a room-users-update"))
}

#[test]
fn presence_spans_the_nodes_and_a_user_with_tabs_on_two_nodes_is_one_user() {
    let mut c = three();
    let alice = user(&mut c, 0, "alice");
    let bob = user(&mut c, 1, "bob");
    send(&mut c, 0, &alice, "join-room", &[json!("lobby")]);
    send(&mut c, 1, &bob, "join-room", &[json!("lobby")]);
    let a = got(&mut c, 0, &alice);
    assert_eq!(who(&a, "user-joined"), ["bob"], "alice on node a hears bob of node b");
    assert_eq!(last_users(&a), ["alice", "bob"]);
    let b = got(&mut c, 1, &bob);
    assert_eq!(
        named(&b, "ack:1")[0]["users"],
        json!([{"id": "alice", "username": "ALICE"}, {"id": "bob", "username": "BOB"}])
    );
    assert!(who(&b, "user-joined").is_empty(), "bob's own join is not announced to him");

    // alice's second tab, on node c: no second alice anywhere.
    let alice2 = user(&mut c, 2, "alice");
    send(&mut c, 2, &alice2, "join-room", &[json!("lobby")]);
    assert!(who(&got(&mut c, 1, &bob), "user-joined").is_empty());
    assert!(who(&got(&mut c, 0, &alice), "user-joined").is_empty());
    let tab = got(&mut c, 2, &alice2);
    assert_eq!(ids(&named(&tab, "ack:1")[0]["users"]), ["alice", "bob"]);

    // Her first tab goes: she is still there through node c.
    send(&mut c, 0, &alice, "leave-room", &[json!("lobby")]);
    assert!(who(&got(&mut c, 1, &bob), "user-left").is_empty());
    // The last one goes: bob hears it once.
    send(&mut c, 2, &alice2, "leave-room", &[json!("lobby")]);
    let b = got(&mut c, 1, &bob);
    assert_eq!(who(&b, "user-left"), ["alice"]);
    assert_eq!(last_users(&b), ["bob"]);
    c.nodes.nodes[1].machine.check_bounds().unwrap();
}

#[test]
fn a_dead_nodes_users_leave_when_its_heartbeat_expires() {
    let mut c = three();
    let alice = user(&mut c, 0, "alice");
    let bob = user(&mut c, 1, "bob");
    let carol = user(&mut c, 2, "carol");
    for (n, client) in [(0, &alice), (1, &bob), (2, &carol)] {
        send(&mut c, n, client, "join-room", &[json!("lobby")]);
    }
    send(&mut c, 1, &bob, "typing-start", &[json!({"room": "lobby"})]);
    got(&mut c, 0, &alice);
    c.nodes.kill(1);
    c.advance(ClusterConfig::default().node_expiry_ms / 2);
    assert!(who(&got(&mut c, 0, &alice), "user-left").is_empty(), "not before the expiry");
    c.advance(ClusterConfig::default().node_expiry_ms);
    for (n, client) in [(0, &alice), (2, &carol)] {
        let events = got(&mut c, n, client);
        assert_eq!(who(&events, "user-left"), ["bob"], "node {n}");
        assert_eq!(last_users(&events).len(), 2);
        let typing = named(&events, "user-typing");
        assert_eq!(typing.last().unwrap()["isTyping"], json!(false), "bob's typing ends with him");
    }
}

#[test]
fn private_messages_find_their_recipient_on_any_node_or_say_it_is_nowhere() {
    let mut c = three();
    let alice = user(&mut c, 0, "alice");
    let bob = user(&mut c, 1, "bob");
    let bob2 = user(&mut c, 2, "bob");
    let carol = user(&mut c, 2, "carol");
    // To a user: both of bob's tabs, on two other nodes, once each.
    send(&mut c, 0, &alice, "private-message", &[json!({"to": "bob", "content": "psst"})]);
    assert_eq!(named(&got(&mut c, 0, &alice), "ack:1"), [json!({"success": true})]);
    for (n, tab) in [(1, &bob), (2, &bob2)] {
        let pm = named(&got(&mut c, n, tab), "private-message");
        assert_eq!(pm.len(), 1, "node {n}");
        assert_eq!(pm[0]["content"], json!("psst"));
        assert_eq!(pm[0]["sender"]["id"], json!("alice"));
    }
    // To one socket by its id, on another node: that socket only.
    send(&mut c, 0, &alice, "private-message", &[json!({"to": carol.id, "content": "just you"})]);
    assert_eq!(named(&got(&mut c, 0, &alice), "ack:1"), [json!({"success": true})]);
    assert_eq!(named(&got(&mut c, 2, &carol), "private-message").len(), 1);
    assert!(named(&got(&mut c, 2, &bob2), "private-message").is_empty());
    // To nobody: every node said so, so the answer comes without waiting for the timeout.
    send(&mut c, 0, &alice, "private-message", &[json!({"to": "nobody", "content": "?"})]);
    let reply = &named(&got(&mut c, 0, &alice), "ack:1")[0];
    assert_eq!(reply["code"], json!("NOT_FOUND"), "{reply}");
    assert_eq!(reply["error"], json!("Recipient not found"), "every node answered: none is named missing");
}

#[test]
fn admin_stats_and_kick_cover_every_node() {
    let mut c = three();
    let _alice = user(&mut c, 0, "alice");
    let bob = user(&mut c, 1, "bob");
    let bob2 = user(&mut c, 2, "bob");
    let admin = connect(&mut c.nodes.nodes[0], "/admin", json!({"token": token("root", true)}));
    c.advance(20);
    send(&mut c, 0, &admin, "stats", &[]);
    let stats = &named(&got(&mut c, 0, &admin), "ack:1")[0];
    assert_eq!(stats["node"], json!("a"));
    assert_eq!(stats["nodes"]["b"]["connections"], json!(1));
    assert_eq!(stats["nodes"]["c"]["connections"], json!(1));
    assert_eq!(stats["clusterConnections"], json!(4), "alice, the admin, and bob's two tabs: {stats}");
    assert_eq!(stats["missingNodes"], json!([]));
    // Membership across the cluster: a room's sockets with their users and nodes, and the
    // rooms with their sockets summed over the nodes.
    send(&mut c, 1, &bob, "join-room", &[json!("lobby")]);
    send(&mut c, 2, &bob2, "join-room", &[json!("lobby")]);
    send(&mut c, 0, &admin, "sockets", &[json!({"room": "lobby"})]);
    let listed = &named(&got(&mut c, 0, &admin), "ack:1")[0];
    let mut where_: Vec<(String, String)> = listed["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["user"]["id"].as_str().unwrap().to_owned(), s["node"].as_str().unwrap().to_owned()))
        .collect();
    where_.sort();
    assert_eq!(where_, [("bob".to_owned(), "b".to_owned()), ("bob".to_owned(), "c".to_owned())], "{listed}");
    assert_eq!(listed["missingNodes"], json!([]));
    send(&mut c, 0, &admin, "rooms", &[json!({})]);
    assert_eq!(named(&got(&mut c, 0, &admin), "ack:1")[0]["rooms"], json!([{"room": "lobby", "sockets": 2}]));
    send(&mut c, 0, &admin, "kick", &[json!({"userId": "bob"})]);
    assert_eq!(named(&got(&mut c, 0, &admin), "ack:1")[0], json!({"success": true, "kicked": 2, "missingNodes": []}));
    for (n, tab) in [(1, &bob), (2, &bob2)] {
        let frames = c.nodes.nodes[n].frames(tab.conn);
        assert!(frames.iter().any(|f| f == "41"), "bob's tab on node {n} was disconnected: {frames:?}");
    }
}

#[test]
fn messages_typing_and_private_messages_cross_nodes_once() {
    let mut c = three();
    let alice = user(&mut c, 0, "alice");
    let bob = user(&mut c, 1, "bob");
    let outsider = user(&mut c, 2, "carol");
    send(&mut c, 0, &alice, "join-room", &[json!("lobby")]);
    send(&mut c, 1, &bob, "join-room", &[json!("lobby")]);
    got(&mut c, 0, &alice);
    got(&mut c, 1, &bob);
    send(&mut c, 0, &alice, "send-message", &[json!({"room": "lobby", "content": "hello"})]);
    let b = got(&mut c, 1, &bob);
    assert_eq!(named(&b, "new-message").len(), 1);
    assert_eq!(named(&b, "new-message")[0]["content"], json!("hello"));
    send(&mut c, 1, &bob, "typing-start", &[json!({"room": "lobby"})]);
    assert_eq!(named(&got(&mut c, 0, &alice), "user-typing")[0]["isTyping"], json!(true));
    assert!(got(&mut c, 2, &outsider).is_empty(), "nothing of the room reaches a non-member");
}

#[test]
fn after_a_partition_heals_and_the_link_is_back_presence_agrees_again() {
    let mut c = three();
    let alice = user(&mut c, 0, "alice");
    let bob = user(&mut c, 1, "bob");
    send(&mut c, 0, &alice, "join-room", &[json!("lobby")]);
    send(&mut c, 1, &bob, "join-room", &[json!("lobby")]);
    // Node b cannot hear node a for a while (shorter than the expiry): a's changes are lost.
    c.nodes.bus.partition(&[0], &[1]);
    let dave = user(&mut c, 0, "dave");
    send(&mut c, 0, &dave, "join-room", &[json!("lobby")]);
    send(&mut c, 0, &alice, "leave-room", &[json!("lobby")]);
    c.nodes.bus.heal();
    got(&mut c, 1, &bob);
    // Node b's link comes back: it says where it is and hears the others again.
    for (n, input) in [(1, ClusterInput::Down), (1, ClusterInput::Up)] {
        c.nodes.nodes[n].input(Input::Cluster(input));
    }
    c.advance(50);
    let b = got(&mut c, 1, &bob);
    assert_eq!(last_users(&b), ["bob", "dave"], "{b:?}");
    assert_eq!(who(&b, "user-left"), ["alice"]);
    assert_eq!(who(&b, "user-joined"), ["dave"]);
}

#[test]
fn a_join_waits_for_every_live_node_and_names_the_ones_that_did_not_answer() {
    let mut c = three();
    let bob = user(&mut c, 1, "bob");
    send(&mut c, 1, &bob, "join-room", &[json!("lobby")]);
    got(&mut c, 1, &bob);
    // Node c cannot be reached, but is still alive as far as node a knows.
    c.nodes.bus.partition(&[2], &[0, 1]);
    let alice = user(&mut c, 0, "alice");
    emit(&mut c.nodes.nodes[0], &alice, Some(1), "join-room", &[json!("lobby")]);
    c.advance(100);
    assert!(named(&got(&mut c, 0, &alice), "ack:1").is_empty(), "node c has not answered yet");
    c.advance(ClusterConfig::default().query_timeout_ms);
    let a = got(&mut c, 0, &alice);
    let ack = &named(&a, "ack:1")[0];
    assert_eq!(ids(&ack["users"]), ["bob", "alice"], "what arrived: bob came first");
    assert_eq!(ack["missingNodes"], json!(["c"]), "and who did not answer");
    let stats = c.nodes.nodes[0].machine.sockets().cluster().unwrap().stats();
    assert_eq!((stats.query_timeouts, stats.missing_nodes), (1, 1), "{stats:?}");
}

#[test]
fn a_node_alone_in_its_cluster_answers_joins_at_once() {
    // Its link never came up: it knows no other node, so nobody is waited for.
    let mut h = Host::with_store(node("alone", 7));
    h.input(Input::WallClock { unix_ms: WALL });
    let alice = connect(&mut h, "/", json!({"token": token("alice", false)}));
    emit(&mut h, &alice, Some(1), "join-room", &[json!("lobby")]);
    emit(&mut h, &alice, Some(2), "private-message", &[json!({"to": "nobody", "content": "?"})]);
    let events = received(&mut h, &alice);
    assert_eq!(ids(&named(&events, "ack:1")[0]["users"]), ["alice"]);
    assert_eq!(named(&events, "ack:2")[0]["code"], json!("NOT_FOUND"));
}
